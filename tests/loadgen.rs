//! Placeholder: filled in by the loadgen work (issue #4).
