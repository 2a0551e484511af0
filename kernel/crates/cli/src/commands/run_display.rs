//! The live display of one run: a progress bar for the phase under way, and a
//! line for each plugin opened, engine event and warning.

use crate::output::{ok, warn};
use indicatif::{ProgressBar, ProgressStyle};
use llem::experiment::Event;

pub struct RunDisplay {
    bar: ProgressBar,
}

impl RunDisplay {
    pub fn new() -> Self {
        let bar = ProgressBar::new(1000);
        bar.set_style(
            ProgressStyle::with_template("  measuring  {bar:30} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("█░ "),
        );
        RunDisplay { bar }
    }

    pub fn show(&self, event: Event<'_>) {
        let bar = &self.bar;
        match event {
            Event::Opened {
                instance,
                kind,
                detail,
            } => bar.suspend(|| {
                // One line: a plugin's device names or engine arguments cannot break it.
                ok(&format!(
                    "{instance} ({kind}): {}",
                    llem::plugin::sanitize(&detail)
                ))
            }),
            Event::Warning(text) => bar.suspend(|| warn(text)),
            Event::Phase { note, .. } => bar.set_message(note),
            Event::Engine(text) => bar.suspend(|| ok(text)),
            Event::Sampling { .. } => {}
            Event::Requests {
                warmup,
                completed,
                total,
                output_tokens,
            } => {
                if let Some(total) = total.filter(|t| *t > 0) {
                    bar.set_position(u64::from(completed) * 1000 / u64::from(total));
                }
                let phase = if warmup { "warm-up" } else { "requests" };
                let total = total.map(|t| t.to_string()).unwrap_or_else(|| "?".into());
                let tokens = if output_tokens > 0 {
                    format!("  {output_tokens} output tokens")
                } else {
                    String::new()
                };
                bar.set_message(format!("{phase} {completed}/{total}{tokens}"));
            }
            Event::Tick {
                elapsed,
                total,
                power_w,
            } => {
                let fraction = (elapsed.as_secs_f64() / total.as_secs_f64().max(1e-9)).min(1.0);
                bar.set_position((fraction * 1000.0) as u64);
                let power = power_w.map(|w| format!("  {w:.1} W")).unwrap_or_default();
                bar.set_message(format!(
                    "{:.1}/{:.1} s{power}",
                    elapsed.as_secs_f64(),
                    total.as_secs_f64()
                ));
            }
        }
    }

    /// Clear the bar (before the summary is printed).
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
