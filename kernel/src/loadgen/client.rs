//! One streaming request over HTTP/1.1, on a keep-alive pool of connections
//! that the request's own task reads: the bytes of a chunk wake that task
//! and no other (one task hop per chunk), and each read carries the kernel's
//! receive time of its bytes ([`super::stamped`]).
//!
//! Plain `http://` only for now: TLS would wrap the `TcpStream` in
//! [`Client::connect`] and the reads in [`super::stamped`].

use std::net::SocketAddr;
use std::sync::Mutex;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::RequestRecord;
use super::chunk::StreamState;
use super::http1::{BodyDecoder, parse_head};
use super::sse::SseParser;
use super::stamped;
use crate::clock::monotonic_ns;

/// Read buffer of a connection: a paced stream's chunk is ~200 bytes, and a
/// server sending flat out fills a few KiB between two reads.
const READ_BUF: usize = 16 * 1024;
/// Bytes of an error response's body kept in the record.
const EXCERPT: usize = 1024;

/// One connection and its read buffer.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// How an attempt failed.
enum Failure {
    /// Nothing came back: on a kept-alive connection, the server had closed
    /// it while idle, and the request can go again on a new one.
    Unanswered(String),
    Other(String),
}

/// A keep-alive pool of HTTP/1 connections to one address.
pub(crate) struct Client {
    addr: SocketAddr,
    idle: Mutex<Vec<Conn>>,
}

impl Client {
    pub(crate) fn new(addr: SocketAddr) -> Self {
        Client {
            addr,
            idle: Mutex::new(Vec::new()),
        }
    }

