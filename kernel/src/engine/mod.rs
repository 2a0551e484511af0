//! Running engines. Backend plugins only *plan* (program, args, env, paths);
//! the kernel alone starts engine processes and owns their lifetime: its own
//! process group, logs captured into the run directory, a health wait with a
//! timeout that also notices an engine that died, and a teardown that leaves
//! nothing behind — on success, error, Ctrl-C or a crashed engine.

pub mod http;
pub mod metrics;
mod port;
mod process;
pub mod versions;
pub mod worker;

pub use port::free_port;
pub use process::{EngineProcess, StartError};
