//! Limits on everything a WASM plugin hands the host.
//!
//! What the host copies out of a plugin in one call is bounded first by
//! [`HOSTCALL_BYTES`] (wasmtime counts every byte lifted from the guest and
//! stops the call before copying more), and by the plugin's memory cap
//! (`memory_mib`, at most 4096). The limits here then bound what llem keeps
//! and shows:
//! * text meant for people (errors, hints, names, descriptions, log lines) is
//!   cut to a few KiB, saying how much was cut, and sanitised for terminals;
//! * data (prompts, engine plans, metrics, devices) is never silently changed:
//!   over a limit, the call fails with an error that says which limit;
//! * log lines are rate-limited per instance, and the drop is reported.

use crate::plugin::sanitize::sanitize;
use llem_sdk as sdk;
use std::time::{Duration, Instant};

/// Most bytes the host copies out of a plugin in one call (wasmtime's
/// hostcall fuel): a call returning more is stopped before the copy.
pub const HOSTCALL_BYTES: usize = 128 << 20;
/// An error message a plugin returns.
pub const MESSAGE_BYTES: usize = 4096;
/// A hint, key, or other short text (names, units, choices).
pub const SHORT_BYTES: usize = 1024;
/// One log line.
pub const LOG_LINE_BYTES: usize = 4096;
/// Log lines per instance per second; more are dropped and counted.
pub const LOG_LINES_PER_SECOND: u32 = 50;
/// Log bytes per instance per second.
pub const LOG_BYTES_PER_SECOND: usize = 64 << 10;
/// Options a plugin may declare, devices it may list.
pub const MAX_OPTIONS: usize = 256;
pub const MAX_DEVICES: usize = 4096;
/// Prompts one `load` may return, and the size of one prompt's text.
pub const MAX_PROMPTS: usize = 1_000_000;
pub const PROMPT_BYTES: usize = 16 << 20;
/// Metrics one call may return.
pub const MAX_METRICS: usize = 100_000;
/// Engine plan: arguments and environment entries, and the size of each.
pub const MAX_PLAN_ITEMS: usize = 4096;
pub const PLAN_STRING_BYTES: usize = 64 << 10;
/// An offline worker script.
pub const WORKER_SCRIPT_BYTES: usize = 4 << 20;

