//! A minimal HTTP/1.1 client over `std::net::TcpStream` for plugins with a
//! network grant (`energy-redfish` reads a BMC, `sink-prometheus-push` pushes
//! to a Pushgateway): one request per connection (`Connection: close`),
//! bodies with `Content-Length`, chunked or read to EOF, every read under a
//! deadline and the whole response under a size bound. No TLS: `https://` is
//! refused by [`parse_url`] with the way around it.
//!
//! Written here rather than taken from crates.io because the HTTP clients
//! there either need an async runtime or TLS stacks that do not build for
//! `wasm32-wasip2`, and a plugin needs only this much.
//!
//! `std::net` works the same natively and in `wasm32-wasip2`, where the
//! kernel lets the connection through only to an address the manifest grants
//! (`[plugins.<instance>.sandbox] connect = ["host:port"]`).

use llem_sdk::{Config, ErrorCode, PluginError};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The most a response (head and body) may hold: the servers this client
/// talks to answer a few KiB (a Redfish resource, a Pushgateway's reply).
pub const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Where the server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub host: String,
    pub port: u16,
    /// The URL's path without a trailing `/` (`""` for none): a server
    /// behind a reverse proxy under a prefix.
    pub path: String,
}

impl Url {
    /// `host:port`, as a `connect` grant names it.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The full URL of `path` (absolute, below [`Url::path`]).
    pub fn to_http(&self, path: &str) -> String {
        format!("http://{}{}{path}", self.authority(), self.path)
    }
}

/// Parse `http://host[:port][/path]` (the `url` option). `https://` is
/// refused, saying why and how to get there anyway.
pub fn parse_url(text: &str) -> Result<Url, PluginError> {
    let text = text.trim();
    if text
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
    {
        return Err(PluginError::invalid_config(
            "url",
            format!(
                "{text}: this plugin speaks plain HTTP only (it has no TLS client yet)"
            ),
        )
        .with_hint(
            "put a TLS-terminating proxy next to llem and point `url` at it, e.g. \
             `socat TCP-LISTEN:8000,bind=127.0.0.1,fork,reuseaddr OPENSSL:server.example:443,verify=1` \
             (or stunnel in client mode), then `url = \"http://127.0.0.1:8000\"` and \
             `connect = [\"127.0.0.1:8000\"]`",
        ));
    }
    let Some(rest) = text
        .get(..7)
        .filter(|s| s.eq_ignore_ascii_case("http://"))
        .map(|_| &text[7..])
    else {
        return Err(PluginError::invalid_config(
            "url",
            format!("{text:?} is not an http:// URL (e.g. http://127.0.0.1:8000)"),
        ));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if path.contains(['?', '#']) {
        return Err(PluginError::invalid_config(
            "url",
            format!("{text}: give the server's address and path, without a query or fragment"),
        ));
    }
    if authority.contains('@') {
        // The URL is recorded in the resolved manifest and result.json.
        return Err(PluginError::invalid_config(
            "url",
            "credentials do not belong in the URL (it is recorded with the run): use the \
             plugin's `username` and `password_env` options",
        ));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(|| {
            PluginError::invalid_config("url", format!("{text}: unclosed [ in the address"))
        })?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(PluginError::invalid_config(
            "url",
            format!("{text}: no host"),
        ));
    }
    let port = match port {
        None | Some("") => 80,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
            PluginError::invalid_config("url", format!("{text}: `{p}` is not a port"))
        })?,
    };
    Ok(Url {
        host: host.to_owned(),
        port,
        path: path.trim_end_matches('/').to_owned(),
    })
}

/// A duration option in ms (`timeout_ms`, `poll_ms`, …): `default` when
/// unset, and `min` to one hour, else an error naming the option.
pub fn milliseconds(
    config: &Config,
    key: &str,
    default: i64,
    min: i64,
) -> Result<u64, PluginError> {
    let ms: i64 = config.optional(key)?.unwrap_or(default);
    u64::try_from(ms)
        .ok()
        .filter(|_| (min..=3_600_000).contains(&ms))
        .ok_or_else(|| {
            PluginError::invalid_config(key, format!("must be {min} to 3600000 ms, found {ms}"))
        })
}

/// Standard base64 with padding (RFC 4648), for HTTP Basic credentials.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A response: status and body (the headers are consumed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub body: Vec<u8>,
}

/// Why a request failed before a status line arrived.
#[derive(Debug)]
pub enum Failure {
    /// The TCP connection could not be made.
    Connect(std::io::Error),
    /// The connection broke, timed out or the answer was not HTTP.
    Exchange(String),
}

#[derive(Debug, Clone)]
pub struct Client {
    pub url: Url,
    /// `User-Agent`, e.g. `llem-energy-redfish/0.1.0`.
    user_agent: String,
    /// `Basic ...`, when credentials are configured.
    authorization: Option<String>,
    timeout: Duration,
}

