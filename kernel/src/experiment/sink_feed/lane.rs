//! One sink's queue: what the run hands it, waiting for its thread. Bounded
//! per kind of item, never blocking the producer: an item that does not fit
//! is dropped and counted, so a slow or stuck sink costs the measurement
//! nothing and cannot make the kernel hold more than the bounds below.

use llem_sdk::{PhaseEvent, ResultDocument, SampleBatch, Wanted};
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// Most readings queued for one sink (≈ 32 B each).
pub const MAX_QUEUED_READINGS: u64 = 200_000;
/// Most phase events queued for one sink.
pub const MAX_QUEUED_EVENTS: u64 = 1_000;
/// Most request records queued for one sink …
pub const MAX_QUEUED_REQUESTS: u64 = 10_000;
/// … and most chunk timestamps among them (8 B each).
pub const MAX_QUEUED_CHUNK_STAMPS: u64 = 1_000_000;

/// Items of `kind` that make one call's worth.
fn per_call(kind: Kind) -> u64 {
    use crate::experiment::sinks::{
        MAX_EVENTS_PER_BATCH, MAX_REQUESTS_PER_BATCH, MAX_SAMPLES_PER_BATCH,
    };
    (match kind {
        Kind::Readings => MAX_SAMPLES_PER_BATCH,
        Kind::Events => MAX_EVENTS_PER_BATCH,
        Kind::Requests => MAX_REQUESTS_PER_BATCH,
    }) as u64
}

/// One item for a sink. Shared between the sinks that get it.
#[derive(Debug, Clone)]
pub enum Item {
    /// At most `MAX_SAMPLES_PER_BATCH` readings of one source.
    Samples(Arc<SampleBatch>),
    Event(PhaseEvent),
    Request(Arc<llem_sdk::RequestRecord>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Readings = 0,
    Events = 1,
    Requests = 2,
}

impl Item {
    pub fn kind(&self) -> Kind {
        match self {
            Item::Samples(_) => Kind::Readings,
            Item::Event(_) => Kind::Events,
            Item::Request(_) => Kind::Requests,
        }
    }

    /// How many items of its kind it counts for.
    pub fn count(&self) -> u64 {
        match self {
            Item::Samples(b) => b.samples.len() as u64,
            Item::Event(_) | Item::Request(_) => 1,
        }
    }

    fn stamps(&self) -> u64 {
        match self {
            Item::Request(r) => r.chunk_ns.len() as u64,
            _ => 0,
        }
    }
}

/// What the sink's thread takes next.
#[derive(Debug)]
pub enum Next {
    Item(Item),
    /// Nothing came before the deadline: time to deliver what is pending.
    Idle,
    /// The run is over and everything queued has been taken: deliver the
    /// rest, then the result (`None`: the run ended without one).
    End(Option<ResultDocument>),
}

/// Per kind: items meant for the sink, items it accepted, items dropped
/// because the queue was full.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub offered: [u64; 3],
    pub delivered: [u64; 3],
    pub overflowed: [u64; 3],
    pub result_offered: bool,
    pub result_delivered: bool,
}

#[derive(Debug, Default)]
struct State {
    items: VecDeque<Item>,
    queued: [u64; 3],
    queued_stamps: u64,
    /// `None` until the sink has said (readings are always wanted).
    wanted: Option<Wanted>,
    /// The run is over: `Some(result)` once, then nothing more is accepted.
    end: Option<Option<ResultDocument>>,
    ended: bool,
    tally: Tally,
    error: Option<String>,
}

impl State {
    fn wants(&self, kind: Kind) -> bool {
        match (kind, self.wanted) {
            (Kind::Readings, _) | (_, None) => true,
            (Kind::Events, Some(w)) => w.phase_events,
            (Kind::Requests, Some(w)) => w.requests,
        }
    }

    fn fits(&self, item: &Item) -> bool {
        let kind = item.kind() as usize;
        let (limit, stamps_ok) = match item.kind() {
            Kind::Readings => (MAX_QUEUED_READINGS, true),
            Kind::Events => (MAX_QUEUED_EVENTS, true),
            Kind::Requests => (
                MAX_QUEUED_REQUESTS,
                self.queued_stamps + item.stamps() <= MAX_QUEUED_CHUNK_STAMPS,
            ),
        };
        self.queued[kind] + item.count() <= limit && stamps_ok
    }
}

/// One sink's queue and its counts, shared by the run (producer) and the
/// sink's thread (consumer); the counts outlive an abandoned thread.
#[derive(Debug, Default)]
pub struct Lane {
    state: Mutex<State>,
    wake: Condvar,
}

impl Lane {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent under every update; a panicked holder
        // leaves counts that are still worth reporting.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue `item` if the sink wants it and it fits; never waits.
    pub fn push(&self, item: Item) {
        let mut state = self.lock();
        let kind = item.kind();
        if state.ended || !state.wants(kind) {
            return;
        }
        let count = item.count();
        state.tally.offered[kind as usize] += count;
        // A failed sink gets nothing more: counted as meant for it, not kept.
        if state.error.is_some() {
            return;
        }
        if !state.fits(&item) {
            state.tally.overflowed[kind as usize] += count;
            return;
        }
        state.queued[kind as usize] += count;
        state.queued_stamps += item.stamps();
        state.items.push_back(item);
        // The thread delivers on its own cadence; it is woken early only when
        // a full call's worth is waiting (no wake-up per reading or request:
        // the measured window pays for as few as possible).
        let full = state.queued[kind as usize] >= per_call(kind);
        drop(state);
        if full {
            self.wake.notify_one();
        }
    }

