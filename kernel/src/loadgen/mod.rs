//! The load generator (issue #4): being written.
