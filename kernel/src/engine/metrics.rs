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
                    // Scrape first, test `stop` after: a run shorter than this
                    // thread's start-up (an attached server answering in
                    // milliseconds) still has its sample, as `finish` joins.
                    loop {
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
                        if stop.load(Ordering::Relaxed) {
                            break;
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

/// Take the backend's [`llem_sdk::MISSING_METRIC`] entries out of parsed
/// scrapes and return one warning per expected series missing from every
/// scrape. A series that appears in any scrape (some engines create theirs at
/// the first request) is not reported; nor is anything when there was no
/// scrape at all (the scraper reports that itself).
pub fn take_missing(parsed: &mut [(u64, Vec<llem_sdk::Metric>)]) -> Vec<String> {
    let scrapes = parsed.len();
    let mut missing: std::collections::BTreeMap<(String, String), usize> = Default::default();
    for (_, metrics) in parsed.iter_mut() {
        metrics.retain(|m| {
            if m.name != llem_sdk::MISSING_METRIC {
                return true;
            }
            let label = |key: &str| {
                m.labels
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            *missing
                .entry((label("metric"), label("names")))
                .or_default() += 1;
            false
        });
    }
    missing
        .into_iter()
        .filter(|(_, n)| *n == scrapes)
        .map(|((metric, names), _)| {
            format!(
                "engine metric `{metric}` never appeared on the engine's metrics page \
                 ({scrapes} scrapes; looked for {names}): this engine release does not \
                 expose it, so engine_metrics.jsonl has none"
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A Prometheus page answering `vllm:num_requests_running <n>` on its nth request.
    fn serve_metrics() -> String {
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
        authority
    }

    #[test]
    fn scrapes_until_stopped() {
        let scraper = Scraper::start(
            serve_metrics(),
            "/metrics".into(),
            Duration::from_millis(100),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(450));
        let (samples, errors) = scraper.finish();
        assert!(errors.is_empty(), "{errors:?}");
        assert!((3..=6).contains(&samples.len()), "{}", samples.len());
        assert!(samples[0].1.starts_with("vllm:num_requests_running 0"));
        assert!(samples.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn a_run_stopped_at_once_still_has_its_first_scrape() {
        let scraper =
            Scraper::start(serve_metrics(), "/metrics".into(), Duration::from_secs(60)).unwrap();
        let (samples, errors) = scraper.finish();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(samples.len(), 1);
    }

    fn missing(series: &str) -> llem_sdk::Metric {
        llem_sdk::Metric {
            name: llem_sdk::MISSING_METRIC.into(),
            value: 1.0,
            unit: String::new(),
            labels: vec![
                ("metric".into(), series.into()),
                ("names".into(), format!("{series} | old_{series}")),
            ],
        }
    }

    #[test]
    fn a_series_missing_from_every_scrape_is_one_warning_and_no_metric() {
        let real = llem_sdk::Metric {
            name: "tpot_sum".into(),
            value: 1.0,
            unit: "s".into(),
            labels: vec![],
        };
        let mut parsed = vec![
            (1, vec![missing("tpot"), missing("ttft")]),
            (2, vec![real.clone(), missing("ttft")]),
        ];
        let warnings = take_missing(&mut parsed);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("`ttft`") && warnings[0].contains("ttft | old_ttft"));
        assert!(warnings[0].contains("2 scrapes"));
        assert_eq!(parsed, vec![(1, vec![]), (2, vec![real])]);
        assert!(take_missing(&mut []).is_empty());
    }
}
