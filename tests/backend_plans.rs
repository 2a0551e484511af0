//! Placeholder: filled in by the backend_plans work (issue #4).
