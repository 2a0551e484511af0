//! The thread that advances the engine's epoch, so that calls' deadlines fire.
//!
//! Deadlines are counted in epoch ticks ([`EPOCH_TICK`]); a call arms
//! `ceil(timeout / tick) + 1` of them, so it traps no earlier than its
//! timeout and at most about one tick after. Every tick wakes a thread, and
//! on a VM one wake-up costs tens of µs of CPU: at 20 ticks a second the
//! ticker alone cost a WASM energy source sampled at 100 Hz 0.07–0.1 % of a
//! core, more than its reads (issue #12). So the ticker ticks at
//! [`EPOCH_TICK`] only while a call is in flight, and once every
//! [`IDLE_TICK`] otherwise:
//! - a call that runs on a thread of its own (everything but the energy
//!   `read`) wakes the ticker as it starts: its deadline keeps the one-tick
//!   precision;
//! - the energy `read`, made on the sampler's thread up to 100 times a
//!   second and over in microseconds, only counts itself in flight without
//!   waking anyone. One that hangs is seen at the next idle tick, so its
//!   trap may come up to [`IDLE_TICK`] late — never early: ticks are never
//!   closer together than [`EPOCH_TICK`], except the first after arming,
//!   which the `+ 1` covers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::Thread;
use std::time::{Duration, Instant};
use wasmtime::Engine;

/// How often the epoch advances while a call is in flight.
pub const EPOCH_TICK: Duration = Duration::from_millis(50);
/// How often it advances while none is: the most an inline call's trap can
/// come late (see the module's doc).
pub const IDLE_TICK: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    in_flight: AtomicUsize,
    /// The ticker is waiting out an idle tick (a starting call must wake it).
    idle: AtomicBool,
}

/// Advances the engine's epoch while anything can still call into it: held by
/// the host and by every loaded plugin, so plugins keep their deadlines even
/// after the loader that made them is gone.
pub(super) struct EpochTicker {
    shared: Arc<Shared>,
    thread: Thread,
}

impl EpochTicker {
    pub fn start(engine: Engine) -> anyhow::Result<Arc<EpochTicker>> {
        Self::start_with(move || engine.increment_epoch())
    }

    /// A ticker that calls `advance` for each tick (the engine's epoch, or a
    /// test's counter).
    fn start_with(advance: impl Fn() + Send + 'static) -> anyhow::Result<Arc<EpochTicker>> {
        let shared = Arc::new(Shared::default());
        let state = shared.clone();
        let handle = std::thread::Builder::new()
            .name("llem-wasm-epoch".into())
            .spawn(move || tick(&advance, &state))?;
        Ok(Arc::new(EpochTicker {
            shared,
            thread: handle.thread().clone(),
        }))
    }

    /// A call into the engine begins; it is in flight until the guard drops.
    /// `wake`: make the ticker tick at [`EPOCH_TICK`] from now on (a call
    /// whose deadline must keep its precision); without it the ticker notices
    /// the call at its next tick.
    pub fn call(&self, wake: bool) -> InFlight<'_> {
        self.shared.in_flight.fetch_add(1, Ordering::SeqCst);
        if wake && self.shared.idle.load(Ordering::SeqCst) {
            self.thread.unpark();
        }
        InFlight(self)
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.thread.unpark();
    }
}

