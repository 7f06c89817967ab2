//! Helpers shared by the integration tests under `tests/`.
#![allow(dead_code)]

pub mod http;
pub mod kafka;

use std::path::PathBuf;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// How often the waits below check their condition.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Calls `attempt` until it returns something, at most for `timeout`; what it returned, or
/// `None` if the time ran out. It is called at least once, and once more at the deadline.
pub fn poll<T>(timeout: Duration, mut attempt: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let last_chance = Instant::now() >= deadline;
        if let Some(found) = attempt() {
            return Some(found);
        }
        if last_chance {
            return None;
        }
        std::thread::sleep(POLL_INTERVAL.min(deadline.saturating_duration_since(Instant::now())));
    }
}

/// Waits until `condition` holds; panics saying `what` was not reached within `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    if poll(timeout, || condition().then_some(())).is_none() {
        panic!("not reached within {timeout:?}: {what}");
    }
}

/// A child process that is killed when this is dropped, so a failing test leaves none behind.
pub struct KillOnDrop(pub Child);

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for `child` to exit, at most `timeout`; its status, or `None` if it is still running.
pub fn wait_for_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    poll(timeout, || child.try_wait().unwrap())
}

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
    assert!(
        path.exists(),
        "{} is missing: build the guests first with `make wasm`",
        path.display()
    );
    path
}

/// A Python or TypeScript component built by `make polyglot`.
pub fn polyglot(name: &str) -> PathBuf {
    let path = repo().join("target/polyglot").join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: build it first with `make polyglot`",
        path.display()
    );
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

/// Runs `sluice try ARGS...` with `stdin` as its input; its status and output.
pub fn try_with_stdin(args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = sluice()
        .arg("try")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Bytes as UTF-8 text; panics if they are not, as a test assertion would.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}
