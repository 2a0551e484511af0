//! The run as explicit phases. Each phase's start and end (CLOCK_MONOTONIC ns,
//! the sampler's clock, so they line up with `timeseries.csv`) is recorded in
//! `result.json`, in the order they ran:
//!
//! 1. `open_sources`   — energy sources opened, sampler started
//! 2. `idle_baseline`  — idle power measured (or a cached figure validated)
//! 3. `start_engine`   — engine started and ready (server healthy / worker `ready`)
//! 4. `warmup`         — warm-up requests, excluded from every figure
//! 5. `thermal_settle` — waiting for power to stop drifting (optional)
//! 6. `measured`       — the measured window: every headline figure is over it
//! 7. `cooldown`       — idle after the window (optional)
//! 8. `assemble`       — figures computed from the raw data
//! 9. `write`          — result.json written
//!
//! A study runs many of these (one experiment × one cycle each).

use crate::clock::monotonic_ns;
use llem_sdk::PhaseEdge;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseName {
    OpenSources,
    IdleBaseline,
    StartEngine,
    Warmup,
    ThermalSettle,
    Measured,
    Cooldown,
    Assemble,
    Write,
}

impl PhaseName {
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseName::OpenSources => "open_sources",
            PhaseName::IdleBaseline => "idle_baseline",
            PhaseName::StartEngine => "start_engine",
            PhaseName::Warmup => "warmup",
            PhaseName::ThermalSettle => "thermal_settle",
            PhaseName::Measured => "measured",
            PhaseName::Cooldown => "cooldown",
            PhaseName::Assemble => "assemble",
            PhaseName::Write => "write",
        }
    }
}

/// One phase as it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseSpan {
    pub name: PhaseName,
    pub start_ns: u64,
    /// `None` while running, or when the run ended inside this phase.
    pub end_ns: Option<u64>,
    pub duration_s: Option<f64>,
    /// What happened, in words (e.g. "8 requests", "cached baseline, validated").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Told every edge the log records, as it records it, with the time the span
/// keeps (so what it is told is what result.json's `phases` say).
#[derive(Clone)]
pub struct EdgeObserver(Arc<dyn Fn(PhaseName, PhaseEdge, u64) + Send + Sync>);

impl EdgeObserver {
    pub fn new(f: impl Fn(PhaseName, PhaseEdge, u64) + Send + Sync + 'static) -> Self {
        EdgeObserver(Arc::new(f))
    }
}

impl std::fmt::Debug for EdgeObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EdgeObserver")
    }
}

/// An observer is no part of what a log says.
impl PartialEq for EdgeObserver {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// Phases in the order they ran.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseLog {
    pub phases: Vec<PhaseSpan>,
    #[serde(skip)]
    observer: Option<EdgeObserver>,
}

impl PhaseLog {
    /// Report every edge from now on to `observer` (a span's start and end are
    /// not changed once reported: callers begin a phase at its real start).
    pub fn observe(&mut self, observer: EdgeObserver) {
        self.observer = Some(observer);
    }

    fn tell(&self, name: PhaseName, edge: PhaseEdge, t_ns: u64) {
        if let Some(observer) = &self.observer {
            (observer.0)(name, edge, t_ns);
        }
    }

    pub fn begin(&mut self, name: PhaseName) {
        self.begin_at(name, monotonic_ns());
    }

    /// Start a phase at a known instant (e.g. a window's own start).
    pub fn begin_at(&mut self, name: PhaseName, t_ns: u64) {
        self.end_open(t_ns);
        self.phases.push(PhaseSpan {
            name,
            start_ns: t_ns,
            end_ns: None,
            duration_s: None,
            note: None,
        });
        self.tell(name, PhaseEdge::Start, t_ns);
    }

    pub fn end(&mut self, name: PhaseName) {
        self.end_at(name, monotonic_ns());
    }

    pub fn end_at(&mut self, name: PhaseName, t_ns: u64) {
        if let Some(span) = self
            .phases
            .iter_mut()
            .rev()
            .find(|p| p.name == name && p.end_ns.is_none())
        {
            let end = close(span, t_ns);
            self.tell(name, PhaseEdge::End, end);
        }
    }

    pub fn note(&mut self, name: PhaseName, note: impl Into<String>) {
        if let Some(span) = self.phases.iter_mut().rev().find(|p| p.name == name) {
            span.note = Some(note.into());
        }
    }

    /// Close whatever is still open (a failure or a signal ended the run there).
    pub fn end_open(&mut self, t_ns: u64) {
        let mut closed = Vec::new();
        for span in self.phases.iter_mut().filter(|p| p.end_ns.is_none()) {
            closed.push((span.name, close(span, t_ns)));
        }
        for (name, end) in closed {
            self.tell(name, PhaseEdge::End, end);
        }
    }

    pub fn get(&self, name: PhaseName) -> Option<&PhaseSpan> {
        self.phases.iter().rev().find(|p| p.name == name)
    }

    /// The phase running now, if any.
    pub fn current(&self) -> Option<PhaseName> {
        self.phases
            .iter()
            .rev()
            .find(|p| p.end_ns.is_none())
            .map(|p| p.name)
    }
}

/// Close `span` at `t_ns` (never before its start); returns the end it got.
fn close(span: &mut PhaseSpan, t_ns: u64) -> u64 {
    let end = t_ns.max(span.start_ns);
    span.end_ns = Some(end);
    span.duration_s = Some((end - span.start_ns) as f64 / 1e9);
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_close_in_order_and_a_new_one_closes_the_open_one() {
        let mut log = PhaseLog::default();
        log.begin_at(PhaseName::OpenSources, 100);
        log.begin_at(PhaseName::IdleBaseline, 250);
        log.end_at(PhaseName::IdleBaseline, 1_000_000_250);
        log.begin_at(PhaseName::Measured, 2_000_000_000);
        log.end_open(3_500_000_000);
        let spans = &log.phases;
        assert_eq!(spans[0].end_ns, Some(250));
        assert_eq!(spans[1].duration_s, Some(1.0));
        assert_eq!(spans[2].duration_s, Some(1.5));
        assert_eq!(log.current(), None);
    }

    #[test]
    fn the_observer_is_told_every_edge_with_the_times_the_spans_keep() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut log = PhaseLog::default();
        let sink = seen.clone();
        log.observe(EdgeObserver::new(move |name, edge, t| {
            sink.lock().unwrap().push((name, edge, t));
        }));
        log.begin_at(PhaseName::OpenSources, 100);
        log.begin_at(PhaseName::Warmup, 250); // closes open_sources at 250
        log.end_at(PhaseName::Warmup, 200); // before its start: clamped
        log.begin_at(PhaseName::Measured, 300);
        log.end_open(400);
        use PhaseEdge::{End, Start};
        use PhaseName::{Measured, OpenSources, Warmup};
        assert_eq!(
            *seen.lock().unwrap(),
            [
                (OpenSources, Start, 100),
                (OpenSources, End, 250),
                (Warmup, Start, 250),
                (Warmup, End, 250),
                (Measured, Start, 300),
                (Measured, End, 400),
            ]
        );
        // ... which is what the spans say.
        let spans: Vec<_> = log
            .phases
            .iter()
            .map(|p| (p.name, p.start_ns, p.end_ns))
            .collect();
        assert_eq!(
            spans,
            [
                (OpenSources, 100, Some(250)),
                (Warmup, 250, Some(250)),
                (Measured, 300, Some(400)),
            ]
        );
    }
}