/// A call in flight (see [`EpochTicker::call`]).
pub(super) struct InFlight<'a>(&'a EpochTicker);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn tick(advance: &dyn Fn(), shared: &Shared) {
    let busy = || shared.in_flight.load(Ordering::SeqCst) > 0;
    let mut fast = false;
    let mut next = Instant::now() + IDLE_TICK;
    while !shared.stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= next {
            advance();
            fast = busy();
            next = now + if fast { EPOCH_TICK } else { IDLE_TICK };
        } else if !fast && busy() {
            // A call began during an idle wait: tick at the fast rate from
            // now, without an extra tick now (its deadline started counting
            // at its own arming).
            fast = true;
            next = next.min(now + EPOCH_TICK);
        }
        // Announced before a last look at `in_flight`: a call that starts
        // after that look sees `idle` and unparks, and an unpark that comes
        // before the park makes the park return at once.
        shared.idle.store(!fast, Ordering::SeqCst);
        if !fast && busy() {
            continue;
        }
        std::thread::park_timeout(next.saturating_duration_since(Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A ticker whose ticks are recorded (time since the start of the test).
    fn recorded() -> (Arc<EpochTicker>, Arc<Mutex<Vec<Duration>>>, Instant) {
        let ticks = Arc::new(Mutex::new(Vec::new()));
        let start = Instant::now();
        let log = ticks.clone();
        let ticker = EpochTicker::start_with(move || {
            log.lock().expect("unpoisoned").push(start.elapsed());
        })
        .expect("starts");
        (ticker, ticks, start)
    }

    /// Gaps between recorded ticks, plus 1 ms: a tick is recorded when
    /// `advance` runs, some µs after the ticker read the clock it schedules
    /// by, so two recorded ticks may be a few µs closer than the schedule
    /// (seen on CI: 49.95 ms). The schedule itself never ticks early.
    fn gaps(ticks: &[Duration]) -> Vec<Duration> {
        ticks
            .windows(2)
            .map(|w| w[1] - w[0] + Duration::from_millis(1))
            .collect()
    }

    #[test]
    fn without_calls_it_ticks_once_a_second() {
        let (_ticker, ticks, _) = recorded();
        std::thread::sleep(IDLE_TICK + Duration::from_millis(300));
        let ticks = ticks.lock().expect("unpoisoned").clone();
        assert!(ticks.len() <= 1, "{ticks:?}");
        assert!(ticks.iter().all(|t| *t >= IDLE_TICK), "{ticks:?}");
    }

    #[test]
    fn a_call_that_wakes_it_is_ticked_at_the_fast_rate_at_once_and_never_faster() {
        let (ticker, ticks, start) = recorded();
        std::thread::sleep(Duration::from_millis(30));
        let began = start.elapsed();
        let call = ticker.call(true);
        std::thread::sleep(EPOCH_TICK * 6 + EPOCH_TICK / 2);
        drop(call);
        let ticks = ticks.lock().expect("unpoisoned").clone();
        // 6 ticks in 6.5 tick lengths (5 if this machine is slow to wake the
        // ticker): the first one tick after the call began.
        assert!((5..=6).contains(&ticks.len()), "{ticks:?}");
        assert!(ticks[0] >= began + EPOCH_TICK, "{ticks:?}");
        assert!(gaps(&ticks).iter().all(|g| *g >= EPOCH_TICK), "{ticks:?}");
    }

    #[test]
    fn an_inline_call_is_noticed_at_the_next_idle_tick_then_ticked_fast() {
        let (ticker, ticks, start) = recorded();
        std::thread::sleep(Duration::from_millis(30)); // the ticker waits out an idle tick
        let call = ticker.call(false);
        std::thread::sleep((IDLE_TICK + EPOCH_TICK * 4 + EPOCH_TICK / 2) - start.elapsed());
        drop(call);
        let ticks = ticks.lock().expect("unpoisoned").clone();
        // The idle tick at 1 s sees the call; four fast ticks follow (three
        // if this machine is slow to wake the ticker).
        assert!((4..=5).contains(&ticks.len()), "{ticks:?}");
        assert!(ticks[0] >= IDLE_TICK, "{ticks:?}");
        assert!(gaps(&ticks).iter().all(|g| *g >= EPOCH_TICK), "{ticks:?}");
    }

    #[test]
    fn after_the_last_call_it_goes_back_to_idle() {
        let (ticker, ticks, _) = recorded();
        std::thread::sleep(Duration::from_millis(30));
        let call = ticker.call(true);
        std::thread::sleep(Duration::from_millis(10));
        drop(call);
        std::thread::sleep(EPOCH_TICK * 6);
        // At most one fast tick, which finds nothing in flight; the next is
        // an idle tick away.
        let ticks = ticks.lock().expect("unpoisoned").clone();
        assert!(ticks.len() <= 1, "{ticks:?}");
    }
}
