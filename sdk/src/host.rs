//! Services the kernel gives plugins: logging into its tracing subscriber and
//! its monotonic clock. The same calls work in WASM and native builds.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
}

/// Log a message, attributed to this plugin by the kernel.
pub fn log(level: Level, message: &str) {
    #[cfg(target_family = "wasm")]
    crate::wasm::host_log(level, message);
    #[cfg(not(target_family = "wasm"))]
    crate::native::host_log(level, message);
}

/// CLOCK_MONOTONIC in nanoseconds, the kernel's clock.
pub fn monotonic_now_ns() -> u64 {
    #[cfg(target_family = "wasm")]
    return crate::wasm::host_monotonic_now_ns();
    #[cfg(not(target_family = "wasm"))]
    return crate::native::host_monotonic_now_ns();
}

pub fn info(message: &str) {
    log(Level::Info, message)
}

pub fn warn(message: &str) {
    log(Level::Warn, message)
}

pub fn debug(message: &str) {
    log(Level::Debug, message)
}
