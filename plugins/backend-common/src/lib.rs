//! `backend-common`: what the backend plugins share. Not a plugin: a plain
//! library (`build = "none"`, so `cargo xtask` does not ship it) linked into
//! `backend-pytorch`, `backend-vllm` and `backend-trtllm`, for the host and for
//! `wasm32-wasip2` alike.
//!
//! - [`WORKER_PROTOCOL`]: the Python side of llem's worker protocol
//!   (`worker_protocol.py` in this crate). Each backend's offline worker is
//!   this module with the backend's engine part appended, assembled when the
//!   plugin is built:
//!   `concat!(include_str!("../../backend-common/worker_protocol.py"),
//!   include_str!("../<name>_worker.py"))` (a `concat!` needs literals, so
//!   each plugin names the file; its tests check that the script starts with
//!   [`WORKER_PROTOCOL`]). The kernel writes the result as one script.
//! - [`prometheus`]: picking named series out of an engine's `/metrics` page.
//! - Plan helpers: the `mode` option, paths in the run directory, the checks
//!   every backend makes on its request and its `extra_args`.

pub mod prometheus;

use llem_sdk::{Config, EngineMode, EnginePlan, PlanRequest, PluginError};

/// The worker protocol module, the first part of every offline worker.
pub const WORKER_PROTOCOL: &str = include_str!("../worker_protocol.py");

/// The values of every backend's `mode` option.
pub const MODES: &[&str] = &["server", "offline"];

/// The `mode` option (`default` when unset).
pub fn mode(config: &Config, default: &str) -> Result<EngineMode, PluginError> {
    Ok(match config.choice_or("mode", default, MODES)?.as_str() {
        "offline" => EngineMode::Offline,
        _ => EngineMode::Server,
    })
}

/// An integer option that must be at least 1 when set.
pub fn positive(config: &Config, key: &str) -> Result<Option<i64>, PluginError> {
    match config.optional::<i64>(key)? {
        Some(n) if n < 1 => Err(PluginError::invalid_config(
            key,
            format!("must be at least 1, found {n}"),
        )),
        other => Ok(other),
    }
}

/// `<run_dir>/<file>`, whatever the run directory's trailing slashes.
pub fn in_run_dir(run_dir: &str, file: &str) -> String {
    format!("{}/{file}", run_dir.trim_end_matches('/'))
}

/// `--host <h> --port <p>`: the address the kernel reserved for a server
/// (every engine's CLI spells it so).
pub fn address_args(request: &PlanRequest) -> [String; 4] {
    [
        "--host".to_owned(),
        request.host.clone(),
        "--port".to_owned(),
        request.port.to_string(),
    ]
}

/// Refuse a request without a model; `needs` says what this engine takes
/// ("a vLLM run needs a model (…)").
pub fn require_model(request: &PlanRequest, needs: &str) -> Result<(), PluginError> {
    if request.model.trim().is_empty() {
        return Err(PluginError::invalid_config("experiment.model", needs));
    }
    Ok(())
}

/// Refuse `extra_args` that set one of `flags` (`--flag value` or
/// `--flag=value`): llem chooses the server's address, and two of them would
/// start a server nobody measures.
pub fn refuse_address_flags(extra_args: &[String], flags: &[&str]) -> Result<(), PluginError> {
    for (i, arg) in extra_args.iter().enumerate() {
        let flag = arg.split('=').next().unwrap_or(arg);
        if flags.contains(&flag) {
            return Err(PluginError::invalid_config(
                "extra_args",
                format!("element {i} ({arg:?}) sets the server address, which llem chooses"),
            ));
        }
    }
    Ok(())
}

/// The plan of an offline worker: `python <run_dir>/<file> <args…>`, the
/// kernel writing `script` (the assembled worker) to that path first.
pub struct OfflineWorker<'a> {
    pub engine: &'a str,
    pub python: &'a str,
    /// The worker's file name in the run directory.
    pub file: &'a str,
    pub script: &'a str,
    /// Arguments after the script's path.
    pub args: Vec<String>,
    pub env: &'a [(String, String)],
    pub ready_timeout_s: u32,
}

impl OfflineWorker<'_> {
    pub fn plan(self, request: &PlanRequest) -> EnginePlan {
        let mut args = vec![in_run_dir(&request.run_dir, self.file)];
        args.extend(self.args);
        EnginePlan {
            mode: EngineMode::Offline,
            engine: self.engine.to_owned(),
            program: self.python.to_owned(),
            args,
            env: self.env.to_vec(),
            api_base_path: None,
            health_path: None,
            metrics_path: None,
            worker_script: Some(self.script.to_owned()),
            ready_timeout_s: self.ready_timeout_s,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn config(json: &str) -> Config {
        Config::from_json(json).unwrap()
    }

    #[test]
    fn modes_and_their_default() {
        assert_eq!(mode(&config("{}"), "offline").unwrap(), EngineMode::Offline);
        assert_eq!(
            mode(&config(r#"{"mode": null}"#), "server").unwrap(),
            EngineMode::Server
        );
        assert_eq!(
            mode(&config(r#"{"mode": "offline"}"#), "server").unwrap(),
            EngineMode::Offline
        );
        let err = mode(&config(r#"{"mode": "attach"}"#), "server").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("mode"));
    }

    #[test]
    fn address_flags_are_refused_in_both_spellings() {
        let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(refuse_address_flags(&args(&["--seed", "1"]), &["--port"]).is_ok());
        for bad in [&["--port", "9"][..], &["-x", "--port=9"]] {
            let err = refuse_address_flags(&args(bad), &["--host", "--port"]).unwrap_err();
            assert_eq!(err.key.as_deref(), Some("extra_args"));
        }
    }

    #[test]
    fn run_dir_paths_and_offline_plans() {
        assert_eq!(in_run_dir("/runs/r1//", "w.py"), "/runs/r1/w.py");
        let request = PlanRequest {
            model: "m".into(),
            host: "127.0.0.1".into(),
            port: 1,
            run_dir: "/runs/r1/".into(),
        };
        let plan = OfflineWorker {
            engine: "e",
            python: "python3",
            file: "e_worker.py",
            script: "print()\n",
            args: vec!["--x".into()],
            env: &[],
            ready_timeout_s: 7,
        }
        .plan(&request);
        assert_eq!(plan.args, vec!["/runs/r1/e_worker.py", "--x"]);
        assert_eq!(
            address_args(&request),
            ["--host", "127.0.0.1", "--port", "1"].map(String::from)
        );
        assert_eq!(plan.worker_script.as_deref(), Some("print()\n"));
        let mut empty = request;
        empty.model = " ".into();
        let err = require_model(&empty, "needs a model").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("experiment.model"));
    }

    #[test]
    fn the_protocol_module_is_the_python_side_of_protocol_1() {
        assert!(WORKER_PROTOCOL.starts_with("#!/usr/bin/env python3\n"));
        assert!(WORKER_PROTOCOL.contains("\nPROTOCOL = 1\n"));
        // The engine parts end with the `__main__` guard: none here.
        assert!(!WORKER_PROTOCOL.contains("if __name__ == \"__main__\""));
    }
}
