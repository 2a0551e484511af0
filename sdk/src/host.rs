//! Services the kernel gives plugins: logging into its tracing subscriber and
//! its monotonic clock (the same calls work in WASM and native builds), and
//! where a sandboxed plugin may write.

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

/// The directory this sandboxed plugin may write, as the kernel granted it
/// (for a sink with no path option set: the run directory). `None` when there
/// is no writable directory, and always in a native build, which runs
/// unconfined and is told where to write through its options.
pub fn write_dir() -> Option<std::path::PathBuf> {
    #[cfg(target_family = "wasm")]
    {
        use wasip2::filesystem::{preopens, types::DescriptorFlags};
        preopens::get_directories()
            .into_iter()
            .find(|(dir, _)| {
                dir.get_flags()
                    .is_ok_and(|f| f.contains(DescriptorFlags::MUTATE_DIRECTORY))
            })
            .map(|(_, path)| std::path::PathBuf::from(path))
    }
    #[cfg(not(target_family = "wasm"))]
    None
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
