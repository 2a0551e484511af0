//! Ctrl-C and SIGTERM for commands that run engines (`llem run`, a study's
//! runs): what each press does, the same everywhere.

use crate::output::warn;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// Install the handler; the flag it sets asks the running work to stop.
pub fn install() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let handler_stop = stop.clone();
    let presses = AtomicU8::new(0);
    // First Ctrl-C (or SIGTERM): stop, tear the engine down with its grace,
    // write what was measured. Second: kill the engine's process group now
    // (the run directory is still finished). Third: leave at once — after
    // killing the engine again: no Ctrl-C ever leaves an engine running.
    if let Err(e) = ctrlc::set_handler(move || {
        let say = |text: &str| {
            let _ = writeln!(std::io::stderr(), "\n{text}");
        };
        match presses.fetch_add(1, Ordering::SeqCst) {
            0 => {
                handler_stop.store(true, Ordering::SeqCst);
                say(
                    "interrupted: stopping the engine and finishing the run directory with what was measured (Ctrl-C again to kill the engine at once)",
                );
            }
            1 => {
                say(
                    "interrupted again: killing the engine now (Ctrl-C once more to quit without finishing the run directory)",
                );
                llem::engine::hurry_teardown();
            }
            _ => {
                llem::engine::hurry_teardown();
                std::process::exit(i32::from(crate::exit::INTERRUPTED));
            }
        }
    }) {
        warn(&format!("Ctrl-C will not save partial results: {e}"));
    }

    stop
}
