//! Helpers shared by the integration tests under `tests/`.
#![allow(dead_code)]

pub mod kafka;

use std::path::PathBuf;

/// The repository's root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A guest component built by `make wasm`.
pub fn wasm(name: &str) -> PathBuf {
    let dir = std::env::var_os("SLUICE_WASM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/wasm32-wasip2/release"));
    let path = dir.join(format!("{name}.wasm"));
    assert!(path.exists(), "{} is missing: build the guests first with `make wasm`", path.display());
    path
}

/// A file under `tests/data`.
pub fn data(name: &str) -> PathBuf {
    repo().join("tests/data").join(name)
}

/// The `sluice` binary built for these tests.
pub fn sluice() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"));
    command.env("SLUICE_LOG", "warn");
    command
}
