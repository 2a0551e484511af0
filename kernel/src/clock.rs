//! The one clock every timestamp in llem comes from: CLOCK_MONOTONIC in
//! nanoseconds. Plugins (through the host interface), the sampler and Python
//! workers (`time.monotonic_ns()`) all read this same clock, so their
//! timestamps can be compared without conversion.

/// CLOCK_MONOTONIC, nanoseconds.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    debug_assert_eq!(rc, 0);
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    #[test]
    fn monotonic_clock_never_goes_backwards() {
        let mut last = super::monotonic_ns();
        for _ in 0..10_000 {
            let now = super::monotonic_ns();
            assert!(now >= last, "{now} < {last}");
            last = now;
        }
        assert!(last > 0);
    }
}