    async fn connect(addr: SocketAddr) -> Result<Conn, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        stream.set_nodelay(true).ok();
        stamped::enable(&stream);
        Ok(Conn {
            stream,
            buf: vec![0; READ_BUF],
        })
    }

    /// Open `n` connections at once and keep them for the requests to come,
    /// so that the first wave's TTFTs do not include connection set-up (the
    /// handshakes of hundreds of connections opened at the same instant, a
    /// queue on the server's listen backlog). Failures are left to the
    /// requests, which then connect themselves and record why they could not.
    pub(crate) async fn prewarm(&self, n: usize) {
        let mut opening = tokio::task::JoinSet::new();
        for _ in 0..n {
            opening.spawn(Self::connect(self.addr));
        }
        let mut opened = Vec::with_capacity(n);
        while let Some(joined) = opening.join_next().await {
            if let Ok(Ok(conn)) = joined {
                opened.push(conn);
            }
        }
        if let Ok(mut idle) = self.idle.lock() {
            idle.extend(opened);
        }
    }

    /// A kept connection the server has not closed, if there is one.
    fn checkout(&self) -> Option<Conn> {
        loop {
            let conn = self.idle.lock().ok()?.pop()?;
            // An idle connection has nothing to read: a close (0 bytes), an
            // error or stray bytes mean it cannot carry a request.
            if let Err(e) = conn.stream.try_read(&mut [0u8; 1])
                && e.kind() == std::io::ErrorKind::WouldBlock
            {
                return Some(conn);
            }
        }
    }

    fn checkin(&self, conn: Conn) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
    }

    /// Send one request (`request`: the whole HTTP request, written at once)
    /// and read its stream into `rec` (timestamps, text, usage). `Err`
    /// carries what went wrong; whatever was received before stays in `rec`.
    pub(crate) async fn exchange(
        &self,
        request: &[u8],
        rec: &mut RequestRecord,
        text: &mut String,
    ) -> Result<(), String> {
        rec.send_ns = monotonic_ns();
        loop {
            let (conn, kept) = match self.checkout() {
                Some(conn) => (conn, true),
                None => (Self::connect(self.addr).await?, false),
            };
            match self.attempt(conn, request, rec, text).await {
                Ok(()) => return Ok(()),
                Err(Failure::Unanswered(_)) if kept => continue,
                Err(Failure::Unanswered(e) | Failure::Other(e)) => return Err(e),
            }
        }
    }

    async fn attempt(
        &self,
        mut conn: Conn,
        request: &[u8],
        rec: &mut RequestRecord,
        text: &mut String,
    ) -> Result<(), Failure> {
        conn.stream
            .write_all(request)
            .await
            .map_err(|e| Failure::Unanswered(format!("sending the request: {e}")))?;

        // The response head; the first bytes of the body may come with it.
        let mut filled = 0;
        let (head, head_len, mut t) = loop {
            if filled == conn.buf.len() {
                conn.buf.resize(conn.buf.len() * 2, 0);
            }
            let (n, t) = stamped::read(&conn.stream, &mut conn.buf[filled..])
                .await
                .map_err(|e| {
                    let e = format!("reading the response: {e}");
                    if filled == 0 {
                        Failure::Unanswered(e)
                    } else {
                        Failure::Other(e)
                    }
                })?;
            if n == 0 {
                let e = "the server closed the connection without a response".to_owned();
                return Err(if filled == 0 {
                    Failure::Unanswered(e)
                } else {
                    Failure::Other(e)
                });
            }
            filled += n;
            if let Some((head, len)) = parse_head(&conn.buf[..filled]).map_err(Failure::Other)? {
                break (head, len, t);
            }
        };
        let mut decoder = BodyDecoder::new(head.framing);
        if !(200..300).contains(&head.status) {
            let excerpt = read_excerpt(&mut conn, &mut decoder, head_len, filled).await;
            return Err(Failure::Other(format!(
                "HTTP {} {}: {excerpt}",
                head.status, head.reason
            )));
        }

        let mut parser = SseParser::new();
        let mut stream = StreamState::default();
        let mut reusable = !head.close;
        let (mut start, mut end) = (head_len, filled);
        // Times never go backwards within a request, nor before its send:
        // kernel stamps converted between clocks can jitter by nanoseconds.
        let mut last = rec.send_ns;
        loop {
            t = t.max(last);
            last = t;
            let extra = decoder
                .feed(&conn.buf[start..end], &mut |data| {
                    parser.feed(data, &mut |event| stream.event(event, t, rec, text));
                })
                .map_err(|e| Failure::Other(format!("reading the stream: {e}")))?;
            if extra > 0 {
                reusable = false; // bytes after the body: the connection is out of step
            }
            if let Some(error) = stream.error.take() {
                rec.end_ns = t;
                return Err(Failure::Other(error));
            }
            if stream.done && rec.end_ns == 0 {
                rec.end_ns = t;
            }
            if decoder.is_done() {
                break;
            }
            let (n, at) = stamped::read(&conn.stream, &mut conn.buf)
                .await
                .map_err(|e| Failure::Other(format!("reading the stream: {e}")))?;
            t = at;
            if n == 0 {
                reusable = false;
                decoder
                    .at_close()
                    .map_err(|e| Failure::Other(format!("reading the stream: {e}")))?;
                break;
            }
            (start, end) = (0, n);
        }
        // End of body without [DONE]: accepted (some servers just close).
        let t = t.max(last);
        parser.finish(&mut |event| stream.event(event, t, rec, text));
        if rec.end_ns == 0 {
            rec.end_ns = t;
        }
        if let Some(error) = stream.error.take() {
            return Err(Failure::Other(error));
        }
        if reusable {
            self.checkin(conn);
        }
        if rec.chunk_ns.is_empty() {
            return Err(Failure::Other("the stream ended without any text".into()));
        }
        Ok(())
    }
}

/// Up to [`EXCERPT`] bytes of an error response's body, as text.
async fn read_excerpt(
    conn: &mut Conn,
    decoder: &mut BodyDecoder,
    mut start: usize,
    mut end: usize,
) -> String {
    let mut bytes = Vec::new();
    loop {
        let fed = decoder.feed(&conn.buf[start..end], &mut |data| {
            bytes.extend_from_slice(data);
        });
        if fed.is_err() || decoder.is_done() || bytes.len() > EXCERPT {
            break;
        }
        match stamped::read(&conn.stream, &mut conn.buf).await {
            Ok((n, _)) if n > 0 => (start, end) = (0, n),
            _ => break,
        }
    }
    let truncated = bytes.len() > EXCERPT;
    bytes.truncate(EXCERPT);
    let mut text = String::from_utf8_lossy(&bytes).trim().to_owned();
    if truncated {
        text.push('…');
    }
    if text.is_empty() {
        "(empty body)".into()
    } else {
        text
    }
}
