//! What a plugin can and cannot do, in words, for `llem plugins inspect`.
//! Kept next to the rules it describes (sandbox grants, engine policy and
//! confinement) so the two change together.

use crate::engine::{landlock_abi, policy};
use llem_sdk::PluginKind;

/// Lines describing the capabilities of plugin `name` (full name) of `kind`,
/// sandboxed (WASM) or not (native), as table `[plugins.<table>]`.
pub fn describe(name: &str, kind: PluginKind, sandboxed: bool, table: &str) -> Vec<String> {
    let mut lines = Vec::new();
    if !sandboxed {
        lines.push(
            "trusted: runs inside llem's process with llem's rights; sandbox grants do not apply"
                .to_owned(),
        );
    } else {
        lines.push(format!(
            "files, environment: none unless granted (`read`, `write`, `env` in [plugins.{table}.sandbox])"
        ));
        lines.push(format!(
            "network: none unless granted (`connect = [\"host:port\"]` in [plugins.{table}.sandbox]: outgoing TCP to exactly those)"
        ));
        lines.push(
            "every call has a deadline (`call_timeout_ms`) that fires even while it blocks"
                .to_owned(),
        );
    }
    if kind != PluginKind::Backend {
        return lines;
    }
    let documented = policy::documented_programs(name);
    lines.push(if documented.is_empty() {
        format!(
            "engine programs: none unless `programs` in [plugins.{table}.sandbox] names them"
        )
    } else {
        format!(
            "engine programs: {} and the paths you give its program options; others only with `programs` in [plugins.{table}.sandbox]",
            documented.join(", ")
        )
    });
    lines.push(format!(
        "engine environment: llem's allow-list ({}; never names with TOKEN, SECRET, PASSWORD, CREDENTIAL or API_KEY); more with `engine_env`",
        policy::INHERITED.join(", ")
    ));
    let here = match landlock_abi() {
        Some(abi) => format!("Landlock ABI {abi} here"),
        None => "Landlock is not available here: not confined".to_owned(),
    };
    lines.push(format!(
        "engine files ({here}): writes only the run directory, a private TMPDIR, /dev/shm and the model caches; reads system paths, its program's environment (venv) and the model directory, not your home; more with `engine_read` / `engine_write`, none of it with `confinement = \"none\"`"
    ));
    lines
}
