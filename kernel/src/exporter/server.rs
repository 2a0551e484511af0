//! The HTTP side: a small blocking server on its own thread. `GET /metrics`
//! renders the page from the sampler's live view (the sampler's locks are
//! held only to copy a few numbers, never while writing to a client);
//! anything else is 404 (405 for other methods). One request per connection,
//! request heads bounded, slow clients timed out, at most a few connections
//! served at once.

use super::{CONTENT_TYPE, HighWater, RunView, render};
use crate::experiment::Event;
use crate::sampler::SamplerView;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// The longest request head read (a Prometheus scrape sends ~300 bytes).
const MAX_HEAD: usize = 8 * 1024;
/// A client that sends or reads nothing for this long is dropped.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 8;
/// How often the accept loop looks at its stop flag.
const POLL: Duration = Duration::from_millis(50);

/// `[HOST]:PORT` as given to `--prometheus`: `:9400` means 127.0.0.1:9400;
/// a bare port too. Returns what to bind (`host:port`, IPv6 in brackets).
pub fn parse_listen(text: &str) -> Result<String, String> {
    let text = text.trim();
    let bad =
        || format!("`{text}` is not [HOST]:PORT (e.g. `:9400`, `127.0.0.1:9400`, `0.0.0.0:9400`)");
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) => (host, port),
        None => ("", text),
    };
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = if host.is_empty() { "127.0.0.1" } else { host };
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(format!(
            "{}; write an IPv6 address in brackets: [::1]:{port}",
            bad()
        ));
    }
    if host.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(bad());
    }
    Ok(format!("{host}:{port}"))
}

#[derive(Default)]
struct State {
    sampler: Option<SamplerView>,
    run: Option<RunView>,
    high: HighWater,
    /// The current batch's counts (a batch's progress restarts at 0).
    batch_completed: u64,
    batch_tokens: u64,
    batch_warmup: Option<bool>,
}

struct Shared {
    state: Mutex<State>,
    connections: AtomicUsize,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn page(&self) -> String {
        let (view, run) = {
            let state = self.state();
            (state.sampler.clone(), state.run.clone())
        };
        // The sampler's locks are taken here, one source at a time, without ours.
        let sources = view.map(|v| v.sources()).unwrap_or_default();
        let mut state = self.state();
        render(&sources, run.as_ref(), &mut state.high)
    }
}

/// A running exporter. Dropping it stops the server.
pub struct Exporter {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Exporter {
    /// Listen on `listen` (`host:port`, see [`parse_listen`]) and serve until dropped.
    pub fn start(listen: &str) -> std::io::Result<Exporter> {
        let listener = TcpListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            connections: AtomicUsize::new(0),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::Builder::new()
                .name("llem-prometheus".into())
                .spawn(move || accept_loop(&listener, &shared, &stop))?
        };
        Ok(Exporter {
            addr,
            shared,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on (the port chosen when `:0` was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serve this sampler's figures (replacing any before).
    pub fn set_sampler(&self, view: SamplerView) {
        self.shared.state().sampler = Some(view);
    }

    /// Follow a run: its sampler, phases and request counts. A new
    /// `Sampling` event starts a new run (new `run_id` label).
    pub fn observe(&self, event: &Event<'_>) {
        let mut state = self.shared.state();
        match event {
            Event::Sampling {
                view,
                run_id,
                experiment,
            } => {
                state.sampler = Some(view.clone());
                state.run = Some(RunView {
                    run_id: (*run_id).to_owned(),
                    experiment: (*experiment).to_owned(),
                    phase: Some("open_sources"),
                    ..RunView::default()
                });
                state.batch_completed = 0;
                state.batch_tokens = 0;
                state.batch_warmup = None;
            }
            Event::Phase { name, .. } => {
                if let Some(run) = state.run.as_mut() {
                    run.set_phase(*name);
                }
            }
            Event::Requests {
                warmup,
                completed,
                output_tokens,
                ..
            } => {
                let (completed, tokens) = (u64::from(*completed), *output_tokens);
                // A new batch (warm-up to measured, or the next warm-up
                // batch) restarts its counts: count it from 0.
                let new_batch = state.batch_warmup != Some(*warmup)
                    || completed < state.batch_completed
                    || tokens < state.batch_tokens;
                state.batch_warmup = Some(*warmup);
                let (last_completed, last_tokens) = if new_batch {
                    (0, 0)
                } else {
                    (state.batch_completed, state.batch_tokens)
                };
                state.batch_completed = completed;
                state.batch_tokens = tokens;
                if let Some(run) = state.run.as_mut() {
                    run.requests_completed += completed - last_completed;
                    run.output_tokens += tokens.saturating_sub(last_tokens);
                    run.phase = Some(if *warmup { "warmup" } else { "measured" });
                }
            }
            Event::Opened { .. } | Event::Warning(_) | Event::Engine(_) | Event::Tick { .. } => {}
        }
    }

    /// The run wrote its directory: `llem_run_phase{phase="done"}`.
    pub fn run_finished(&self) {
        if let Some(run) = self.shared.state().run.as_mut() {
            run.phase = Some("done");
        }
    }

    /// The page as a scrape would get it now.
    pub fn render(&self) -> String {
        self.shared.page()
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                if shared.connections.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                    shared.connections.fetch_sub(1, Ordering::SeqCst);
                    continue; // dropped: closed
                }
                let shared = shared.clone();
                let spawned = std::thread::Builder::new()
                    .name("llem-prometheus-conn".into())
                    .spawn({
                        let shared = shared.clone();
                        move || {
                            let _ = serve(stream, &shared);
                            shared.connections.fetch_sub(1, Ordering::SeqCst);
                        }
                    });
                if spawned.is_err() {
                    shared.connections.fetch_sub(1, Ordering::SeqCst);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
            // A connection reset before accept, out of descriptors: wait, go on.
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// One request, one answer, then close.
fn serve(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let complete = loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            break true;
        }
        if head.len() > MAX_HEAD {
            break false;
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break head.contains(&b'\n');
        }
        head.extend_from_slice(&buf[..n]);
    };
    if !complete {
        return respond(
            &mut stream,
            "431 Request Header Fields Too Large",
            "text/plain",
            b"request head too large\n",
            true,
        );
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split(['?', '#']).next().unwrap_or("");
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            let page = shared.page();
            respond(
                &mut stream,
                "200 OK",
                CONTENT_TYPE,
                page.as_bytes(),
                method == "GET",
            )
        }
        ("GET" | "HEAD", _) => respond(
            &mut stream,
            "404 Not Found",
            "text/plain",
            b"llem serves Prometheus metrics at /metrics\n",
            method == "GET",
        ),
        _ => respond(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            b"only GET and HEAD\n",
            true,
        ),
    }
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
    with_body: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n",
        body.len(),
        if status.starts_with("405") {
            "Allow: GET, HEAD\r\n"
        } else {
            ""
        }
    );
    stream.write_all(head.as_bytes())?;
    if with_body {
        stream.write_all(body)?;
    }
    stream.flush()?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}
