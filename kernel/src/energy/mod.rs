//! Energy maths on raw readings: counter deltas with wraparound and reset
//! guards, and trapezoidal power integration when a device has no counter.
//! Pure functions of the sample stream, so they are tested exhaustively.

mod accumulate;

pub use accumulate::{DeviceAccumulator, EnergyMethod};
