//! A blocking HTTP/1.1 GET for health checks and Prometheus scrapes: local,
//! no TLS. hyper does the protocol (chunked bodies, content lengths, bodies
//! split anywhere, even inside a multi-byte character), the same client
//! stack the load generator uses; this wraps one request in a current-thread
//! tokio runtime with an overall deadline and an optional stop flag.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{ACCEPT, HOST, HeaderValue, USER_AGENT};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use std::io::{Error, ErrorKind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Largest body kept: a Prometheus page of a large engine is well under 1 MiB.
const MAX_BODY: usize = 64 << 20;
/// How often a waiting request looks at its stop flag.
const STOP_POLL: Duration = Duration::from_millis(25);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// Split `http://host:port/base` into (host:port, path prefix).
pub fn split_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("`{url}`: only http:// URLs are supported for engines"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    Ok((authority.to_owned(), path.trim_end_matches('/').to_owned()))
}

/// GET `path` from `authority` (`host:port`), all of it within `timeout`.
pub fn get(authority: &str, path: &str, timeout: Duration) -> std::io::Result<Response> {
    get_unless(authority, path, timeout, None)
}

/// [`get`], given up (`ErrorKind::Interrupted`) as soon as `stop` is set, so
/// a health wait answers Ctrl-C at once even while a server holds a request.
pub fn get_unless(
    authority: &str,
    path: &str,
    timeout: Duration,
    stop: Option<&AtomicBool>,
) -> std::io::Result<Response> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    runtime.block_on(async {
        let stopped = async {
            loop {
                if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
                    return;
                }
                tokio::time::sleep(STOP_POLL).await;
            }
        };
        tokio::select! {
            result = tokio::time::timeout(timeout, fetch(authority, path)) => {
                result.map_err(|_| Error::new(
                    ErrorKind::TimedOut,
                    format!("no answer from {authority} within {:.1} s", timeout.as_secs_f64()),
                ))?
            }
            () = stopped => Err(Error::new(ErrorKind::Interrupted, "stopped")),
        }
    })
}

async fn fetch(authority: &str, path: &str) -> std::io::Result<Response> {
    let path = if path.is_empty() { "/" } else { path };
    let host = HeaderValue::from_str(authority)
        .map_err(|_| Error::new(ErrorKind::InvalidInput, format!("bad host `{authority}`")))?;
    let stream = tokio::net::TcpStream::connect(authority).await?;
    stream.set_nodelay(true).ok();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(Error::other)?;
    // Drives the connection; ends with the response body or the runtime.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(HOST, host)
        .header(USER_AGENT, HeaderValue::from_static("llem"))
        .header(ACCEPT, HeaderValue::from_static("*/*"))
        .body(Empty::<Bytes>::new())
        .map_err(|e| Error::new(ErrorKind::InvalidInput, e))?;
    let response = sender.send_request(request).await.map_err(Error::other)?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.map_err(Error::other)?.into_data() {
            if bytes.len() + data.len() > MAX_BODY {
                return Err(Error::other(format!(
                    "the response to {path} is larger than {} MiB",
                    MAX_BODY >> 20
                )));
            }
            bytes.extend_from_slice(&data);
        }
    }
    // Decoded once, whole: a character split across chunks stays intact.
    let body = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    Ok(Response { status, body })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::Instant;

    #[test]
    fn urls_split_into_authority_and_base_path() {
        assert_eq!(
            split_url("http://127.0.0.1:8000/v1").unwrap(),
            ("127.0.0.1:8000".into(), "/v1".into())
        );
        assert_eq!(
            split_url("http://localhost:9/").unwrap(),
            ("localhost:9".into(), "".into())
        );
        assert!(split_url("https://x").is_err());
    }

    /// Read a request up to the blank line that ends its head.
    pub(crate) fn read_head(conn: &mut std::net::TcpStream) -> String {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        String::from_utf8_lossy(&head).into_owned()
    }

    /// A one-connection server that answers with `parts`, written (and
    /// flushed) one at a time with a pause between, so they arrive apart.
    fn serve(parts: Vec<Vec<u8>>) -> (String, std::thread::JoinHandle<String>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            conn.set_nodelay(true).unwrap();
            let request = read_head(&mut conn);
            for part in parts {
                conn.write_all(&part).unwrap();
                conn.flush().unwrap();
                std::thread::sleep(Duration::from_millis(30));
            }
            request
        });
        (addr, server)
    }

    #[test]
    fn a_real_local_server_answers() {
        let (addr, server) = serve(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
        ]);
        let response = get(&addr, "/health", Duration::from_secs(2)).unwrap();
        assert_eq!(
            response,
            Response {
                status: 200,
                body: "ok".into()
            }
        );
        let request = server.join().unwrap();
        assert!(request.starts_with("GET /health HTTP/1.1\r\n"), "{request}");
    }

    #[test]
    fn a_multibyte_character_split_across_chunks_survives() {
        // "é" is C3 A9 and "€" is E2 82 AC: each chunk ends inside one.
        let (addr, server) = serve(vec![
            b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            b"4\r\ncaf\xC3\r\n".to_vec(),
            b"3\r\n\xA9 \xE2\r\n".to_vec(),
            b"2\r\n\x82\xAC\r\n".to_vec(),
            b"0\r\n\r\n".to_vec(),
        ]);
        let response = get(&addr, "/metrics", Duration::from_secs(2)).unwrap();
        assert_eq!(
            response,
            Response {
                status: 503,
                body: "café €".into()
            }
        );
        server.join().unwrap();
    }

    #[test]
    fn a_silent_server_times_out_and_a_stop_flag_ends_the_wait() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        // Accepts (the kernel's backlog does) but never answers.
        let started = Instant::now();
        let err = get(&addr, "/health", Duration::from_millis(300)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));

        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let setter = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                stop.store(true, Ordering::Relaxed);
            })
        };
        let started = Instant::now();
        let err = get_unless(&addr, "/health", Duration::from_secs(30), Some(&stop)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Interrupted, "{err}");
        assert!(started.elapsed() < Duration::from_secs(1));
        setter.join().unwrap();
        drop(listener);
    }
}
