//! `prometheus-push`: an llem sink pushing the run's figures to a Prometheus
//! Pushgateway, over a network grant.
//!
//! * On the result: `PUT {url}/metrics/job/{job}/run_id/{run_id}[/{label}/{value}…]`
//!   with `llem_run_info` and one gauge per headline figure
//!   ([`metrics::GAUGES`]). PUT replaces the group: the run's final figures
//!   are all that stays, and pushing a run again overwrites it.
//! * During the run (a kernel with the stream, which names the run before
//!   the readings arrive): `POST` of `llem_power_watts` per device at most
//!   once per `push_interval_ms`. A failed live push is logged and the run
//!   goes on; the final push is the one that must succeed.
//!
//! Grouping by `run_id` keeps every run of a study apart (one group each; a
//! Pushgateway keeps groups until deleted: `DELETE {url}/metrics/job/{job}/run_id/{id}`).
//! The address is reachable only when the manifest grants it
//! (`[plugins.<instance>.sandbox] connect = ["host:port"]`): the plugin's
//! own `url` grants nothing.

pub mod metrics;
#[cfg(test)]
mod tests;

use http_common::{Client, Failure};
use llem_sdk::{
    Config, ErrorCode, OptionSpec, OptionType, Plugin, PluginError, PluginInfo, PluginKind,
    ResultDocument, RunInfo, SampleBatch, Sink, Wanted,
};
use std::collections::BTreeMap;
use std::time::Duration;

pub const DEFAULT_JOB: &str = "llem";
pub const DEFAULT_TIMEOUT_MS: i64 = 5000;
pub const DEFAULT_PUSH_INTERVAL_MS: i64 = 5000;
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub struct PushSink {
    client: Client,
    job: String,
    /// Extra grouping labels (`labels`), in a fixed order.
    labels: Vec<(String, String)>,
    push_interval_ns: u64,
    /// From `begin_run`: live pushes need the run's id before its result.
    run: Option<(String, String)>,
    /// Latest power per (source, device) and each device's last counter
    /// reading, for a device that gives energy only.
    power: BTreeMap<(String, String), f64>,
    counters: BTreeMap<(String, String), (u64, u64)>,
    last_push_ns: Option<u64>,
}

impl Plugin for PushSink {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "sink-prometheus-push".into(),
            kind: PluginKind::Sink,
            version: env!("CARGO_PKG_VERSION").into(),
            description: "The run's figures (and live power) pushed to a Prometheus Pushgateway"
                .into(),
            options: vec![
                OptionSpec::required(
                    "url",
                    OptionType::String,
                    "The Pushgateway, http://host:port (grant it: [plugins.<instance>.sandbox] connect = [\"host:port\"])",
                ),
                OptionSpec::with_default(
                    "job",
                    OptionType::String,
                    DEFAULT_JOB,
                    "The `job` of the grouping key",
                ),
                OptionSpec::with_default(
                    "labels",
                    OptionType::Table,
                    serde_json::json!({}),
                    "Extra grouping labels after `run_id`, e.g. { site = \"lab1\" }",
                ),
                OptionSpec::with_default(
                    "push_interval_ms",
                    OptionType::Integer,
                    DEFAULT_PUSH_INTERVAL_MS,
                    "Live power is pushed at most this often, ms (with a streaming kernel); 0 = no live pushes",
                ),
                OptionSpec::with_default(
                    "timeout_ms",
                    OptionType::Integer,
                    DEFAULT_TIMEOUT_MS,
                    "Limit on one push (connect, send, answer), ms",
                ),
            ],
        }
    }

    fn open(config: Config) -> Result<Self, PluginError> {
        let url: String = config.require("url")?;
        let url = http_common::parse_url(&url)?;
        let job: String = config
            .optional("job")?
            .unwrap_or_else(|| DEFAULT_JOB.into());
        if job.is_empty() {
            return Err(PluginError::invalid_config("job", "must not be empty"));
        }
        let labels = grouping_labels(&config)?;
        let timeout_ms = http_common::milliseconds(&config, "timeout_ms", DEFAULT_TIMEOUT_MS, 1)?;
        let interval_ms =
            http_common::milliseconds(&config, "push_interval_ms", DEFAULT_PUSH_INTERVAL_MS, 0)?;
        Ok(PushSink {
            client: Client::new(
                url,
                concat!("llem-sink-prometheus-push/", env!("CARGO_PKG_VERSION")),
                None,
                Duration::from_millis(timeout_ms),
            ),
            job,
            labels,
            push_interval_ns: interval_ms.saturating_mul(1_000_000),
            run: None,
            power: BTreeMap::new(),
            counters: BTreeMap::new(),
            last_push_ns: None,
        })
    }
}

/// `labels`: names as Prometheus allows them, none the grouping key has.
fn grouping_labels(config: &Config) -> Result<Vec<(String, String)>, PluginError> {
    let table: BTreeMap<String, serde_json::Value> = config.optional("labels")?.unwrap_or_default();
    table
        .into_iter()
        .map(|(name, value)| {
            let valid =
                name.chars().enumerate().all(|(i, c)| {
                    c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())
                }) && !name.is_empty()
                    && !name.starts_with("__");
            if !valid || matches!(name.as_str(), "job" | "run_id") {
                return Err(PluginError::invalid_config(
                    "labels",
                    format!(
                        "`{name}` cannot be a grouping label: a name is [a-zA-Z_][a-zA-Z0-9_]*, \
                         not starting with __, and not `job` or `run_id` (the sink sets those)"
                    ),
                ));
            }
            let value = match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            Ok((name, value))
        })
        .collect()
}

