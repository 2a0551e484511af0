//! `recv-floor`: the least a streaming client can do per chunk on this
//! machine, as a floor for llem's client CPU (issue #12 goal 1,
//! `bench/side_by_side.py --clients floor`).
//!
//! ```text
//! recv-floor ADDR STREAMS REQUESTS TAG [MAX_TOKENS]
//! ```
//! Closed loop at STREAMS connections, REQUESTS `/v1/completions` streaming
//! requests in all (prompt `req TAG-i hello`, as llem's side-by-side runs
//! send), on one thread: raw edge-triggered epoll, one `recvmsg` per readable
//! socket with its kernel receive timestamp (`SO_TIMESTAMPNS`), the timestamp
//! converted to CLOCK_MONOTONIC and kept per SSE event (counted by its blank
//! line), the end of each response found by chunked encoding's last chunk.
//! No HTTP or JSON parsing, no records, no energy sampling: what remains is
//! the kernel's work per chunk (the system call, TCP receive, ACKs) and the
//! wake-ups. Prints `{"requests", "events", "ttft_mean_ms"}` (TTFT: send to
//! the first event's arrival) on stdout.

use std::collections::VecDeque;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::process::ExitCode;

const BUF: usize = 16 * 1024;
/// The last bytes of a chunked response body.
const END: &[u8] = b"\r\n0\r\n\r\n";

struct Conn {
    stream: TcpStream,
    /// The request in flight: its send time, event times, the last bytes so far.
    sent_ns: u64,
    events: Vec<u64>,
    tail: [u8; 8],
    /// The two bytes before the one being looked at.
    prev: [u8; 2],
    /// The response head (the first blank line) has been read.
    in_body: bool,
}

fn now_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid, writable timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `recvmsg` with the receive timestamp: (bytes, CLOCK_REALTIME stamp ns).
fn recv(fd: i32, buf: &mut [u8]) -> std::io::Result<(usize, Option<u64>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u64; 8];
    // SAFETY: zeroed msghdr pointing at live buffers of the given sizes.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: as above.
    let n = unsafe { libc::recvmsg(fd, &mut msg, 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut stamp = None;
    // SAFETY: walking the control messages the kernel wrote into `control`.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SO_TIMESTAMPNS {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::timespec>());
                stamp = Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n as usize, stamp))
}

fn request(tag: &str, i: usize, max_tokens: u32, addr: SocketAddr) -> Vec<u8> {
    let body = format!(
        r#"{{"model":"m","prompt":"req {tag}-{i} hello","max_tokens":{max_tokens},"stream":true,"ignore_eos":true,"stream_options":{{"include_usage":true}}}}"#
    );
    format!(
        "POST /v1/completions HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn run() -> Result<String, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, streams, requests, tag, rest @ ..] = args.as_slice() else {
        return Err("usage: recv-floor ADDR STREAMS REQUESTS TAG [MAX_TOKENS]".into());
    };
    let addr: SocketAddr = addr.parse().map_err(|e| format!("ADDR: {e}"))?;
    let streams: usize = streams.parse().map_err(|e| format!("STREAMS: {e}"))?;
    let requests: usize = requests.parse().map_err(|e| format!("REQUESTS: {e}"))?;
    let max_tokens: u32 = match rest.first() {
        Some(n) => n.parse().map_err(|e| format!("MAX_TOKENS: {e}"))?,
        None => 256,
    };
    // SAFETY: plain system call.
    let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if epoll < 0 {
        return Err(format!("epoll: {}", std::io::Error::last_os_error()));
    }
    let mut conns = Vec::with_capacity(streams);
    for i in 0..streams.min(requests) {
        let stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
        stream.set_nodelay(true).ok();
        let on: libc::c_int = 1;
        // SAFETY: valid socket and option of the given size.
        unsafe {
            libc::setsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&raw const on).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLET) as u32,
            u64: i as u64,
        };
        // SAFETY: valid descriptors and event.
        unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, stream.as_raw_fd(), &mut event) };
        conns.push(Conn {
            stream,
            sent_ns: 0,
            events: Vec::with_capacity(max_tokens as usize + 4),
            tail: [0; 8],
            prev: [0; 2],
            in_body: false,
        });
    }
    let mut next = 0;
    let mut idle: VecDeque<usize> = (0..conns.len()).collect();
    let (mut done, mut events_total, mut ttft_sum) = (0usize, 0usize, 0f64);
    let mut buf = vec![0u8; BUF];
    let mut ready = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    while done < requests {
        while next < requests {
            let Some(c) = idle.pop_front() else { break };
            let conn = &mut conns[c];
            conn.events.clear();
            conn.tail = [0; 8];
            conn.prev = [0; 2];
            conn.in_body = false;
            conn.sent_ns = now_ns(libc::CLOCK_MONOTONIC);
            conn.stream
                .write_all(&request(tag, next, max_tokens, addr))
                .map_err(|e| format!("send: {e}"))?;
            next += 1;
        }
        // SAFETY: `ready` has room for its length of events.
        let n = unsafe { libc::epoll_wait(epoll, ready.as_mut_ptr(), ready.len() as i32, -1) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("epoll_wait: {e}"));
        }
        for event in &ready[..n as usize] {
            let c = event.u64 as usize;
            let conn = &mut conns[c];
            loop {
                let (got, stamp) = match recv(conn.stream.as_raw_fd(), &mut buf) {
                    Ok(read) => read,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(format!("recv: {e}")),
                };
                if got == 0 {
                    return Err("the server closed a connection".into());
                }
                let mono = now_ns(libc::CLOCK_MONOTONIC);
                let at = match stamp {
                    Some(s) => mono.saturating_sub(now_ns(libc::CLOCK_REALTIME).saturating_sub(s)),
                    None => mono,
                };
                // SSE lines end in LF, HTTP's and chunked framing's in CRLF:
                // an event ends at LF LF, the head at CRLF CRLF.
                for &b in &buf[..got] {
                    if b == b'\n' {
                        if conn.in_body && conn.prev[1] == b'\n' {
                            conn.events.push(at);
                        } else if !conn.in_body && conn.prev == [b'\n', b'\r'] {
                            conn.in_body = true;
                        }
                    }
                    conn.prev = [conn.prev[1], b];
                }
                let keep = got.min(8);
                conn.tail.rotate_left(keep);
                conn.tail[8 - keep..].copy_from_slice(&buf[got - keep..got]);
                if conn.tail.ends_with(END) {
                    done += 1;
                    events_total += conn.events.len();
                    if let Some(first) = conn.events.first() {
                        ttft_sum += (first - conn.sent_ns) as f64 / 1e6;
                    }
                    idle.push_back(c);
                    break;
                }
                if got < buf.len() {
                    break; // drained: wait for the next edge
                }
            }
        }
    }
    Ok(format!(
        r#"{{"requests":{done},"events":{events_total},"ttft_mean_ms":{}}}"#,
        ttft_sum / done.max(1) as f64
    ))
}

fn main() -> ExitCode {
    match run() {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("recv-floor: {e}");
            ExitCode::from(2)
        }
    }
}
