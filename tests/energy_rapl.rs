//! Placeholder: filled in by the energy_rapl work (issue #3).
