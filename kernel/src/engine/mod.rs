//! Running engines. Backend plugins only *plan* (program, args, env, paths);
//! the kernel alone starts engine processes and owns their lifetime: its own
//! process group, logs captured into the run directory, a health wait with a
//! timeout that also notices an engine that died, and a teardown that leaves
//! nothing behind — on success, error, Ctrl-C or a crashed engine. A plan is
//! untrusted: only programs the user allowed run, with an allow-listed
//! environment, confined by Landlock where the kernel has it ([`policy`],
//! [`confine`]).

pub mod confine;
pub mod http;
pub mod metrics;
pub mod policy;
mod port;
mod process;
pub mod python;
pub mod request_options;
pub mod versions;
pub mod worker;

pub use confine::{EngineConfinement, landlock_abi};
pub use policy::{ConfinementMode, EngineGrants};
pub use port::free_port;
pub use process::{EngineProcess, StartError, WorkerScript, group_alive, hurry_teardown};

/// A bare plan for the engine module's tests: `program args…`, nothing else set.
#[cfg(test)]
pub(crate) fn test_plan(
    mode: llem_sdk::EngineMode,
    engine: &str,
    program: &str,
    args: &[&str],
) -> llem_sdk::EnginePlan {
    llem_sdk::EnginePlan {
        mode,
        engine: engine.into(),
        program: program.into(),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        env: vec![],
        api_base_path: None,
        health_path: None,
        metrics_path: None,
        worker_script: None,
        ready_timeout_s: 5,
    }
}
