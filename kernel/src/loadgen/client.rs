//! One streaming request over HTTP/1.1 (hyper's connection API, a small
//! keep-alive pool), and the parsing of OpenAI-compatible stream chunks.
//!
//! Plain `http://` only for now: TLS would wrap the `TcpStream` in
//! [`Client::connect`] and nothing else changes.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Mutex;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::Deserialize;

use super::sse::SseParser;
use super::{Api, LoadError, RequestRecord};
use crate::clock::monotonic_ns;

/// Where requests go: parsed once from `base_url`.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub(crate) host: String,
    pub(crate) port: u16,
    authority: HeaderValue,
    pub(crate) path: String,
}

impl Endpoint {
    /// `http://host[:port][/base]` + `/completions` or `/chat/completions`.
    pub(crate) fn parse(base_url: &str, api: Api) -> Result<Self, LoadError> {
        let invalid = |why: &str| LoadError::InvalidConfig(format!("base_url `{base_url}`: {why}"));
        let rest = if let Some(rest) = base_url.strip_prefix("http://") {
            rest
        } else if base_url.starts_with("https://") {
            return Err(invalid(
                "https is not supported yet (engines are local: use http://)",
            ));
        } else {
            return Err(invalid(
                "expected http://HOST[:PORT]/PATH, e.g. http://127.0.0.1:8000/v1",
            ));
        };
        let (authority, base_path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(invalid("no host, or credentials in the URL"));
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| invalid("unterminated [IPv6] host"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(invalid("junk after the [IPv6] host")),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| invalid(&format!("`{p}` is not a port number")))?,
            None => 80,
        };
        let suffix = match api {
            Api::Completions => "/completions",
            Api::Chat => "/chat/completions",
        };
        Ok(Endpoint {
            host: host.to_owned(),
            port,
            authority: HeaderValue::from_str(authority)
                .map_err(|_| invalid("the host is not a valid header value"))?,
            path: format!("{base_path}{suffix}"),
        })
    }
}

/// A keep-alive pool of HTTP/1 connections to one address.
pub(crate) struct Client {
    addr: SocketAddr,
    endpoint: Endpoint,
    auth: Option<HeaderValue>,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

impl Client {
    pub(crate) fn new(
        addr: SocketAddr,
        endpoint: Endpoint,
        api_key: Option<&str>,
    ) -> Result<Self, LoadError> {
        let auth = api_key
            .map(|key| {
                HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
                    LoadError::InvalidConfig("api_key is not a valid header value".into())
                })
            })
            .transpose()?;
        Ok(Client {
            addr,
            endpoint,
            auth,
            idle: Mutex::new(Vec::new()),
        })
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connecting to {}: {e}", self.addr))?;
        stream.set_nodelay(true).ok();
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake with {}: {e}", self.addr))?;
        tokio::spawn(async move {
            // Ends when the peer closes or the sender and any response body are dropped.
            let _ = conn.await;
        });
        Ok(sender)
    }

    async fn checkout(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        loop {
            let idle = match self.idle.lock() {
                Ok(mut pool) => pool.pop(),
                Err(_) => None,
            };
            match idle {
                Some(sender) if sender.is_ready() => return Ok(sender),
                Some(_) => continue, // closed while idle
                None => return self.connect().await,
            }
        }
    }

    fn checkin(&self, sender: SendRequest<Full<Bytes>>) {
        if sender.is_ready()
            && let Ok(mut pool) = self.idle.lock()
        {
            pool.push(sender);
        }
    }

    fn request(&self, body: Bytes) -> Result<Request<Full<Bytes>>, String> {
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(self.endpoint.path.as_str())
            .header(HOST, self.endpoint.authority.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(ACCEPT, HeaderValue::from_static("text/event-stream"));
        if let Some(auth) = &self.auth {
            builder = builder.header(AUTHORIZATION, auth.clone());
        }
        builder
            .body(Full::new(body))
            .map_err(|e| format!("building the request: {e}"))
    }

    /// Send one request and read its stream into `rec` (timestamps, text, usage).
    /// `Err` carries what went wrong; whatever was received before stays in `rec`.
    pub(crate) async fn exchange(
        &self,
        body: Bytes,
        rec: &mut RequestRecord,
        text: &mut String,
    ) -> Result<(), String> {
        rec.send_ns = monotonic_ns();
        let mut sender = self.checkout().await?;
        let request = self.request(body)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("sending the request: {e}"))?;
        let status = response.status();
        let mut body = response.into_body();
        if !status.is_success() {
            let excerpt = read_excerpt(&mut body).await;
            return Err(format!("HTTP {status}: {excerpt}"));
        }

        let mut parser = SseParser::new();
        let mut stream = StreamState::default();
        loop {
            let Some(frame) = body.frame().await else {
                // End of body without [DONE]: accepted (some servers just close).
                let now = monotonic_ns();
                parser.finish(&mut |event| stream.event(event, now, rec, text));
                rec.end_ns = now;
                break;
            };
            let frame = frame.map_err(|e| format!("reading the stream: {e}"))?;
            let now = monotonic_ns();
            if let Ok(data) = frame.into_data() {
                parser.feed(&data, &mut |event| stream.event(event, now, rec, text));
            }
            if let Some(error) = stream.error.take() {
                rec.end_ns = now;
                return Err(error);
            }
            if stream.done {
                rec.end_ns = now;
                // Read the body's end so the connection can be reused.
                while let Some(frame) = body.frame().await {
                    if frame.is_err() {
                        return Ok(());
                    }
                }
                self.checkin(sender);
                break;
            }
        }
        if let Some(error) = stream.error.take() {
            return Err(error);
        }
        if rec.chunk_ns.is_empty() {
            return Err("the stream ended without any text".into());
        }
        Ok(())
    }
}

