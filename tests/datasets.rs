//! Placeholder: filled in by the datasets work (issue #4).
