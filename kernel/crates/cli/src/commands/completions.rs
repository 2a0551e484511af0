//! `llem completions <shell>`: shell completion scripts.

use crate::output::{CmdResult, Failure};
use clap::CommandFactory;
use clap_complete::Shell;
use std::io::Write;

/// Print a completion script, e.g. `llem completions bash > /etc/bash_completion.d/llem`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to complete for.
    shell: Shell,
}

pub fn run(args: Args) -> CmdResult {
    let mut command = crate::Cli::command();
    // Generated into memory: clap_complete panics on a failed write, and a
    // reader that went away (`| head`) is not an error.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "llem", &mut script);
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(&script).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Failure::failed(format!(
            "cannot write the completion script: {e}"
        ))),
        _ => Ok(std::process::ExitCode::SUCCESS),
    }
}