/// Up to 1 KiB of an error response's body, as text.
async fn read_excerpt(body: &mut hyper::body::Incoming) -> String {
    const LIMIT: usize = 1024;
    let mut bytes = Vec::new();
    while bytes.len() < LIMIT {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    bytes.extend_from_slice(&data);
                }
            }
            _ => break,
        }
    }
    let truncated = bytes.len() > LIMIT;
    bytes.truncate(LIMIT);
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

#[derive(Default)]
struct StreamState {
    done: bool,
    error: Option<String>,
}

impl StreamState {
    fn event(&mut self, data: &[u8], now: u64, rec: &mut RequestRecord, text: &mut String) {
        if self.done || self.error.is_some() {
            return;
        }
        if data == b"[DONE]" {
            self.done = true;
            return;
        }
        let chunk: StreamChunk = match serde_json::from_slice(data) {
            Ok(chunk) => chunk,
            Err(e) => {
                self.error = Some(format!("malformed stream event ({e}): {}", excerpt(data)));
                return;
            }
        };
        if let Some(error) = chunk.error {
            self.error = Some(format!("server error in the stream: {error}"));
            return;
        }
        let before = text.len();
        for choice in chunk.choices.iter().flatten() {
            if let Some(t) = &choice.text {
                text.push_str(t);
            }
            if let Some(delta) = &choice.delta {
                for part in [&delta.content, &delta.reasoning_content, &delta.reasoning]
                    .into_iter()
                    .flatten()
                {
                    text.push_str(part);
                }
            }
        }
        if text.len() > before {
            rec.chunk_ns.push(now);
            rec.first_token_ns.get_or_insert(now);
        }
        if let Some(usage) = chunk.usage {
            if let Some(n) = usage.completion_tokens {
                rec.output_tokens = Some(n);
                rec.tokens_from_usage = true;
            }
            if let Some(n) = usage.prompt_tokens {
                rec.input_tokens = Some(n);
            }
        }
    }
}

fn excerpt(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(&data[..data.len().min(200)]).into_owned();
    if data.len() > 200 { text + "…" } else { text }
}

/// The parts of a completions / chat-completions stream chunk llem reads.
#[derive(Deserialize)]
struct StreamChunk<'a> {
    #[serde(borrow, default)]
    choices: Option<Vec<Choice<'a>>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    delta: Option<Delta<'a>>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reasoning: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: Option<u32>,
    #[serde(default)]
    completion_tokens: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("http://127.0.0.1:8000/v1", Api::Completions).unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str()),
            ("127.0.0.1", 8000, "/v1/completions")
        );
        let e = Endpoint::parse("http://localhost/v1/", Api::Chat).unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str()),
            ("localhost", 80, "/v1/chat/completions")
        );
        let e = Endpoint::parse("http://[::1]:9/", Api::Chat).unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str()),
            ("::1", 9, "/chat/completions")
        );
        assert!(Endpoint::parse("https://x/v1", Api::Chat).is_err());
        assert!(Endpoint::parse("127.0.0.1:8000", Api::Chat).is_err());
        assert!(Endpoint::parse("http://h:port/v1", Api::Chat).is_err());
    }

    fn record() -> RequestRecord {
        RequestRecord {
            index: 0,
            prompt_id: "p".into(),
            phase: super::super::Phase::Measured,
            send_ns: 0,
            first_token_ns: None,
            chunk_ns: Vec::new(),
            end_ns: 0,
            input_tokens: None,
            output_tokens: None,
            tokens_from_usage: false,
            output_text_len: 0,
            output_text: None,
            success: false,
            error: None,
        }
    }

    #[test]
    fn chunks_with_text_count_role_only_chunks_do_not() {
        let mut rec = record();
        let mut text = String::new();
        let mut s = StreamState::default();
        s.event(
            br#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#,
            1,
            &mut rec,
            &mut text,
        );
        s.event(
            br#"{"choices":[{"delta":{"content":"Hi \u00e9"}}]}"#,
            2,
            &mut rec,
            &mut text,
        );
        s.event(
            br#"{"choices":[{"text":" there","logprobs":null,"finish_reason":"length"}]}"#,
            3,
            &mut rec,
            &mut text,
        );
        s.event(
            br#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#,
            4,
            &mut rec,
            &mut text,
        );
        assert_eq!(rec.chunk_ns, [2, 3]);
        assert_eq!(rec.first_token_ns, Some(2));
        assert_eq!(text, "Hi é there");
        assert_eq!(
            (rec.input_tokens, rec.output_tokens, rec.tokens_from_usage),
            (Some(5), Some(2), true)
        );
        s.event(b"[DONE]", 5, &mut rec, &mut text);
        assert!(s.done && s.error.is_none());
    }

    #[test]
    fn malformed_and_error_events() {
        let mut rec = record();
        let mut text = String::new();
        let mut s = StreamState::default();
        s.event(b"{not json", 1, &mut rec, &mut text);
        assert!(s.error.unwrap().starts_with("malformed stream event"));
        let mut s = StreamState::default();
        s.event(
            br#"{"error":{"message":"out of memory","code":500}}"#,
            1,
            &mut rec,
            &mut text,
        );
        assert!(s.error.unwrap().contains("out of memory"));
    }
}
