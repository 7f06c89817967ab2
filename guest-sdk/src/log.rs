//! Log lines to the runtime's log, tagged with the module that wrote them.
//!
//! Natively (in unit tests) the lines go to standard error instead.

use crate::guest::bindings::sluice::transform::log::{self as host, Level};

fn emit(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    host::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = host::log; // the host import exists only inside the runtime
        eprintln!("[{level:?}] {message}");
    }
}

/// Logs at debug level.
pub fn debug(message: &str) {
    emit(Level::Debug, message)
}

/// Logs at info level.
pub fn info(message: &str) {
    emit(Level::Info, message)
}

/// Logs at warn level.
pub fn warn(message: &str) {
    emit(Level::Warn, message)
}

/// Logs at error level.
pub fn error(message: &str) {
    emit(Level::Error, message)
}