/// A grouping-key value in the URL path: as is when it is plain, else in the
/// Pushgateway's `name@base64/<base64url>` form (a `/` or an empty value
/// cannot go in a path segment as is).
fn path_pair(name: &str, value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if plain {
        format!("/{name}/{value}")
    } else {
        let encoded = http_common::base64(value.as_bytes())
            .replace('+', "-")
            .replace('/', "_");
        format!(
            "/{name}@base64/{}",
            if encoded.is_empty() { "=" } else { &encoded }
        )
    }
}

impl PushSink {
    /// `/metrics/job/<job>/run_id/<id>[/<label>/<value>…]`.
    pub fn group_path(&self, run_id: &str) -> String {
        let mut path = format!(
            "/metrics{}{}",
            path_pair("job", &self.job),
            path_pair("run_id", run_id)
        );
        for (name, value) in &self.labels {
            path.push_str(&path_pair(name, value));
        }
        path
    }

    fn push(&self, method: &str, run_id: &str, body: &str) -> Result<(), PluginError> {
        let path = self.group_path(run_id);
        let url = self.client.url.to_http(&path);
        let response =
            match self
                .client
                .request(method, &path, &[], Some((CONTENT_TYPE, body.as_bytes())))
            {
                Ok(r) => r,
                Err(Failure::Connect(e)) => {
                    return Err(http_common::connect_error(
                        &self.client.url,
                        &e,
                        "the Pushgateway",
                    ));
                }
                Err(Failure::Exchange(message)) => {
                    return Err(PluginError::new(
                        ErrorCode::Io,
                        format!("{method} {url}: {message}"),
                    )
                    .with_hint("check that `url` is a Prometheus Pushgateway (plain HTTP)"));
                }
            };
        if (200..300).contains(&response.status) {
            return Ok(());
        }
        let excerpt = String::from_utf8_lossy(&response.body[..response.body.len().min(300)])
            .trim()
            .to_owned();
        Err(PluginError::new(
            ErrorCode::Io,
            format!(
                "{method} {url} answered {} {}: {excerpt}",
                response.status,
                response.reason.trim()
            ),
        )
        .with_hint(
            "a 400 names the metric or label the gateway refused; a 404 means `url` is not a \
             Pushgateway's address (or its --web.route-prefix is missing from it)",
        ))
    }

    /// Track the latest power of each device in `batch`.
    fn track(&mut self, batch: &SampleBatch) {
        for s in &batch.samples {
            let device = batch
                .devices
                .get(s.device as usize)
                .cloned()
                .unwrap_or_else(|| s.device.to_string());
            let key = (batch.source.clone(), device);
            if let Some(mw) = s.power_mw {
                self.power.insert(key.clone(), mw as f64 / 1000.0);
            } else if let Some(uj) = s.energy_uj {
                // A counter only: the rate since its previous reading (a
                // decrease is a wrap or reset, skipped rather than guessed).
                if let Some((t0, e0)) = self.counters.get(&key).copied()
                    && s.t_ns > t0
                    && uj >= e0
                {
                    let watts = (uj - e0) as f64 / (s.t_ns - t0) as f64 * 1000.0;
                    self.power.insert(key.clone(), watts);
                }
            }
            if let Some(uj) = s.energy_uj {
                self.counters.insert(key, (s.t_ns, uj));
            }
        }
    }
}

impl Sink for PushSink {
    fn begin_run(&mut self, run: &RunInfo) -> Result<Wanted, PluginError> {
        self.run = Some((run.run_id.clone(), run.experiment.clone()));
        Ok(Wanted::NOTHING)
    }

    fn write_samples(&mut self, batch: &SampleBatch) -> Result<(), PluginError> {
        // Without begin-run the readings come after the run: nothing live to push.
        let Some((run_id, experiment)) = self.run.clone() else {
            return Ok(());
        };
        if self.push_interval_ns == 0 {
            return Ok(());
        }
        self.track(batch);
        let now = llem_sdk::host::monotonic_now_ns();
        if self
            .last_push_ns
            .is_some_and(|last| now.saturating_sub(last) < self.push_interval_ns)
            || self.power.is_empty()
        {
            return Ok(());
        }
        self.last_push_ns = Some(now);
        let body = metrics::power_exposition(
            &experiment,
            self.power
                .iter()
                .map(|((s, d), w)| (s.as_str(), d.as_str(), *w)),
        );
        if let Err(e) = self.push("POST", &run_id, &body) {
            llem_sdk::host::warn(&format!(
                "live push failed (the final push will retry): {e}"
            ));
        }
        Ok(())
    }

    fn write_result(&mut self, document: &ResultDocument) -> Result<(), PluginError> {
        let result = sink_common::parse_result(document)?;
        let experiment = result
            .pointer("/experiment/name")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let body = metrics::result_exposition(&result, &experiment);
        self.push("PUT", &document.run_id, &body)
    }
}

llem_sdk::export_sink!(PushSink);
