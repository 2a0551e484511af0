//! llem's study design: the pure part of running a study.
//!
//! ```text
//! study.toml ──StudyFile::load──> Study { spec, base, points, skipped }
//!   points × spec.cycles ──schedule──> [Slot { config, cycle }, …]
//!   apply(base, point, is_backend) ──> RawManifest of one run (then resolve)
//!   design_hash(study, seed) ──> "3f9a1c02ab12" (a resume must match it)
//! ```
//!
//! A study is a run manifest plus `[study]` (how it runs), `[sweep]` (what it
//! varies: axes, `together` groups, `one_of` groups) and `[[experiments]]`
//! (explicit configurations). The executor (running, resuming, reusing engines)
//! lives in the kernel; everything here is deterministic and does no I/O but
//! reading the study file and its `base`. The format is described in `docs/study.md`.

mod apply;
mod expand;
mod hash;
mod order;
mod plan_text;
mod spec;
mod sweep;
mod value;

pub use apply::apply;
pub use expand::{ConfigPoint, Skipped};
pub use hash::{HASH_LEN, design_hash};
pub use order::{Order, Slot, SplitMix64, schedule, williams_rows};
pub use plan_text::plan_text;
pub use spec::{STUDY_TABLES, Study, StudyFile, StudySpec, is_study};
pub use sweep::{BACKEND_KEY, Set};

#[cfg(test)]
mod tests;
