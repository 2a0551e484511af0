//! Energy maths on raw readings: counter deltas with wraparound and reset
//! guards, trapezoidal power integration when a device has no counter,
//! plausibility (what is a gap rather than energy) and the device hierarchy
//! (which devices a total may add without counting energy twice). Pure
//! functions of the sample stream, so they are tested exhaustively.

mod accumulate;
pub mod hierarchy;
pub mod plausibility;
mod summary;

pub use accumulate::{DeviceAccumulator, EnergyMethod};
pub use hierarchy::{Inclusion, TotalDevice, include};
pub use plausibility::{Gap, GapLog};
pub use summary::summarize;
