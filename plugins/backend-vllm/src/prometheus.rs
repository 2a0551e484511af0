//! A small reader for the Prometheus text exposition format (version 0.0.4),
//! enough to pick named series out of an engine's `/metrics` page.
//!
//! Shared by `backend-vllm` and `backend-trtllm` (the latter includes this
//! file with `#[path]`). It never fails: comments, blank lines, unknown and
//! malformed lines are skipped, so a new engine release that adds or reshapes
//! series cannot break a run.

use llem_sdk::Metric;

/// How a series is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Kept as is (gauges, and counters named with their `_total` suffix).
    Value,
    /// A histogram: its `_sum` (in the histogram's unit) and `_count` are kept,
    /// its buckets are not.
    Histogram,
}

/// One series to keep: its name, how, and the unit reported.
#[derive(Debug, Clone, Copy)]
pub struct Keep {
    pub name: &'static str,
    pub kind: Kind,
    pub unit: &'static str,
}

impl Keep {
    pub const fn value(name: &'static str, unit: &'static str) -> Keep {
        Keep {
            name,
            kind: Kind::Value,
            unit,
        }
    }

    pub const fn histogram(name: &'static str, unit: &'static str) -> Keep {
        Keep {
            name,
            kind: Kind::Histogram,
            unit,
        }
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
/// metrics with the series name and labels unchanged. Non-finite values
/// (`NaN`, `+Inf`) are dropped: a metric is a number.
pub fn metrics(text: &str, keep: &[Keep]) -> Vec<Metric> {
    let mut out = Vec::new();
    for sample in text.lines().filter_map(parse_line) {
        if !sample.value.is_finite() {
            continue;
        }
        let Some(unit) = unit_of(sample.name, keep) else {
            continue;
        };
        out.push(Metric {
            name: sample.name.to_owned(),
            value: sample.value,
            unit: unit.to_owned(),
            labels: sample.labels,
        });
    }
    out
}

fn unit_of(name: &str, keep: &[Keep]) -> Option<&'static str> {
    keep.iter().find_map(|k| match k.kind {
        Kind::Value => (name == k.name).then_some(k.unit),
        Kind::Histogram => {
            let suffix = name.strip_prefix(k.name)?;
            match suffix {
                "_sum" => Some(k.unit),
                "_count" => Some("count"),
                _ => None,
            }
        }
    })
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
