//! A small reader for the Prometheus text exposition format (version 0.0.4),
//! enough to pick named series out of an engine's `/metrics` page.
//!
//! Used by `backend-vllm` and `backend-trtllm`. It never fails: comments, blank lines, unknown and
//! malformed lines are skipped, so a new engine release that adds or reshapes
//! series cannot break a run.
//!
//! Engines rename series between releases (vLLM's
//! `vllm:time_per_output_token_seconds` became
//! `vllm:request_time_per_output_token_seconds`; TensorRT-LLM added its
//! `trtllm_` prefix): a [`Keep`] lists every name of one series and records
//! it under its first, so results read the same across releases. A series
//! marked [`Keep::expected`] that a page lacks under every name is reported
//! as an [`llem_sdk::MISSING_METRIC`] entry, never silently absent.

use llem_sdk::{MISSING_METRIC, Metric};

/// How a series is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Kept as is (gauges, and counters named with their `_total` suffix).
    Value,
    /// A histogram: its `_sum` (in the histogram's unit) and `_count` are kept,
    /// its buckets are not.
    Histogram,
}

/// One series to keep: its name (under which it is recorded), its names in
/// other engine releases, how it is kept, the unit reported, and whether a
/// page without it is reported.
#[derive(Debug, Clone, Copy)]
pub struct Keep {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    pub kind: Kind,
    pub unit: &'static str,
    pub expected: bool,
}

impl Keep {
    pub const fn value(name: &'static str, unit: &'static str) -> Keep {
        Keep {
            name,
            aliases: &[],
            kind: Kind::Value,
            unit,
            expected: false,
        }
    }

    pub const fn histogram(name: &'static str, unit: &'static str) -> Keep {
        Keep {
            name,
            aliases: &[],
            kind: Kind::Histogram,
            unit,
            expected: false,
        }
    }

    /// The same series under other names (other engine releases).
    pub const fn or(self, aliases: &'static [&'static str]) -> Keep {
        Keep { aliases, ..self }
    }

    /// Report a page that lacks this series under every name.
    pub const fn expected(self) -> Keep {
        Keep {
            expected: true,
            ..self
        }
    }

    fn names(&self) -> impl Iterator<Item = &'static str> {
        std::iter::once(self.name).chain(self.aliases.iter().copied())
    }

    /// The recorded name and unit of a sample named `sample`, if it is this series.
    fn matches(&self, sample: &str) -> Option<(String, &'static str)> {
        self.names().find_map(|name| match self.kind {
            Kind::Value => (sample == name).then(|| (self.name.to_owned(), self.unit)),
            Kind::Histogram => match sample.strip_prefix(name)? {
                "_sum" => Some((format!("{}_sum", self.name), self.unit)),
                "_count" => Some((format!("{}_count", self.name), "count")),
                _ => None,
            },
        })
    }
}

/// One sample line: `name{label="value",...} value [timestamp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    pub name: &'a str,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// The samples of `text` that `keep` names, in the order they appear, as
/// metrics recorded under each series' first name, labels unchanged; then
/// one [`MISSING_METRIC`] entry per expected series the page lacks.
/// Non-finite values (`NaN`, `+Inf`) are dropped: a metric is a number.
pub fn metrics(text: &str, keep: &[Keep]) -> Vec<Metric> {
    let mut out = Vec::new();
    let mut seen = vec![false; keep.len()];
    for sample in text.lines().filter_map(parse_line) {
        let Some((i, (name, unit))) = keep
            .iter()
            .enumerate()
            .find_map(|(i, k)| k.matches(sample.name).map(|m| (i, m)))
        else {
            continue;
        };
        // Present, even with a non-finite value: the engine does expose it.
        seen[i] = true;
        if !sample.value.is_finite() {
            continue;
        }
        out.push(Metric {
            name,
            value: sample.value,
            unit: unit.to_owned(),
            labels: sample.labels,
        });
    }
    for (k, _) in keep
        .iter()
        .zip(&seen)
        .filter(|(k, seen)| k.expected && !**seen)
    {
        out.push(Metric {
            name: MISSING_METRIC.to_owned(),
            value: 1.0,
            unit: String::new(),
            labels: vec![
                ("metric".to_owned(), k.name.to_owned()),
                (
                    "names".to_owned(),
                    k.names().collect::<Vec<_>>().join(" | "),
                ),
            ],
        });
    }
    out
}

