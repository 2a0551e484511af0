//! The order in which a study's runs happen: which configuration, in which cycle.
//!
//! Order matters because the machine drifts: GPUs warm up, clocks throttle,
//! neighbours start jobs. Running every cycle of one configuration back to back
//! (`sequential`) confounds that drift with the configuration; spreading each
//! configuration over the whole study (`interleave`, `shuffle`, `reverse`,
//! `latin-square`) turns drift into noise that the cycles average out, and the
//! balanced orders also cancel carry-over from the previous run.

use serde::Serialize;

/// How the runs of a study are ordered. Cycles are numbered from 0 here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Order {
    /// Configuration-major: every cycle of configuration 0, then of configuration 1, …
    Sequential,
    /// Cycle-major: every configuration in cycle 0, then every one in cycle 1, …
    Interleave,
    /// As `interleave`, with each cycle's configurations in a seeded random order.
    Shuffle,
    /// As `interleave`, with odd cycles (1, 3, …) in reverse: a linear drift
    /// then weighs the same on every configuration over each pair of cycles.
    Reverse,
    /// Cycle `k` runs row `k mod rows` of a Williams balanced Latin square: each
    /// configuration takes each position equally often and follows each other
    /// configuration equally often (over a whole number of squares).
    LatinSquare,
}

impl Order {
    pub const ALL: [Order; 5] = [
        Order::Sequential,
        Order::Interleave,
        Order::Shuffle,
        Order::Reverse,
        Order::LatinSquare,
    ];

    /// The name written in a study file.
    pub fn as_str(self) -> &'static str {
        match self {
            Order::Sequential => "sequential",
            Order::Interleave => "interleave",
            Order::Shuffle => "shuffle",
            Order::Reverse => "reverse",
            Order::LatinSquare => "latin-square",
        }
    }

    /// The order named `name` as a study file writes it.
    pub fn from_name(name: &str) -> Option<Order> {
        Order::ALL.into_iter().find(|o| o.as_str() == name)
    }

    /// Whether the seed changes the schedule (and so belongs in the design hash).
    pub fn uses_seed(self) -> bool {
        matches!(self, Order::Shuffle | Order::LatinSquare)
    }
}

impl std::fmt::Display for Order {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One run of a study: configuration `config` (an index into the study's
/// points) in cycle `cycle` (from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Slot {
    pub config: usize,
    pub cycle: u32,
}

/// Every run of a study, in the order they happen: `configs × cycles` slots.
/// The same arguments always give the same schedule, so a resumed study runs
/// what is left of the very same sequence.
pub fn schedule(configs: usize, cycles: u32, order: Order, seed: u64) -> Vec<Slot> {
    let mut slots = Vec::with_capacity(configs.saturating_mul(cycles as usize));
    if configs == 0 {
        return slots;
    }
    let forward: Vec<usize> = (0..configs).collect();
    match order {
        Order::Sequential => {
            for config in 0..configs {
                slots.extend((0..cycles).map(|cycle| Slot { config, cycle }));
            }
        }
        Order::Interleave => {
            for cycle in 0..cycles {
                push_cycle(&mut slots, cycle, &forward);
            }
        }
        Order::Reverse => {
            let backward: Vec<usize> = forward.iter().rev().copied().collect();
            for cycle in 0..cycles {
                let row = if cycle % 2 == 0 { &forward } else { &backward };
                push_cycle(&mut slots, cycle, row);
            }
        }
        Order::Shuffle => {
            let mut rng = SplitMix64::new(seed);
            for cycle in 0..cycles {
                let mut row = forward.clone();
                rng.shuffle(&mut row);
                push_cycle(&mut slots, cycle, &row);
            }
        }
        Order::LatinSquare => {
            // The seed only relabels the square, which keeps it balanced.
            let mut symbol_to_config = forward.clone();
            SplitMix64::new(seed).shuffle(&mut symbol_to_config);
            let rows = williams_rows(configs);
            for cycle in 0..cycles {
                let row: Vec<usize> = rows[cycle as usize % rows.len()]
                    .iter()
                    .map(|&symbol| symbol_to_config[symbol])
                    .collect();
                push_cycle(&mut slots, cycle, &row);
            }
        }
    }
    slots
}

fn push_cycle(slots: &mut Vec<Slot>, cycle: u32, row: &[usize]) {
    slots.extend(row.iter().map(|&config| Slot { config, cycle }));
}

/// The rows of a Williams balanced Latin square of symbols `0..n`.
///
/// The first row is `0, 1, n-1, 2, n-2, …`; row `r` adds `r` to every symbol
/// (mod n). For even `n` these `n` rows are balanced: each symbol once per
/// column, and each ordered pair of distinct symbols adjacent exactly once. For
/// odd `n` that is impossible with `n` rows; the `n` mirrored rows are appended,
/// and the `2n` rows have each ordered pair adjacent exactly twice.
pub fn williams_rows(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return Vec::new();
    }
    let first: Vec<usize> = (0..n)
        .map(|j| match j {
            0 => 0,
            j if j % 2 == 1 => j.div_ceil(2),
            j => n - j / 2,
        })
        .collect();
    let mut rows: Vec<Vec<usize>> = (0..n)
        .map(|r| first.iter().map(|&s| (s + r) % n).collect())
        .collect();
    if n % 2 == 1 {
        let mirrored: Vec<Vec<usize>> = rows
            .iter()
            .map(|row| row.iter().rev().copied().collect())
            .collect();
        rows.extend(mirrored);
    }
    rows
}

/// The study's orders draw from llem's one SplitMix64 (in `llem-analysis`,
/// which also seeds the bootstrap): a generator fixed here forever, so a seed
/// recorded in a study directory reproduces its order. Shuffles use its
/// unbiased `below_exact` (Fisher–Yates in `shuffle`).
pub use llem_analysis::bootstrap::SplitMix64;

