//! A small OpenAI-compatible streaming server for the load generator's tests
//! and benchmark: `/v1/completions` and `/v1/chat/completions` answer with SSE
//! chunks on a known schedule, and the server records when it handed each
//! chunk to the connection (CLOCK_MONOTONIC ns, the load generator's clock).
//!
//! It runs on its own thread with its own single-threaded tokio runtime, so a
//! client under test on another thread does not share its CPU time.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// CLOCK_MONOTONIC ns (the same clock as `llem::clock::monotonic_ns`).
pub fn now_ns() -> u64 {
    llem::clock::monotonic_ns()
}

/// How the server frames its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `data: …\n\n`, one event per write.
    Plain,
    /// CRLF line endings, a comment line before each event, and each event
    /// written in pieces of 3 bytes with a pause between them, so that the
    /// client sees events, lines and CRLF pairs split across reads.
    Awkward,
}

/// What every response looks like.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Delay from the request's arrival to the first text chunk.
    pub first_token: Duration,
    /// Delay between successive text chunks.
    pub interval: Duration,
    /// Text chunks of a response that ends by itself (end of sequence after
    /// that many tokens), like a model's natural output length: `max_tokens`
    /// cuts it shorter, and with `ignore_eos` a response has exactly
    /// `max_tokens` (as vLLM does).
    pub chunks: u32,
    /// Send a `usage` chunk after the last text chunk.
    pub usage: bool,
    /// Answer every request with this status and a JSON error body instead.
    pub fail_status: Option<u16>,
    /// Send this text as an event's data after the first chunk (e.g. `{oops`).
    pub inject_event: Option<String>,
    pub framing: Framing,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            first_token: Duration::from_millis(20),
            interval: Duration::from_millis(5),
            chunks: 10,
            usage: true,
            fail_status: None,
            inject_event: None,
            framing: Framing::Plain,
        }
    }
}

/// What the server saw and did.
#[derive(Debug, Default)]
pub struct ServerLog {
    /// Connections accepted.
    pub accepted: AtomicU32,
    pub requests: AtomicU32,
    pub in_flight: AtomicU32,
    pub max_in_flight: AtomicU32,
    /// Request bodies, in arrival order.
    pub bodies: Mutex<Vec<serde_json::Value>>,
    /// Per request key (the prompt text, or the last message's content): the
    /// arrival time and the time each text chunk was handed to the connection.
    pub streams: Mutex<HashMap<String, StreamLog>>,
    /// Every finished stream in the order it finished, with its key: what
    /// `token-server` writes out (keys may repeat across requests, so the
    /// map above cannot hold them all).
    pub history: Mutex<Vec<(String, StreamLog)>>,
}

#[derive(Debug, Clone, Default)]
pub struct StreamLog {
    /// Arrival order of the request (0, 1, … since the server started).
    pub order: u32,
    /// When the request's first bytes reached the server's socket (the
    /// kernel's receive stamp; the handler's start where the kernel gave
    /// none), not when the server got round to them.
    pub arrival_ns: u64,
    pub chunk_ns: Vec<u64>,
}

impl ServerLog {
    /// The finished streams so far, emptied (see [`ServerLog::history`]).
    pub fn take_history(&self) -> Vec<(String, StreamLog)> {
        std::mem::take(&mut *self.history.lock().expect("server log lock"))
    }

    pub fn stream(&self, key: &str) -> Option<StreamLog> {
        self.streams
            .lock()
            .expect("server log lock")
            .get(key)
            .cloned()
    }
}

/// A running server; stopped when dropped.
pub struct StreamServer {
    addr: SocketAddr,
    log: Arc<ServerLog>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Pending connections the listener queues: enough for 1024+ clients that
/// connect at once, so that none waits for a SYN retry (1 s, then 3 s…) as it
/// would behind a short queue (the kernel caps it at `net.core.somaxconn`).
const BACKLOG: u32 = 8192;

impl StreamServer {
    pub fn start(schedule: Schedule) -> StreamServer {
        let addr = "127.0.0.1:0".parse().expect("a socket address");
        Self::start_on(addr, schedule).expect("bind 127.0.0.1:0")
    }