/// Plugin text for people: at most `max` bytes (cut at a character boundary,
/// with a note of how much was cut), then sanitised.
pub fn text(s: &str, max: usize) -> String {
    if s.len() <= max {
        return sanitize(s).into_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = sanitize(&s[..end]).into_owned();
    // Escapes can lengthen the text (one ESC is four characters): cut again.
    if out.len() > max {
        let mut end = max;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out.push_str(&format!(" … [{} more bytes cut by llem]", s.len() - end));
    out
}

/// `Some(text)` for optional fields.
pub fn text_opt(s: Option<&str>, max: usize) -> Option<String> {
    s.map(|s| text(s, max))
}

/// A list of `found` items against `limit`.
pub fn check_count(what: &str, found: usize, limit: usize) -> Result<(), String> {
    over(what, found, limit)
}

fn over(what: &str, found: usize, limit: usize) -> Result<(), String> {
    if found > limit {
        return Err(format!(
            "returned {what} of {found}, more than the {limit} llem accepts from a plugin"
        ));
    }
    Ok(())
}

pub fn check_prompts(prompts: &[sdk::Prompt]) -> Result<(), String> {
    over("a prompt list", prompts.len(), MAX_PROMPTS)?;
    for p in prompts {
        let bytes = match &p.body {
            sdk::PromptBody::Text(t) => t.len(),
            sdk::PromptBody::Chat(messages) => messages
                .iter()
                .map(|m| m.role.len() + m.content.len())
                .sum(),
        };
        over("a prompt (bytes)", bytes, PROMPT_BYTES)?;
        over("a prompt id (bytes)", p.id.len(), SHORT_BYTES)?;
    }
    Ok(())
}

pub fn check_plan(plan: &sdk::EnginePlan) -> Result<(), String> {
    over("an argument list", plan.args.len(), MAX_PLAN_ITEMS)?;
    over("an environment", plan.env.len(), MAX_PLAN_ITEMS)?;
    let strings = [&plan.engine, &plan.program]
        .into_iter()
        .chain(&plan.args)
        .chain(plan.env.iter().flat_map(|(k, v)| [k, v]))
        .chain(&plan.api_base_path)
        .chain(&plan.health_path)
        .chain(&plan.metrics_path);
    for s in strings {
        over("a plan string (bytes)", s.len(), PLAN_STRING_BYTES)?;
    }
    if let Some(script) = &plan.worker_script {
        over("a worker script (bytes)", script.len(), WORKER_SCRIPT_BYTES)?;
    }
    Ok(())
}

pub fn check_metrics(metrics: &[sdk::Metric]) -> Result<(), String> {
    over("a metric list", metrics.len(), MAX_METRICS)?;
    for m in metrics {
        let bytes = m.name.len()
            + m.unit.len()
            + m.labels
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
        over("a metric (bytes)", bytes, SHORT_BYTES * 4)?;
    }
    Ok(())
}

/// A plugin's self-description: its names and docs are shown by `plugins list`.
pub fn check_info(info: &sdk::PluginInfo) -> Result<(), String> {
    over("an option list", info.options.len(), MAX_OPTIONS)?;
    over("a name (bytes)", info.name.len(), SHORT_BYTES)?;
    for o in &info.options {
        over("an option's choices", o.choices.len(), MAX_OPTIONS)?;
    }
    Ok(())
}

pub fn check_devices(devices: &[sdk::Device]) -> Result<(), String> {
    over("a device list", devices.len(), MAX_DEVICES)
}

/// Per-instance log budget: a plugin that floods the log is cut to
/// [`LOG_LINES_PER_SECOND`] lines and [`LOG_BYTES_PER_SECOND`] bytes a second.
#[derive(Debug, Default)]
pub struct LogBudget {
    window: Option<Instant>,
    lines: u32,
    bytes: usize,
    dropped: u64,
}

/// What to do with one log line.
#[derive(Debug, PartialEq, Eq)]
pub struct Admitted {
    /// The line, cut and sanitised.
    pub line: String,
    /// Lines dropped since the last one admitted (over budget).
    pub dropped_before: u64,
}

impl LogBudget {
    /// Lines dropped and not yet reported (reported when the instance closes).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The line to log, or `None` when this second's budget is spent.
    pub fn admit(&mut self, now: Instant, message: &str) -> Option<Admitted> {
        let fresh = self
            .window
            .is_none_or(|start| now.duration_since(start) >= Duration::from_secs(1));
        if fresh {
            self.window = Some(now);
            self.lines = 0;
            self.bytes = 0;
        }
        let len = message.len().min(LOG_LINE_BYTES);
        if self.lines >= LOG_LINES_PER_SECOND || self.bytes + len > LOG_BYTES_PER_SECOND {
            self.dropped += 1;
            return None;
        }
        self.lines += 1;
        self.bytes += len;
        Some(Admitted {
            line: text(message, LOG_LINE_BYTES),
            dropped_before: std::mem::take(&mut self.dropped),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_at_a_character_boundary_and_says_so() {
        let s = "é".repeat(3000); // 6000 bytes
        let out = text(&s, 4095);
        assert!(out.starts_with(&"é".repeat(2047)), "cut below 4095 bytes");
        assert!(
            out.ends_with(" … [1906 more bytes cut by llem]"),
            "{}",
            &out[4090..]
        );
        assert_eq!(text("short", 10), "short");
    }

    #[test]
    fn escapes_cannot_lengthen_cut_text_past_its_limit() {
        let out = text(&"\x1b".repeat(100), 40);
        assert!(out.starts_with("\\x1b\\x1b"), "{out}");
        assert!(
            out.len() <= 40 + " … [60 more bytes cut by llem]".len(),
            "{out}"
        );
    }

    #[test]
    fn a_log_flood_is_cut_to_the_budget_and_the_drop_is_counted() {
        let mut budget = LogBudget::default();
        let start = Instant::now();
        let admitted = (0..1000)
            .filter(|_| budget.admit(start, "spam").is_some())
            .count();
        assert_eq!(admitted, LOG_LINES_PER_SECOND as usize);
        let next = budget.admit(start + Duration::from_secs(1), "later");
        assert_eq!(
            next,
            Some(Admitted {
                line: "later".into(),
                dropped_before: 1000 - u64::from(LOG_LINES_PER_SECOND),
            })
        );
        // Bytes count too: 16 lines of 4 KiB fill 64 KiB.
        let mut budget = LogBudget::default();
        let big = "x".repeat(LOG_LINE_BYTES * 10);
        let admitted = (0..100)
            .filter(|_| budget.admit(start, &big).is_some())
            .count();
        assert_eq!(admitted, LOG_BYTES_PER_SECOND / LOG_LINE_BYTES);
    }

    #[test]
    fn oversized_data_is_refused_not_cut() {
        let prompt = |text: String| sdk::Prompt {
            id: "p".into(),
            body: sdk::PromptBody::Text(text),
            input_tokens: None,
            max_output_tokens: None,
        };
        assert!(check_prompts(&[prompt("hi".into())]).is_ok());
        let err = check_prompts(&[prompt("x".repeat(PROMPT_BYTES + 1))]).unwrap_err();
        assert_eq!(
            err,
            format!(
                "returned a prompt (bytes) of {}, more than the {PROMPT_BYTES} llem accepts from a plugin",
                PROMPT_BYTES + 1
            )
        );
    }
}
