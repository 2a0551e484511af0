//! Reads that say when their bytes reached the machine: the kernel's receive
//! timestamp of the socket (`SO_TIMESTAMPNS`), taken when the packet arrived,
//! not when the client thread got round to reading it. Under load the
//! difference is the client's own scheduling delay — the error llem would
//! otherwise add to every TTFT and inter-token latency (issue #12).
//!
//! The kernel stamps packets with CLOCK_REALTIME; each read converts its stamp
//! to CLOCK_MONOTONIC (llem's clock) by its age: monotonic now − (realtime now
//! − stamp). A stamp that is missing, in the future or older than a second
//! (a stepped wall clock, a kernel that stamped with another clock) is not
//! trusted: the read's own return time is used instead, as without stamps.
//!
//! For TCP, the stamp of a read is that of the last packet it consumed, so
//! chunks that arrive in one read share the latest arrival among them: never
//! earlier than any of them arrived.

use std::io;
use std::os::fd::AsRawFd;

use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::clock::monotonic_ns;

/// Stamps older than this are not trusted (see the module's doc).
const MAX_AGE_NS: u64 = 1_000_000_000;

/// Ask the kernel to stamp what `stream` receives. False when it refuses
/// (reads then use their return time).
pub fn enable(stream: &TcpStream) -> bool {
    let on: libc::c_int = 1;
    // SAFETY: a valid socket descriptor and a pointer to a c_int of the given size.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&raw const on).cast::<libc::c_void>(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}

/// Read what is there into `buf`: (bytes, arrival time, CLOCK_MONOTONIC ns).
/// 0 bytes: the peer closed.
pub(crate) async fn read(stream: &TcpStream, buf: &mut [u8]) -> io::Result<(usize, u64)> {
    loop {
        // Try first: after a wake-up for another socket's data the readiness
        // is often known already, and a read that finds nothing costs less
        // than a trip through the reactor.
        match stream.try_io(Interest::READABLE, || recv(stream.as_raw_fd(), buf)) {
            Ok((n, stamp)) => {
                if n > 0 && n < buf.len() {
                    forget_readiness(stream);
                }
                return Ok((n, arrival(stamp)));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stream.readable().await?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// After a read that did not fill its buffer the socket was empty: tell the
/// reactor so (a closure that reports `WouldBlock` clears tokio's readiness
/// without a system call), so that the next read waits for the next epoll
/// event instead of first making a `recvmsg` that finds nothing — one
/// system call per streamed chunk saved. No wake-up can be lost: bytes that
/// arrive after the drained read raise a new edge-triggered event, and tokio
/// ignores a clear older than the readiness it has already recorded.
fn forget_readiness(stream: &TcpStream) {
    let _ = stream.try_io(Interest::READABLE, || {
        Err::<(), io::Error>(io::ErrorKind::WouldBlock.into())
    });
}

/// [`read`] for a poll-based reader (an `AsyncRead` over the socket, as a
/// server wraps its connections in): fills `buf` and gives the bytes'
/// arrival time (CLOCK_MONOTONIC ns). Nothing filled: the peer closed.
pub fn poll_read(
    stream: &TcpStream,
    cx: &mut std::task::Context<'_>,
    buf: &mut tokio::io::ReadBuf<'_>,
) -> std::task::Poll<io::Result<u64>> {
    use std::task::Poll;
    loop {
        if let Err(e) = std::task::ready!(stream.poll_read_ready(cx)) {
            return Poll::Ready(Err(e));
        }
        // Zeroes only what was never initialised (a reused buffer: nothing).
        let slice = buf.initialize_unfilled();
        match stream.try_io(Interest::READABLE, || recv(stream.as_raw_fd(), slice)) {
            Ok((n, stamp)) => {
                buf.advance(n);
                return Poll::Ready(Ok(arrival(stamp)));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
}

/// When the bytes of a read with kernel stamp `stamp` (CLOCK_REALTIME ns) arrived.
fn arrival(stamp: Option<u64>) -> u64 {
    let mono = monotonic_ns();
    let Some(stamp) = stamp else {
        return mono;
    };
    match realtime_ns().checked_sub(stamp) {
        Some(age) if age <= MAX_AGE_NS => mono.saturating_sub(age),
        _ => mono,
    }
}

fn realtime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_REALTIME always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    timespec_ns(&ts)
}

fn timespec_ns(ts: &libc::timespec) -> u64 {
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// One `recvmsg`: the bytes and the `SCM_TIMESTAMPNS` stamp when one came.
fn recv(fd: i32, buf: &mut [u8]) -> io::Result<(usize, Option<u64>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Room for a few control messages; u64s keep it aligned for cmsghdr.
    let mut control = [0u64; 16];
    // SAFETY: an all-zero msghdr is valid (no name, no iov, no control yet).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: `msg` points at a live iovec over `buf` and at `control`, both
    // valid for the lengths given, for the duration of the call.
    let n = unsafe { libc::recvmsg(fd, &raw mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut stamp = None;
    // SAFETY: `msg` was filled by recvmsg; the CMSG_* walk stays within
    // msg_controllen as the kernel set it.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                stamp = Some(timespec_ns(&ts));
            }
            cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
        }
    }
    Ok((n as usize, stamp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_convert_by_their_age_and_untrusted_ones_fall_back() {
        let real = realtime_ns();
        let before = monotonic_ns();
        // 2 ms ago: 2 ms before now on the monotonic clock (give or take the
        // time between the clock reads).
        let t = arrival(Some(real - 2_000_000));
        let after = monotonic_ns();
        // Within the time the clock reads took, either way.
        let slack = after - before + 100_000;
        assert!((t + 2_000_000).abs_diff(before) <= slack, "{t} vs {before}");
        // None, future, or too old: the read's own time.
        for stamp in [
            None,
            Some(real + 10_000_000_000),
            Some(real - 5_000_000_000),
        ] {
            let t = arrival(stamp);
            assert!(t >= before && t <= monotonic_ns(), "{stamp:?}");
        }
    }

    /// Run `body` with a connected loopback pair (client, server) on a
    /// single-threaded runtime, as the load generator runs.
    fn on_loopback<F, Fut>(body: F)
    where
        F: FnOnce(TcpStream, TcpStream) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let client = TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            let (server, _) = listener.accept().await.unwrap();
            body(client, server).await;
        });
    }

    #[test]
    fn a_drained_read_still_wakes_for_the_next_bytes() {
        // After a short read the reactor is told the socket is empty; the
        // next bytes must still wake the reader, whether they come after the
        // reader is waiting or before it asks again.
        on_loopback(|client, server| async move {
            let server = std::sync::Arc::new(server);
            let mut buf = [0u8; 64];
            for round in 0..50u32 {
                let text = format!("chunk {round}");
                if round % 2 == 0 {
                    // Written while the reader waits.
                    let writer = server.clone();
                    let sent = text.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                        writer.try_write(sent.as_bytes()).unwrap();
                    });
                } else {
                    // Already there when the reader asks.
                    server.try_write(text.as_bytes()).unwrap();
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                let (n, _) = tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    read(&client, &mut buf),
                )
                .await
                .expect("the reader was woken")
                .unwrap();
                assert_eq!(&buf[..n], text.as_bytes());
            }
        });
    }

    #[test]
    fn loopback_reads_carry_a_plausible_kernel_stamp() {
        on_loopback(|client, server| async move {
            assert!(enable(&client));
            // The kernel turns stamping on for the whole machine in a deferred
            // work item when the first socket asks: the first exchange may
            // come before it; the second cannot.
            for round in 0..2 {
                let sent = monotonic_ns();
                server.try_write(b"hello").unwrap();
                // Let the bytes sit in the socket: the stamp must say when
                // they came, not when they were read.
                std::thread::sleep(std::time::Duration::from_millis(20));
                let mut buf = [0u8; 16];
                let (n, at) = read(&client, &mut buf).await.unwrap();
                let read_at = monotonic_ns();
                assert_eq!(&buf[..n], b"hello");
                assert!(at >= sent.saturating_sub(1_000_000), "{at} < {sent}");
                if round == 1 {
                    assert!(
                        read_at - at >= 15_000_000,
                        "stamped {} µs before the read: not the kernel's arrival time",
                        (read_at - at) / 1000
                    );
                }
            }
        });
    }
}
