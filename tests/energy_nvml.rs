//! Placeholder: filled in by the energy_nvml work (issue #3).
