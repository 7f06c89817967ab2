//! What an instance's store holds, and what the host grants a guest.
//!
//! The sandbox: WASI is linked so that Rust's standard library works, but the context grants no
//! preopened directories, no environment or arguments, no sockets or name lookup, and clocks
//! frozen at the epoch; standard output is discarded and standard error is kept (its tail) so
//! that a panic's message can be reported with the failure.

use super::bindings::sluice::transform::log::{self, Level};
use super::state::{KeyValueStore, SharedTask, TaskState, lock};
use super::stateful_bindings::sluice::transform::{state, timers};
use crate::tables::Tables;
use bytes::Bytes;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

/// The per-instance state in a wasmtime store.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    memory_limit: usize,
    /// The module and slot this instance serves, for log lines.
    label: String,
    stderr: StderrTail,
    /// The lookup tables its pipeline declares.
    tables: Tables,
    /// A stateful transform's state, timers and stream time.
    task: Option<SharedTask>,
}

/// Returned by the limiter when a guest grows its memory past the cap; recognised by
/// [`super::instance`] to report the failure as such.
#[derive(Debug, thiserror::Error)]
#[error(
    "memory limit exceeded: the transform tried to grow its memory to {desired} bytes, over the cap of {limit} bytes"
)]
pub struct MemoryLimitExceeded {
    pub desired: usize,
    pub limit: usize,
}

impl HostState {
    pub fn new(
        label: String,
        memory_limit: usize,
        tables: Tables,
        task: Option<SharedTask>,
    ) -> Self {
        let stderr = StderrTail::default();
        let wasi = WasiCtx::builder()
            .stderr(stderr.clone())
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        HostState {
            wasi,
            table: ResourceTable::new(),
            memory_limit,
            label,
            stderr,
            tables,
            task,
        }
    }

    /// The task's state; only stateful transforms, which have one, can import what calls this.
    fn task(&self) -> std::sync::MutexGuard<'_, TaskState<Box<dyn KeyValueStore>>> {
        lock(
            self.task
                .as_ref()
                .expect("only stateful transforms import state and timers"),
        )
    }

    /// The last lines the guest wrote to standard error, e.g. a panic message.
    pub fn stderr_tail(&self) -> String {
        self.stderr.text()
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wasmtime::ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            return Err(wasmtime::Error::new(MemoryLimitExceeded {
                desired,
                limit: self.memory_limit,
            }));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }
}

impl log::Host for HostState {
    fn log(&mut self, level: Level, message: String) {
        const MAX: usize = 4096;
        let message = match message.char_indices().nth(MAX) {
            Some((at, _)) => &message[..at],
            None => &message,
        };
        let module = self.label.as_str();
        match level {
            Level::Trace => tracing::trace!(target: "sluice::guest", module, "{message}"),
            Level::Debug => tracing::debug!(target: "sluice::guest", module, "{message}"),
            Level::Info => tracing::info!(target: "sluice::guest", module, "{message}"),
            Level::Warn => tracing::warn!(target: "sluice::guest", module, "{message}"),
            Level::Error => tracing::error!(target: "sluice::guest", module, "{message}"),
        }
    }
}

impl super::bindings::sluice::transform::types::Host for HostState {}

impl super::bindings::sluice::transform::tables::Host for HostState {
    fn lookup(&mut self, table: String, key: Vec<u8>) -> Result<Option<Vec<u8>>, String> {
        self.tables.lookup(&table, &key)
    }
}

impl state::Host for HostState {
    fn get(&mut self, key: Vec<u8>) -> Option<Vec<u8>> {
        self.task().get(&key)
    }
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.task().put(&key, value)
    }
    fn delete(&mut self, key: Vec<u8>) {
        self.task().delete(&key)
    }
    fn scan(
        &mut self,
        start: Vec<u8>,
        end: Option<Vec<u8>>,
        limit: u32,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.task().scan(&start, end.as_deref(), limit as usize)
    }
}

impl timers::Host for HostState {
    fn register(&mut self, key: Vec<u8>, at: i64) {
        self.task().register_timer(&key, at)
    }
    fn cancel(&mut self, key: Vec<u8>, at: i64) {
        self.task().cancel_timer(&key, at)
    }
    fn stream_time(&mut self) -> Option<i64> {
        self.task().stream_time()
    }
    fn observe(&mut self, event_time: i64) {
        self.task().observe(event_time)
    }
}

/// Transforms get no clock: a record's own timestamp is the time that matters, and replays must
/// give the same outputs.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Keeps the last [`StderrTail::KEEP`] bytes a guest wrote to standard error. Writes never fail,
/// so a chatty guest cannot make `eprintln!` panic.
#[derive(Clone, Default)]
struct StderrTail(Arc<Mutex<Vec<u8>>>);

impl StderrTail {
    const KEEP: usize = 2048;

    fn append(&self, bytes: &[u8]) {
        let mut tail = self.0.lock().unwrap();
        tail.extend_from_slice(bytes);
        if tail.len() > Self::KEEP {
            let cut = tail.len() - Self::KEEP;
            tail.drain(..cut);
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .trim()
            .to_string()
    }
}

impl IsTerminal for StderrTail {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StderrTail {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for StderrTail {
    async fn ready(&mut self) {}
}

impl OutputStream for StderrTail {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for StderrTail {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.append(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    /// Collects what a `fmt` subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    #[test]
    fn guest_log_lines_keep_their_level_and_are_cut_at_4096_characters() {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .without_time()
            .finish();
        let mut state = HostState::new("tz".to_string(), 1 << 20, Tables::default(), None);
        let levels = [
            (Level::Trace, "TRACE"),
            (Level::Debug, "DEBUG"),
            (Level::Info, "INFO"),
            (Level::Warn, "WARN"),
            (Level::Error, "ERROR"),
        ];
        tracing::subscriber::with_default(subscriber, || {
            for (level, name) in levels {
                log::Host::log(&mut state, level, format!("at {name}"));
            }
            log::Host::log(&mut state, Level::Info, "é".repeat(5000));
        });

        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6, "{text}");
        for (line, (_, name)) in lines.iter().zip(levels) {
            assert!(line.trim_start().starts_with(name), "{line}");
            assert!(
                line.contains(&format!("sluice::guest: at {name}")),
                "{line}"
            );
            assert!(line.contains("tz"), "{line}");
        }
        assert!(lines[5].contains(&"é".repeat(4096)));
        assert!(!lines[5].contains(&"é".repeat(4097)));
    }
}
