//! Scrape an engine's Prometheus endpoint once a second while it runs. The
//! raw text is kept with its timestamp; the backend plugin turns it into
//! metrics after the run, so no plugin call sits on the measurement path.

use super::http;
use crate::clock::monotonic_ns;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub const SCRAPE_PERIOD: Duration = Duration::from_secs(1);

pub struct Scraper {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<(u64, String)>>>,
    errors: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Scraper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scraper").finish()
    }
}

impl Scraper {
    /// Start scraping `http://<authority><path>` every `period`.
    pub fn start(authority: String, path: String, period: Duration) -> std::io::Result<Scraper> {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, samples, errors) = (stop.clone(), samples.clone(), errors.clone());
            std::thread::Builder::new()
                .name("llem-metrics".into())
                .spawn(move || {
                    let mut next = monotonic_ns();
                    while !stop.load(Ordering::Relaxed) {
                        match http::get(&authority, &path, Duration::from_secs(2)) {
                            Ok(response) if response.status == 200 => {
                                let mut samples = samples.lock().unwrap_or_else(|e| e.into_inner());
                                samples.push((monotonic_ns(), response.body));
                            }
                            Ok(response) => errors
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push(format!("{path}: HTTP {}", response.status)),
                            Err(e) => errors
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push(format!("{path}: {e}")),
                        }
                        next += period.as_nanos() as u64;
                        while !stop.load(Ordering::Relaxed) && monotonic_ns() < next {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                })?
        };
        Ok(Scraper {
            stop,
            samples,
            errors,
            thread: Some(thread),
        })
    }

    /// Stop and return (timestamped texts, distinct errors).
    pub fn finish(mut self) -> (Vec<(u64, String)>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let samples = std::mem::take(&mut *self.samples.lock().unwrap_or_else(|e| e.into_inner()));
        let mut errors =
            std::mem::take(&mut *self.errors.lock().unwrap_or_else(|e| e.into_inner()));
        errors.dedup();
        (samples, errors)
    }
}

impl Drop for Scraper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn scrapes_until_stopped() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let authority = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for (n, conn) in listener.incoming().enumerate() {
                let Ok(mut conn) = conn else { return };
                let _ = crate::engine::http::tests::read_head(&mut conn);
                let body = format!("vllm:num_requests_running {n}\n");
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        let scraper =
            Scraper::start(authority, "/metrics".into(), Duration::from_millis(100)).unwrap();
        std::thread::sleep(Duration::from_millis(450));
        let (samples, errors) = scraper.finish();
        assert!(errors.is_empty(), "{errors:?}");
        assert!((3..=6).contains(&samples.len()), "{}", samples.len());
        assert!(samples[0].1.starts_with("vllm:num_requests_running 0"));
        assert!(samples.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