impl Client {
    pub fn new(
        url: Url,
        user_agent: impl Into<String>,
        credentials: Option<(&str, &str)>,
        timeout: Duration,
    ) -> Self {
        Client {
            url,
            user_agent: user_agent.into(),
            authorization: credentials.map(|(user, pass)| {
                format!("Basic {}", base64(format!("{user}:{pass}").as_bytes()))
            }),
            timeout,
        }
    }

    /// GET `path` (absolute, below the URL's path, e.g. `/redfish/v1/`)
    /// with `headers` besides Host, User-Agent, Connection and Authorization.
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Result<Response, Failure> {
        self.request("GET", path, headers, None)
    }

    /// `method path` with `headers` and, when given, a body of
    /// `(content type, bytes)`.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, &[u8])>,
    ) -> Result<Response, Failure> {
        let deadline = Instant::now() + self.timeout;
        let mut stream = self.connect()?;
        // Timeouts may be unsupported on some targets: the deadline checks
        // below and the kernel's own bound on a plugin call still apply.
        let _ = stream.set_read_timeout(Some(self.timeout));
        let _ = stream.set_write_timeout(Some(self.timeout));
        let mut request = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {}\r\nConnection: close\r\n",
            self.url.path,
            self.url.authority(),
            self.user_agent,
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(auth) = &self.authorization {
            request.push_str(&format!("Authorization: {auth}\r\n"));
        }
        if let Some((content_type, bytes)) = body {
            request.push_str(&format!(
                "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
                bytes.len()
            ));
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        if let Some((_, body)) = body {
            bytes.extend_from_slice(body);
        }
        stream.write_all(&bytes).map_err(|e| match e.kind() {
            // The connection never came up (see `connected`): a connect failure.
            ErrorKind::NotConnected => Failure::Connect(std::io::Error::new(
                ErrorKind::ConnectionRefused,
                format!("connection refused (the connection was not established: {e})"),
            )),
            _ => Failure::Exchange(format!("sending the request: {e}")),
        })?;
        let raw = read_bounded(&mut stream, deadline, self.timeout)?;
        parse_response(&raw).map_err(Failure::Exchange)
    }

    fn connect(&self) -> Result<TcpStream, Failure> {
        let addrs = (self.url.host.as_str(), self.url.port)
            .to_socket_addrs()
            .map_err(Failure::Connect)?;
        let mut last = std::io::Error::new(ErrorKind::NotFound, "the name resolved to no address");
        for addr in addrs {
            let attempt = match TcpStream::connect_timeout(&addr, self.timeout) {
                Err(e) if e.kind() == ErrorKind::Unsupported => TcpStream::connect(addr),
                other => other,
            };
            match attempt.and_then(connected) {
                Ok(stream) => return Ok(stream),
                Err(e) => last = e,
            }
        }
        Err(Failure::Connect(last))
    }
}

/// `stream` if its connection was really made. On wasm32-wasip2 a connect
/// that the peer refuses can come back as success (the refusal arrives after
/// the call returned), and the first write then fails with "socket not
/// connected": ask the socket now, so the failure is reported as the refused
/// connection it is.
fn connected(stream: TcpStream) -> std::io::Result<TcpStream> {
    if let Ok(Some(e)) = stream.take_error() {
        return Err(e);
    }
    match stream.peer_addr() {
        Err(e) if e.kind() == ErrorKind::NotConnected => Err(std::io::Error::new(
            ErrorKind::ConnectionRefused,
            "connection refused (the connection was not established)",
        )),
        _ => Ok(stream),
    }
}