#[cfg(test)]
mod tests {
    use super::*;

    /// `(config, cycle)` pairs, to compare with hand-written sequences.
    fn pairs(slots: &[Slot]) -> Vec<(usize, u32)> {
        slots.iter().map(|s| (s.config, s.cycle)).collect()
    }

    fn configs_of_cycle(slots: &[Slot], cycle: u32) -> Vec<usize> {
        slots
            .iter()
            .filter(|s| s.cycle == cycle)
            .map(|s| s.config)
            .collect()
    }

    #[test]
    fn sequential_runs_every_cycle_of_a_config_first() {
        let s = schedule(3, 2, Order::Sequential, 7);
        assert_eq!(pairs(&s), [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]);
    }

    #[test]
    fn interleave_runs_every_config_of_a_cycle_first() {
        let s = schedule(3, 2, Order::Interleave, 7);
        assert_eq!(pairs(&s), [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]);
    }

    #[test]
    fn reverse_alternates_direction_each_cycle() {
        let s = schedule(3, 3, Order::Reverse, 7);
        assert_eq!(
            pairs(&s),
            [
                (0, 0),
                (1, 0),
                (2, 0),
                (2, 1),
                (1, 1),
                (0, 1),
                (0, 2),
                (1, 2),
                (2, 2)
            ]
        );
    }

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        // Reference outputs of splitmix64.c (Vigna) seeded with 1234567.
        let mut rng = SplitMix64::new(1_234_567);
        assert_eq!(rng.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(rng.next_u64(), 3_203_168_211_198_807_973);
    }

    #[test]
    fn shuffle_permutes_each_cycle_reproducibly() {
        let a = schedule(5, 4, Order::Shuffle, 42);
        assert_eq!(a, schedule(5, 4, Order::Shuffle, 42));
        assert_ne!(a, schedule(5, 4, Order::Shuffle, 43));
        for cycle in 0..4 {
            let mut row = configs_of_cycle(&a, cycle);
            row.sort_unstable();
            assert_eq!(row, [0, 1, 2, 3, 4]);
        }
        // Cycle-major like interleave.
        assert!(a.windows(2).all(|w| w[0].cycle <= w[1].cycle));
        // Pinned: a different order for seed 42 would break resuming old studies.
        assert_eq!(configs_of_cycle(&a, 0), SHUFFLE_42_CYCLE_0);
    }

    const SHUFFLE_42_CYCLE_0: [usize; 5] = [1, 2, 0, 4, 3];

    #[test]
    fn williams_rows_match_the_textbook_squares() {
        assert_eq!(
            williams_rows(4),
            [[0, 1, 3, 2], [1, 2, 0, 3], [2, 3, 1, 0], [3, 0, 2, 1]]
        );
        assert_eq!(
            williams_rows(3),
            [
                [0, 1, 2],
                [1, 2, 0],
                [2, 0, 1],
                [2, 1, 0],
                [0, 2, 1],
                [1, 0, 2]
            ]
        );
        assert_eq!(williams_rows(1), [[0], [0]]);
    }

    #[test]
    fn williams_squares_are_balanced() {
        for n in 2..=7 {
            let rows = williams_rows(n);
            assert_eq!(rows.len(), if n % 2 == 0 { n } else { 2 * n }, "n={n}");
            let per_position = rows.len() / n;
            for column in 0..n {
                let mut count = vec![0; n];
                rows.iter().for_each(|r| count[r[column]] += 1);
                assert!(
                    count.iter().all(|&c| c == per_position),
                    "n={n} col={column}"
                );
            }
            let mut follows = vec![vec![0; n]; n];
            for row in &rows {
                assert_eq!(row.len(), n);
                for w in row.windows(2) {
                    follows[w[0]][w[1]] += 1;
                }
            }
            let expected = follows[0][1];
            assert!(expected > 0);
            for (a, row) in follows.iter().enumerate() {
                for (b, &count) in row.iter().enumerate() {
                    if a != b {
                        assert_eq!(count, expected, "n={n}: {a} then {b}");
                    }
                }
            }
        }
    }

    #[test]
    fn latin_square_cycles_use_relabelled_rows() {
        let s = schedule(4, 6, Order::LatinSquare, 9);
        assert_eq!(s.len(), 24);
        // The seed's relabelling, read off the first row (first row is 0,1,3,2).
        let first = configs_of_cycle(&s, 0);
        let label = |symbol: usize| match symbol {
            0 => first[0],
            1 => first[1],
            3 => first[2],
            _ => first[3],
        };
        for (cycle, row) in williams_rows(4).iter().cycle().take(6).enumerate() {
            let expected: Vec<usize> = row.iter().map(|&sym| label(sym)).collect();
            assert_eq!(
                configs_of_cycle(&s, cycle as u32),
                expected,
                "cycle {cycle}"
            );
        }
        // Identity relabelling is one seed among many; another seed changes it.
        assert_ne!(s, schedule(4, 6, Order::LatinSquare, 10));
    }

    #[test]
    fn nothing_to_schedule_without_configs_or_cycles() {
        assert!(schedule(0, 3, Order::LatinSquare, 1).is_empty());
        assert!(schedule(3, 0, Order::Shuffle, 1).is_empty());
    }

    #[test]
    fn orders_have_stable_names() {
        for o in Order::ALL {
            assert_eq!(Order::from_name(o.as_str()), Some(o));
        }
        assert_eq!(Order::from_name("latin-square"), Some(Order::LatinSquare));
        assert_eq!(Order::from_name("latin"), None);
    }
}
