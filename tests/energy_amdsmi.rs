//! Placeholder: filled in by the energy_amdsmi work (issue #3).