fn read_bounded(
    stream: &mut TcpStream,
    deadline: Instant,
    timeout: Duration,
) -> Result<Vec<u8>, Failure> {
    let mut raw = Vec::with_capacity(8192);
    let mut buf = [0u8; 8192];
    loop {
        if Instant::now() > deadline {
            return Err(Failure::Exchange(format!(
                "no complete answer within {} ms",
                timeout.as_millis()
            )));
        }
        match stream.read(&mut buf) {
            Ok(0) => return Ok(raw),
            Ok(n) => {
                if raw.len() + n > MAX_RESPONSE_BYTES {
                    return Err(Failure::Exchange(format!(
                        "the answer is larger than {MAX_RESPONSE_BYTES} bytes (this client expects a few KiB)"
                    )));
                }
                raw.extend_from_slice(&buf[..n]);
                if response_complete(&raw) {
                    return Ok(raw);
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(Failure::Exchange(format!(
                    "no complete answer within {} ms",
                    timeout.as_millis()
                )));
            }
            Err(e) => return Err(Failure::Exchange(format!("reading the answer: {e}"))),
        }
    }
}

/// Whether `raw` already holds a whole response with a declared length (so
/// a server that keeps the connection open despite `Connection: close` does
/// not cost a timeout).
fn response_complete(raw: &[u8]) -> bool {
    let Some(end) = find(raw, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..end]);
    let body = &raw[end + 4..];
    for line in head.lines().skip(1) {
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim();
            if name.eq_ignore_ascii_case("content-length") {
                return value.trim().parse::<usize>().is_ok_and(|n| body.len() >= n);
            }
            if name.eq_ignore_ascii_case("transfer-encoding")
                && value.to_ascii_lowercase().contains("chunked")
            {
                return dechunk(body).is_ok();
            }
        }
    }
    false
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Split a raw response into status and body.
pub fn parse_response(raw: &[u8]) -> Result<Response, String> {
    if raw.is_empty() {
        return Err("the connection closed without an answer".to_owned());
    }
    let end = find(raw, b"\r\n\r\n")
        .ok_or_else(|| "the answer is not HTTP (no end of headers)".to_owned())?;
    let head = std::str::from_utf8(&raw[..end])
        .map_err(|_| "the answer's headers are not text".to_owned())?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("the answer is not HTTP/1.x: {status_line:?}"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let reason = parts.next().unwrap_or_default().to_owned();
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .trim()
                    .parse::<usize>()
                    .map_err(|_| format!("bad Content-Length {:?}", value.trim()))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    let rest = &raw[end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = length {
        if rest.len() < n {
            return Err(format!("the body ended after {} of {n} bytes", rest.len()));
        }
        rest[..n].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        reason,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = find(rest, b"\r\n").ok_or("a chunk size line is cut short")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if rest.len() < size + 2 {
            return Err("a chunk is cut short".to_owned());
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// A connect failure as a plugin error: refused (nobody listens), refused by
/// the sandbox (no grant), or anything else. `service` names what should be
/// listening, e.g. "the BMC's Redfish service".
pub fn connect_error(url: &Url, err: &std::io::Error, service: &str) -> PluginError {
    let addr = url.authority();
    let grant = format!(
        "grant the address in the manifest: [plugins.<instance>.sandbox] connect = [\"{addr}\"] \
         (the host:port of `url`, exactly)"
    );
    match err.kind() {
        ErrorKind::ConnectionRefused => PluginError::new(
            ErrorCode::Unavailable,
            format!("connecting to {addr}: connection refused: nothing listens there"),
        )
        .with_hint(format!(
            "check `url` ({}) and that {service} is up; if it is, {grant}",
            url.to_http("/")
        )),
        ErrorKind::PermissionDenied => PluginError::new(
            ErrorCode::PermissionDenied,
            format!("connecting to {addr}: the sandbox refused the connection ({err})"),
        )
        .with_hint(grant),
        _ => PluginError::new(
            ErrorCode::Unavailable,
            format!("connecting to {addr}: {err}"),
        )
        .with_hint(format!(
            "a WASM plugin reaches only granted addresses: {grant}; otherwise check `url` and the network"
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("http://127.0.0.1:8000").unwrap(),
            Url {
                host: "127.0.0.1".into(),
                port: 8000,
                path: String::new(),
            }
        );
        assert_eq!(parse_url("HTTP://bmc/").unwrap().port, 80);
        assert_eq!(parse_url("HTTP://bmc/").unwrap().path, "");
        assert_eq!(parse_url("http://[::1]:9").unwrap().authority(), "[::1]:9");
        let err = parse_url("https://bmc.example").unwrap_err();
        assert!(err.message.contains("plain HTTP only"), "{err}");
        assert!(err.hint.unwrap().contains("TLS-terminating proxy"));
        assert!(parse_url("bmc:80").is_err());
        let prefixed = parse_url("http://gw:9091/push/").unwrap();
        assert_eq!(prefixed.path, "/push");
        assert_eq!(prefixed.to_http("/metrics"), "http://gw:9091/push/metrics");
        assert!(parse_url("http://gw/a?b=c").is_err());
        assert!(parse_url("http://root:pw@bmc").is_err());
        assert!(parse_url("http://bmc:0").is_err());
        assert!(parse_url("http://:80").is_err());
    }

    #[test]
    fn base64_matches_rfc4648() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
            ("root:calvin", "cm9vdDpjYWx2aW4="),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn responses() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}extra").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"{}"[..]));
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4;x=y\r\n\":1}\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, b"{\"a\":1}");
        let r = parse_response(b"HTTP/1.0 401 Unauthorized\r\n\r\nno").unwrap();
        assert_eq!(
            (r.status, r.reason.as_str(), r.body.as_slice()),
            (401, "Unauthorized", &b"no"[..])
        );
        assert!(parse_response(b"").is_err());
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}").is_err());
        assert!(response_complete(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
        ));
        assert!(!response_complete(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n{}"
        ));
    }
}
