//! How the CLI talks to people: errors and notes on stderr, results on stdout.

use llem::plugin::sanitize_lines;
use std::io::{IsTerminal, Write};

/// A command's failure: what to print and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub code: u8,
}

impl Failure {
    pub fn bad_input(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            code: crate::exit::BAD_INPUT,
        }
    }

    pub fn failed(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            code: crate::exit::FAILURE,
        }
    }
}

pub type CmdResult = Result<std::process::ExitCode, Failure>;

fn styled(code: &str, text: &str) -> String {
    if std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

// Messages may quote plugin text: escape sequences and control characters
// are shown, never executed (line breaks llem laid out are kept). A closed
// stderr is ignored: a run goes on and tears its engine down whatever
// happened to the terminal.
pub fn error(message: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "{} {}",
        styled("1;31", "error:"),
        sanitize_lines(message)
    );
}

pub fn warn(message: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "{} {}",
        styled("1;33", "warning:"),
        sanitize_lines(message)
    );
}

pub fn ok(message: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "{} {}",
        styled("32", "✔"),
        sanitize_lines(message)
    );
}
