//! The plan's head, as `llem run study.toml --dry-run` prints it before
//! anything starts.

use std::fmt::Write;

use crate::expand::Skipped;
use crate::spec::Study;

/// `Study <name> [<hash>]: N configs × C cycles = R runs · order <order>, skipping K`
/// and one line per skipped point. `extra_skips` are the caller's own (plugins
/// refusing a configuration, …): each names one of `study.points`, which then
/// does not count as a config. The caller appends estimates and other lines.
pub fn plan_text(study: &Study, hash: &str, extra_skips: &[Skipped]) -> String {
    let configs = study.points.len().saturating_sub(extra_skips.len());
    let cycles = study.spec.cycles;
    let runs = configs.saturating_mul(cycles as usize);
    let skipped: Vec<&Skipped> = study.skipped.iter().chain(extra_skips).collect();
    let mut text = format!(
        "Study {} [{hash}]: {configs} config{} × {cycles} cycle{} = {runs} run{} · order {}",
        study.spec.name,
        plural(configs),
        plural(cycles as usize),
        plural(runs),
        study.spec.order,
    );
    if !skipped.is_empty() {
        let _ = write!(text, ", skipping {}", skipped.len());
    }
    for s in skipped {
        let _ = write!(text, "\n  skipping {}: {}", s.label, s.reason);
    }
    text
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