    /// The run is over; `result` is the last thing the sink gets.
    pub fn end(&self, result: Option<ResultDocument>) {
        let mut state = self.lock();
        if state.ended {
            return;
        }
        state.tally.result_offered = result.is_some();
        state.end = Some(result);
        state.ended = true;
        drop(state);
        self.wake.notify_one();
    }

    /// What the sink asked for: queued items it does not want are removed
    /// (they were never meant for it, so they count neither way).
    pub fn set_wanted(&self, wanted: Wanted) {
        let mut state = self.lock();
        state.wanted = Some(wanted);
        let items = std::mem::take(&mut state.items);
        for item in items {
            let kind = item.kind() as usize;
            if state.wants(item.kind()) {
                state.items.push_back(item);
            } else {
                state.queued[kind] -= item.count();
                state.queued_stamps -= item.stamps();
                state.tally.offered[kind] -= item.count();
            }
        }
    }

    /// The next item, waiting at most until `deadline`.
    pub fn next(&self, deadline: Instant) -> Next {
        let mut state = self.lock();
        loop {
            if let Some(item) = state.items.pop_front() {
                state.queued[item.kind() as usize] -= item.count();
                state.queued_stamps -= item.stamps();
                return Next::Item(item);
            }
            if let Some(result) = state.end.take() {
                return Next::End(result);
            }
            if state.ended {
                // End already taken: nothing will ever come.
                return Next::End(None);
            }
            let now = Instant::now();
            if now >= deadline {
                return Next::Idle;
            }
            state = self
                .wake
                .wait_timeout(state, deadline - now)
                .map(|(s, _)| s)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// `count` items of `kind` reached the sink.
    pub fn delivered(&self, kind: Kind, count: u64) {
        self.lock().tally.delivered[kind as usize] += count;
    }

    pub fn result_delivered(&self) {
        self.lock().tally.result_delivered = true;
    }

    /// The sink failed; the first failure is the one reported. What is
    /// queued is let go (it stays counted as meant for the sink).
    pub fn fail(&self, error: String) {
        let mut state = self.lock();
        if state.error.is_none() {
            state.error = Some(error);
        }
        state.items.clear();
        state.queued = [0; 3];
        state.queued_stamps = 0;
    }

    /// What the sink wanted (`None`: it never said), its counts and its error.
    pub fn report(&self) -> (Option<Wanted>, Tally, Option<String>) {
        let state = self.lock();
        (state.wanted, state.tally, state.error.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn samples(n: usize) -> Item {
        Item::Samples(Arc::new(SampleBatch {
            source: "s".into(),
            devices: vec!["0".into()],
            samples: (0..n as u64)
                .map(|t| llem_sdk::Sample {
                    device: 0,
                    t_ns: t,
                    energy_uj: Some(t),
                    power_mw: None,
                })
                .collect(),
        }))
    }

    fn event(t_ns: u64) -> Item {
        Item::Event(PhaseEvent {
            phase: "measured".into(),
            edge: llem_sdk::PhaseEdge::Start,
            t_ns,
        })
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        let lane = Lane::default();
        let per = 10_000usize;
        let fit = (MAX_QUEUED_READINGS as usize) / per;
        for _ in 0..fit + 3 {
            lane.push(samples(per));
        }
        let (_, tally, _) = lane.report();
        assert_eq!(tally.offered[0], ((fit + 3) * per) as u64);
        assert_eq!(tally.overflowed[0], (3 * per) as u64);
        // Events have their own bound: a reading flood does not drop them.
        lane.push(event(1));
        assert_eq!(lane.report().1.overflowed[1], 0);
    }

    #[test]
    fn items_come_in_order_then_the_end_with_the_result() {
        let lane = Lane::default();
        lane.push(event(1));
        lane.push(samples(2));
        lane.end(None);
        lane.push(event(3)); // after the end: not accepted
        let soon = Instant::now() + Duration::from_millis(10);
        assert!(matches!(lane.next(soon), Next::Item(Item::Event(e)) if e.t_ns == 1));
        assert!(matches!(lane.next(soon), Next::Item(Item::Samples(b)) if b.samples.len() == 2));
        assert!(matches!(lane.next(soon), Next::End(None)));
        assert_eq!(lane.report().1.offered, [2, 1, 0]);
    }

    #[test]
    fn unwanted_items_are_taken_back_and_later_ones_not_queued() {
        let lane = Lane::default();
        lane.push(event(1));
        lane.push(samples(4));
        lane.set_wanted(Wanted::NOTHING);
        lane.push(event(2));
        let (_, tally, _) = lane.report();
        assert_eq!(tally.offered, [4, 0, 0]);
        let soon = Instant::now() + Duration::from_millis(10);
        assert!(matches!(lane.next(soon), Next::Item(Item::Samples(_))));
        assert!(matches!(lane.next(soon), Next::Idle));
    }
}