    /// Listen on `addr` (port 0: any free port).
    pub fn start_on(addr: SocketAddr, schedule: Schedule) -> std::io::Result<StreamServer> {
        // Built here so that the listener is registered with it; it then
        // moves to the server's thread.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let entered = runtime.enter();
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        let listener = socket.listen(BACKLOG)?;
        let addr = listener.local_addr()?;
        drop(entered);
        let log = Arc::new(ServerLog::default());
        let (shutdown, mut shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let thread_log = log.clone();
        let thread = std::thread::Builder::new()
            .name("stream-server".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let schedule = Arc::new(schedule);
                    loop {
                        tokio::select! {
                            _ = &mut shutdown_rx => break,
                            accepted = listener.accept() => {
                                let Ok((stream, _)) = accepted else { continue };
                                thread_log.accepted.fetch_add(1, Ordering::SeqCst);
                                stream.set_nodelay(true).ok();
                                let schedule = schedule.clone();
                                let log = thread_log.clone();
                                let conn = StampedConn::new(stream);
                                let arrivals = conn.first_read_ns.clone();
                                tokio::spawn(async move {
                                    let service = service_fn(move |req| {
                                        handle(req, schedule.clone(), log.clone(), arrivals.clone())
                                    });
                                    let _ = hyper::server::conn::http1::Builder::new()
                                        .serve_connection(TokioIo::new(conn), service)
                                        .await;
                                });
                            }
                        }
                    }
                });
            })
            .expect("server thread");
        Ok(StreamServer {
            addr,
            log,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/v1`
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn log(&self) -> &ServerLog {
        &self.log
    }
}

impl Drop for StreamServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The answer to a GET: the model list for `…/models`, an empty 200 for
/// `/health`, 404 otherwise (there is no metrics page: llem's scraper,
/// seeing none, does not poll one).
fn probe_answer(path: &str) -> Response<ScheduleBody> {
    let (status, body) = if path.ends_with("/models") {
        (
            StatusCode::OK,
            r#"{"object":"list","data":[{"id":"m","object":"model","owned_by":"llem","created":0}]}"#,
        )
    } else if path == "/health" {
        (StatusCode::OK, "{}")
    } else {
        (StatusCode::NOT_FOUND, r#"{"error":"not found"}"#)
    };
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(ScheduleBody::once(Bytes::from(body)))
        .expect("valid response")
}

/// A chat message's text: a string, or the `text` of its content parts
/// joined (the OpenAI content-part form some clients send).
fn message_text(content: &serde_json::Value) -> String {
    match content {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// A server connection whose reads carry the kernel's receive stamp: the
/// first read after a request was handled marks the next request's arrival
/// at the socket (clients here send one request at a time per connection).
struct StampedConn {
    stream: TcpStream,
    /// Arrival (CLOCK_MONOTONIC ns) of the first bytes not yet claimed by a
    /// request; 0 when none.
    first_read_ns: Arc<AtomicU64>,
}

impl StampedConn {
    fn new(stream: TcpStream) -> StampedConn {
        llem::loadgen::stamped::enable(&stream);
        StampedConn {
            stream,
            first_read_ns: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl AsyncRead for StampedConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let at = std::task::ready!(llem::loadgen::stamped::poll_read(&self.stream, cx, buf))?;
        if buf.filled().len() > before {
            // Only the first read of a request counts: a body read later
            // must not move its arrival.
            let _ = self
                .first_read_ns
                .compare_exchange(0, at, Ordering::SeqCst, Ordering::SeqCst);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for StampedConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

async fn handle(
    req: Request<Incoming>,
    schedule: Arc<Schedule>,
    log: Arc<ServerLog>,
    arrivals: Arc<AtomicU64>,
) -> Result<Response<ScheduleBody>, hyper::Error> {
    let handled = Instant::now();
    let handled_ns = now_ns();
    if req.method() == hyper::Method::GET {
        arrivals.store(0, Ordering::SeqCst);
        // Peer clients probe before they start: GuideLLM asks `/health` and
        // `/v1/models`, AIPerf `/v1/models`. Neither is a stream nor logged.
        return Ok(probe_answer(req.uri().path()));
    }
    let chat = req.uri().path().ends_with("/chat/completions");
    let bytes = req.into_body().collect().await?.to_bytes();
    // The request's arrival at the socket, and the schedule counted from it:
    // the server's TTFT is the configured one even when its handler ran late.
    let (arrival, arrival_ns) = match arrivals.swap(0, Ordering::SeqCst) {
        at if at != 0 && at <= handled_ns => (handled - Duration::from_nanos(handled_ns - at), at),
        _ => (handled, handled_ns),
    };
    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let order = log.requests.fetch_add(1, Ordering::SeqCst);
    log.bodies
        .lock()
        .expect("server log lock")
        .push(body.clone());

    if let Some(status) = schedule.fail_status {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let error = format!(
            r#"{{"error":{{"message":"engine exploded","code":{}}}}}"#,
            status.as_u16()
        );
        return Ok(Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(ScheduleBody::once(Bytes::from(error)))
            .expect("valid response"));
    }

    let key = if chat {
        body["messages"]
            .as_array()
            .and_then(|m| m.last())
            .map(|m| message_text(&m["content"]))
            .unwrap_or_default()
    } else {
        body["prompt"].as_str().unwrap_or_default().to_owned()
    };
    // Chat clients may send the newer name (GuideLLM does).
    let max_tokens = body["max_tokens"]
        .as_u64()
        .or_else(|| body["max_completion_tokens"].as_u64())
        .map(|n| n as u32);
    let chunks = match (max_tokens, body["ignore_eos"] == true) {
        (Some(n), true) => n,
        (Some(n), false) => n.min(schedule.chunks),
        (None, _) => schedule.chunks,
    };
    let prompt_tokens = key.split_whitespace().count() as u32;

    let now = log.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    log.max_in_flight.fetch_max(now, Ordering::SeqCst);
    log.streams.lock().expect("server log lock").insert(
        key.clone(),
        StreamLog {
            order,
            arrival_ns,
            chunk_ns: Vec::with_capacity(chunks as usize),
        },
    );

    let mut body = ScheduleBody {
        schedule: schedule.clone(),
        log,
        key,
        order,
        arrival_ns,
        chat,
        arrival,
        chunks,
        prompt_tokens,
        next: 0,
        sleep: Box::pin(tokio::time::sleep_until(arrival + schedule.first_token)),
        pending: VecDeque::new(),
        sends: Vec::with_capacity(chunks as usize),
        state: State::Streaming,
        in_flight: true,
        next_deadline: arrival + schedule.first_token,
        gap_armed: false,
    };
    if chat {
        // vLLM opens a chat stream with a role-only chunk: it carries no text.
        body.queue_event(br#"{"id":"chatcmpl-1","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#);
    }
    Ok(Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(body)
        .expect("valid response"))
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    Once(Option<Bytes>),
    Streaming,
    Finished,
}

/// The response body: emits text chunks at absolute deadlines
/// (arrival + first_token + i · interval) and timestamps each as it is
/// handed to hyper, which writes it to the socket in the same task.
pub struct ScheduleBody {
    schedule: Arc<Schedule>,
    log: Arc<ServerLog>,
    key: String,
    order: u32,
    arrival_ns: u64,
    chat: bool,
    arrival: Instant,
    chunks: u32,
    prompt_tokens: u32,
    next: u32,
    sleep: Pin<Box<Sleep>>,
    /// Pieces waiting to be written (awkward framing writes in small pieces).
    pending: VecDeque<Bytes>,
    sends: Vec<u64>,
    state: State,
    in_flight: bool,
    next_deadline: Instant,
    gap_armed: bool,
}

impl ScheduleBody {
    fn once(bytes: Bytes) -> Self {
        ScheduleBody {
            schedule: Arc::new(Schedule::default()),
            log: Arc::new(ServerLog::default()),
            key: String::new(),
            order: 0,
            arrival_ns: 0,
            chat: false,
            arrival: Instant::now(),
            chunks: 0,
            prompt_tokens: 0,
            next: 0,
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            pending: VecDeque::new(),
            sends: Vec::new(),
            state: State::Once(Some(bytes)),
            in_flight: false,
            next_deadline: Instant::now(),
            gap_armed: false,
        }
    }

    fn queue_event(&mut self, data: &[u8]) {
        match self.schedule.framing {
            Framing::Plain => {
                let mut event = Vec::with_capacity(data.len() + 8);
                event.extend_from_slice(b"data: ");
                event.extend_from_slice(data);
                event.extend_from_slice(b"\n\n");
                self.pending.push_back(Bytes::from(event));
            }
            Framing::Awkward => {
                let mut event = b": keep-alive\r\n".to_vec();
                event.extend_from_slice(b"data: ");
                event.extend_from_slice(data);
                event.extend_from_slice(b"\r\n\r\n");
                self.pending
                    .extend(event.chunks(3).map(Bytes::copy_from_slice));
            }
        }
    }

    fn text_chunk(&self, i: u32) -> Vec<u8> {
        let finish = if i + 1 == self.chunks {
            r#""length""#
        } else {
            "null"
        };
        if self.chat {
            format!(
                r#"{{"id":"chatcmpl-1","object":"chat.completion.chunk","model":"m","choices":[{{"index":0,"delta":{{"content":" tok{i}"}},"finish_reason":{finish}}}]}}"#
            )
            .into_bytes()
        } else {
            format!(
                r#"{{"id":"cmpl-1","object":"text_completion","model":"m","choices":[{{"index":0,"text":" tok{i}","logprobs":null,"finish_reason":{finish}}}]}}"#
            )
            .into_bytes()
        }
    }

    fn leave(&mut self) {
        if self.in_flight {
            self.in_flight = false;
            self.log.in_flight.fetch_sub(1, Ordering::SeqCst);
            let sends = std::mem::take(&mut self.sends);
            if let Some(stream) = self
                .log
                .streams
                .lock()
                .expect("server log lock")
                .get_mut(&self.key)
            {
                stream.chunk_ns.clone_from(&sends);
            }
            // From this stream's own fields: another request with the same key
            // may have replaced its entry in `streams` meanwhile.
            let finished = StreamLog {
                order: self.order,
                arrival_ns: self.arrival_ns,
                chunk_ns: sends,
            };
            self.log
                .history
                .lock()
                .expect("server log lock")
                .push((std::mem::take(&mut self.key), finished));
        }
    }
}

impl Drop for ScheduleBody {
    fn drop(&mut self) {
        self.leave();
    }
}

impl Body for ScheduleBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let State::Once(bytes) = &mut this.state {
            return Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b))));
        }
        if !this.pending.is_empty() {
            return this.emit(cx);
        }
        if this.state == State::Finished {
            return Poll::Ready(None);
        }
        if this.sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        if this.next < this.chunks {
            let i = this.next;
            this.next += 1;
            let chunk = this.text_chunk(i);
            this.queue_event(&chunk);
            if i == 0
                && let Some(inject) = this.schedule.inject_event.clone()
            {
                this.queue_event(inject.as_bytes());
            }
            this.next_deadline =
                this.arrival + this.schedule.first_token + this.schedule.interval * (i + 1);
            this.sleep.as_mut().reset(this.next_deadline);
            this.sends.push(now_ns());
        } else {
            if this.schedule.usage {
                let usage = format!(
                    r#"{{"id":"cmpl-1","model":"m","choices":[],"usage":{{"prompt_tokens":{},"completion_tokens":{},"total_tokens":{}}}}}"#,
                    this.prompt_tokens,
                    this.chunks,
                    this.prompt_tokens + this.chunks
                );
                this.queue_event(usage.as_bytes());
            }
            this.queue_event(b"[DONE]");
            this.state = State::Finished;
            // Leaves before the last bytes go out, so the client can never
            // see more requests in flight than the server counts.
            this.leave();
        }
        this.emit(cx)
    }
}

impl ScheduleBody {
    /// Hand the next queued piece to hyper (after a pause, with awkward framing).
    fn emit(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::convert::Infallible>>> {
        if self.gap_armed {
            if self.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.gap_armed = false;
        }
        let Some(piece) = self.pending.pop_front() else {
            return Poll::Ready(None);
        };
        if self.schedule.framing == Framing::Awkward {
            if self.pending.is_empty() {
                self.sleep.as_mut().reset(self.next_deadline);
            } else {
                // Pause so that the pieces reach the client in separate reads.
                self.sleep
                    .as_mut()
                    .reset(Instant::now() + Duration::from_micros(300));
                self.gap_armed = true;
            }
        }
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }
}
