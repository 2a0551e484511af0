//! Deadlines that fire while a plugin blocks in a host call.
//!
//! Epoch interruption stops a plugin only while its WASM code runs; a plugin
//! asleep in `wasi:clocks` or reading a FIFO through `wasi:filesystem` sits in
//! host code where no epoch check happens. So every call except the energy
//! hot path (`read`, whose deadline the sampler owns) runs on a thread of its
//! own, and the caller waits for it at most the call's deadline plus a grace
//! period: a call that has not come back by then is abandoned — its thread and
//! the plugin's store stay with the blocked call, the instance is poisoned, and
//! the kernel goes on. If the blocked call ever returns, the expired epoch
//! deadline traps the plugin at its next WASM instruction and the thread ends.
//!
//! A thread per call costs tens of µs, against calls (describe, open, load,
//! plan, write, parse-metrics, telemetry) that happen a few times per run or
//! once a second.

use super::EPOCH_TICK;
use std::sync::mpsc;
use std::time::Duration;

/// Beyond the deadline: the epoch interrupt lands within one tick of it, so
/// a computing plugin traps (and is reported as such) before the caller gives
/// up on a blocked one.
pub const GRACE: Duration = Duration::from_millis(2 * EPOCH_TICK.as_millis() as u64 + 100);

/// The call did not come back in time and was left running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Abandoned {
    pub waited: Duration,
}

/// Run `f` on its own thread and wait at most `deadline + GRACE` for it.
pub fn run<T: Send + 'static>(
    deadline: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Abandoned> {
    let waited = deadline.saturating_add(GRACE);
    let (tx, rx) = mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name("llem-plugin-call".into())
        .spawn(move || {
            // The receiver is gone when the caller gave up: nothing to report to.
            let _ = tx.send(f());
        });
    if let Err(e) = spawned {
        // No thread to be had (resource exhaustion): the caller learns it as
        // an abandoned call rather than risking an unbounded one inline.
        tracing::warn!("cannot start a thread for a plugin call: {e}");
        return Err(Abandoned {
            waited: Duration::ZERO,
        });
    }
    rx.recv_timeout(waited).map_err(|_| Abandoned { waited })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_quick_call_returns_its_value() {
        assert_eq!(run(Duration::from_millis(100), || 42), Ok(42));
    }

    #[test]
    fn a_blocked_call_is_abandoned_after_deadline_plus_grace() {
        let started = Instant::now();
        let deadline = Duration::from_millis(100);
        let result = run(deadline, || std::thread::sleep(Duration::from_secs(30)));
        let took = started.elapsed();
        assert_eq!(
            result,
            Err(Abandoned {
                waited: deadline + GRACE
            })
        );
        assert!(took >= deadline + GRACE, "{took:?}");
        assert!(took < deadline + GRACE + Duration::from_secs(1), "{took:?}");
    }
}
