//! Log lines to the runtime's log, tagged with the module that wrote them.
//!
//! The macros [`trace!`](crate::trace), [`debug!`](crate::debug), [`info!`](crate::info),
//! [`warn!`](crate::warn) and [`error!`](crate::error) take `format!` arguments; the functions
//! here take a finished message. The runtime's log filter decides which levels are kept
//! (`RUST_LOG=sluice::guest=trace` keeps them all).
//!
//! ```
//! let (offset, field) = (17, "date");
//! sluice_sdk::warn!("record at offset {offset}: field `{field}` is empty, using the default");
//! sluice_sdk::trace!("{} bytes in", 42);
//! sluice_sdk::log::info("started");
//! ```
//!
//! Natively (in unit tests) the lines go to standard error instead.

use crate::wit::log::{self as host, Level};

fn emit(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    host::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = host::log; // the host import exists only inside the runtime
        eprintln!("[{level:?}] {message}");
    }
}

/// Logs at trace level: very detailed tracing.
pub fn trace(message: &str) {
    emit(Level::Trace, message)
}

/// Logs at debug level: detail useful when debugging a transform.
pub fn debug(message: &str) {
    emit(Level::Debug, message)
}

/// Logs at info level: normal operation worth noting.
pub fn info(message: &str) {
    emit(Level::Info, message)
}

/// Logs at warn level: something unexpected that the transform handled.
pub fn warn(message: &str) {
    emit(Level::Warn, message)
}

/// Logs at error level: something failed.
pub fn error(message: &str) {
    emit(Level::Error, message)
}

/// Logs at trace level, with `format!` arguments: `sluice_sdk::trace!("{n} fields")`.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => {
        $crate::log::trace(&::std::format!($($arg)+))
    };
}

/// Logs at debug level, with `format!` arguments: `sluice_sdk::debug!("{n} fields")`.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => {
        $crate::log::debug(&::std::format!($($arg)+))
    };
}

/// Logs at info level, with `format!` arguments: `sluice_sdk::info!("{n} fields")`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => {
        $crate::log::info(&::std::format!($($arg)+))
    };
}

/// Logs at warn level, with `format!` arguments: `sluice_sdk::warn!("{n} fields")`.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => {
        $crate::log::warn(&::std::format!($($arg)+))
    };
}

/// Logs at error level, with `format!` arguments: `sluice_sdk::error!("{n} fields")`.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => {
        $crate::log::error(&::std::format!($($arg)+))
    };
}
