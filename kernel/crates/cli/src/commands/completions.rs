//! `llem completions <shell>`: shell completion scripts.

use crate::output::CmdResult;
use clap::CommandFactory;
use clap_complete::Shell;

/// Print a completion script, e.g. `llem completions bash > /etc/bash_completion.d/llem`.
#[derive(Debug, clap::Args)]
pub struct Args {
    shell: Shell,
}

pub fn run(args: Args) -> CmdResult {
    let mut command = crate::Cli::command();
    clap_complete::generate(args.shell, &mut command, "llem", &mut std::io::stdout());
    Ok(std::process::ExitCode::SUCCESS)
}