/// Parse one line; `None` for comments, blank and malformed lines.
pub fn parse_line(line: &str) -> Option<Sample<'_>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line
        .find(|c: char| c == '{' || c.is_ascii_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        let (parsed, remainder) = parse_labels(after_brace)?;
        labels = parsed;
        rest = remainder;
    }
    // The value, then an optional timestamp (ignored).
    let mut fields = rest.split_ascii_whitespace();
    let value = parse_value(fields.next()?)?;
    if let Some(timestamp) = fields.next() {
        timestamp.parse::<i64>().ok()?;
    }
    if fields.next().is_some() {
        return None;
    }
    Some(Sample {
        name,
        labels,
        value,
    })
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Labels after `{` up to the closing `}`; returns them and what follows.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Some((labels, rest));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return None;
        }
        s = s[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                other => value.push(other),
            }
        };
        labels.push((key.to_owned(), value));
        s = s[end + 1..].trim_start();
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return None;
        }
    }
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse::<f64>().ok(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn lines_with_labels_escapes_and_timestamps() {
        let s = parse_line(r#"a:b_total{x="1",y="q\"uo\\te\n",} 3.5e2 1700000000000"#).unwrap();
        assert_eq!(s.name, "a:b_total");
        assert_eq!(
            s.labels,
            vec![
                ("x".to_owned(), "1".to_owned()),
                ("y".to_owned(), "q\"uo\\te\n".to_owned())
            ]
        );
        assert_eq!(s.value, 350.0);
        let s = parse_line("plain 7").unwrap();
        assert!(s.labels.is_empty());
        assert_eq!(s.value, 7.0);
        assert!(
            parse_line(r#"b{le="+Inf"} +Inf"#)
                .unwrap()
                .value
                .is_infinite()
        );
    }

    #[test]
    fn malformed_lines_are_skipped() {
        for line in [
            "",
            "# HELP x y",
            "# TYPE x gauge",
            "x",
            "x{a=\"1\" 2",
            "x{a=1} 2",
            "x{a=\"1\"} two",
            "1x 2",
            "x 2 notatime",
            "x 2 3 4",
            "x{a=\"unterminated} 2",
        ] {
            assert!(parse_line(line).is_none(), "{line:?}");
        }
    }

    #[test]
    fn a_renamed_series_is_recorded_under_its_first_name() {
        let keep = [
            Keep::histogram("new_tpot", "s").or(&["old_tpot"]),
            Keep::value("trtllm_running", "requests").or(&["running"]),
        ];
        let m = metrics("old_tpot_sum 2.5\nold_tpot_count 5\nrunning 3\n", &keep);
        let got: Vec<(&str, f64, &str)> = m
            .iter()
            .map(|m| (m.name.as_str(), m.value, m.unit.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("new_tpot_sum", 2.5, "s"),
                ("new_tpot_count", 5.0, "count"),
                ("trtllm_running", 3.0, "requests")
            ]
        );
    }

    #[test]
    fn an_expected_series_missing_under_every_name_is_reported() {
        let keep = [
            Keep::histogram("ttft", "s").expected(),
            Keep::value("kv", "ratio").or(&["old_kv"]).expected(),
            Keep::value("optional", "x"),
        ];
        let m = metrics("ttft_sum 1\nttft_count 2\n", &keep);
        let missing: Vec<&Metric> = m.iter().filter(|m| m.name == MISSING_METRIC).collect();
        assert_eq!(missing.len(), 1, "{m:?}");
        assert_eq!(
            missing[0].labels,
            vec![
                ("metric".to_owned(), "kv".to_owned()),
                ("names".to_owned(), "kv | old_kv".to_owned())
            ]
        );
        // Present under an old name, or with a NaN value: not missing.
        let m = metrics("ttft_count 0\nold_kv NaN\n", &keep);
        assert!(m.iter().all(|m| m.name != MISSING_METRIC), "{m:?}");
    }

    #[test]
    fn histograms_keep_sum_and_count() {
        let text = "h_bucket{le=\"1\"} 2\nh_sum 1.5\nh_count 2\nh_created 1.7e9\ng NaN\n";
        let keep = [Keep::histogram("h", "s"), Keep::value("g", "x")];
        let m = metrics(text, &keep);
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].name.as_str(), m[0].unit.as_str()), ("h_sum", "s"));
        assert_eq!(
            (m[1].name.as_str(), m[1].unit.as_str()),
            ("h_count", "count")
        );
    }
}
