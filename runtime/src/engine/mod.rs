//! The Wasm engine: loads transform components, checks them against the contract, and runs them
//! in sandboxed instances with a memory cap and a CPU budget per batch.
//!
//! Compiling a component is slow (milliseconds to seconds) and happens once per module, off the
//! hot path; each partition worker then owns one long-lived [`Instance`] and calls it with
//! batches.

mod batch;
mod host;
mod instance;
pub mod state;

pub use batch::{InputBatch, InputBatchBuilder, InputRef, OutputBatch, OutputRef, bytes_json};
pub use instance::{Failure, FailureKind, Instance, InstantiateError, Processed};

use crate::tables::Tables;
use host::HostState;
use sha2::{Digest, Sha256};
use state::SharedTask;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::{Component, Linker, types::ComponentItem};

/// Host bindings for the `sluice:transform` world: the single place `bindgen!` runs.
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "transformer",
    });
}

/// Host bindings for the `stateful-transformer` world: its `state` and `timers` imports and its
/// `stateful` export; what it shares with `transformer` comes from [`bindings`].
pub(crate) mod stateful_bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "stateful-transformer",
        with: {
            "sluice:transform/types": super::bindings::sluice::transform::types,
            "sluice:transform/log": super::bindings::sluice::transform::log,
            "sluice:transform/tables": super::bindings::sluice::transform::tables,
        },
    });
}

/// Host bindings for the `columnar-parts` world: the `columnar` export that components may
/// offer beside `transform`.
pub(crate) mod columnar_bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "columnar-parts",
        with: {
            "sluice:transform/types": super::bindings::sluice::transform::types,
        },
    });
}

/// The contract's package and version this runtime implements.
pub const CONTRACT: &str = "sluice:transform@0.1.0";
/// The interface a transform must export, with its version.
pub const EXPORT: &str = "sluice:transform/transform@0.1.0";
/// The interface a stateful transform exports beside [`EXPORT`].
pub const STATEFUL_EXPORT: &str = "sluice:transform/stateful@0.1.0";
/// The interface a transform may export beside [`EXPORT`] to take its batches in columns.
pub const COLUMNAR_EXPORT: &str = "sluice:transform/columnar@0.1.0";

/// Resource limits applied to every instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest linear memory an instance may grow to, in bytes.
    pub memory_bytes: usize,
    /// Longest a single call (`init`, or `process` for one batch) may run.
    pub cpu_budget: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            cpu_budget: Duration::from_secs(2),
        }
    }
}

/// How often the epoch advances: the resolution of the CPU budget.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Why a file could not be loaded as a transform. Each message says what is wrong and, where
/// it can, what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bytes are not WebAssembly at all.
    #[error("not a WebAssembly file: it should start with the bytes \\0asm, but starts with {0:?}")]
    NotWasm(String),
    /// A core module, which predates the component model.
    #[error(
        "this is a core WebAssembly module, not a component: build the transform with \
         `cargo build --target wasm32-wasip2` and sluice-sdk"
    )]
    CoreModule,
    /// WebAssembly, but not a layout wasmtime understands.
    #[error("not a valid WebAssembly component: {0}")]
    Invalid(String),
    /// A component for another version of the contract.
    #[error(
        "the component targets {found}, but this runtime implements {CONTRACT}; rebuild it against sluice-sdk {expected_sdk}"
    )]
    WrongVersion {
        /// The export found, with its version.
        found: String,
        /// The SDK version to rebuild with.
        expected_sdk: &'static str,
    },
    /// A component for some other world.
    #[error(
        "the component does not export `{EXPORT}`, so it is not a Sluice transform (it exports: {exports}); \
         build it with sluice-sdk: `sluice_sdk::export!` in Rust, `python -m sluice_sdk build` in Python, \
         `sluice-ts build` in TypeScript"
    )]
    WrongWorld {
        /// What it exports instead, comma-separated.
        exports: String,
    },
    /// It imports something the host does not grant.
    #[error("the component imports {0}, which Sluice does not grant to transforms")]
    UnsupportedImport(String),
    /// It imports a granted interface with other types than the host's (another version).
    #[error("an import of the component does not match what Sluice grants: {0}")]
    MismatchedImport(String),
    /// It keeps state or sets timers but cannot be told that timers fired.
    #[error(
        "the component imports `state` or `timers` but does not export `{STATEFUL_EXPORT}`: build it with sluice-sdk and `sluice_sdk::export_stateful!`"
    )]
    NotStateful,
    /// An export exists but its functions have other types.
    #[error("the component's `{export}` export does not match the contract: {message}")]
    BadExport {
        /// The export, with its version.
        export: &'static str,
        /// What does not match.
        message: String,
    },
}

/// A compiled, validated transform, cheap to clone and to instantiate.
#[derive(Clone)]
pub struct Module {
    pub(crate) pre: bindings::TransformerPre<HostState>,
    /// Hex SHA-256 of the component's bytes.
    pub sha256: String,
    /// Size of the component's bytes.
    pub size: usize,
    /// Names of the component's exports, e.g. `sluice:transform/transform@0.1.0`.
    pub exports: Vec<String>,
    /// Where its `columnar` export is, if it has one.
    pub(crate) columnar:
        Option<columnar_bindings::exports::sluice::transform::columnar::GuestIndices>,
    /// For a stateful transform: where its `stateful` export is.
    pub(crate) stateful:
        Option<stateful_bindings::exports::sluice::transform::stateful::GuestIndices>,
}

impl Module {
    /// Whether it takes its batches in columns (exports `columnar`).
    pub fn is_columnar(&self) -> bool {
        self.columnar.is_some()
    }

    /// Whether it is a stateful transform (keeps state, sets timers).
    pub fn is_stateful(&self) -> bool {
        self.stateful.is_some()
    }
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("sha256", &self.sha256)
            .field("size", &self.size)
            .finish()
    }
}

/// Compiles and instantiates transforms. One per process; clones share everything.
#[derive(Clone)]
pub struct Engine {
    engine: wasmtime::Engine,
    linker: Arc<Linker<HostState>>,
    limits: Limits,
    /// Where compiled components are kept across restarts, if anywhere.
    compiled_cache: Option<Arc<CompiledCache>>,
    _ticker: Arc<EpochTicker>,
}

impl Engine {
    /// An engine whose instances get `limits`.
    pub fn new(limits: Limits) -> anyhow::Result<Self> {
        let mut config = wasmtime::Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            // Concurrency support (component-model async) roughly triples the cost of a call and
            // transforms are synchronous.
            .concurrency_support(false)
            .max_wasm_stack(1 << 20);
        // `SLUICE_WASM_PROFILER=perfmap` writes /tmp/perf-PID.map so that `perf` names the
        // functions of transforms.
        if std::env::var("SLUICE_WASM_PROFILER").as_deref() == Ok("perfmap") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = wasmtime::Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        type Host = wasmtime::component::HasSelf<HostState>;
        bindings::Transformer::add_to_linker::<_, Host>(&mut linker, |s| s)?;
        stateful_bindings::sluice::transform::state::add_to_linker::<_, Host>(&mut linker, |s| s)?;
        stateful_bindings::sluice::transform::timers::add_to_linker::<_, Host>(&mut linker, |s| s)?;
        let ticker = EpochTicker::start(&engine);
        Ok(Engine {
            engine,
            linker: Arc::new(linker),
            limits,
            compiled_cache: None,
            _ticker: ticker,
        })
    }

    /// The same engine, keeping the machine code of every component it compiles in `dir`, so
    /// that a component seen before (by any process with the same wasmtime and settings) starts
    /// without compiling. `dir` must be as trusted as the binary: its files are loaded as code.
    pub fn with_compiled_cache(mut self, dir: PathBuf) -> Self {
        let key = {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::hash::DefaultHasher::new();
            self.engine
                .precompile_compatibility_hash()
                .hash(&mut hasher);
            format!("{:016x}", hasher.finish())
        };
        self.compiled_cache = Some(Arc::new(CompiledCache { dir, key }));
        self
    }

    /// The limits every instance gets.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Validates and compiles a transform component.
    pub fn load(&self, bytes: &[u8]) -> Result<Module, LoadError> {
        check_header(bytes)?;
        let sha256 = hex_sha256(bytes);
        let cached = (self.compiled_cache.as_ref()).and_then(|c| c.get(&self.engine, &sha256));
        let component = match cached {
            Some(component) => component,
            None => {
                let component = Component::new(&self.engine, bytes)
                    .map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
                if let Some(cache) = &self.compiled_cache {
                    cache.put(&sha256, &component);
                }
                component
            }
        };
        let ty = component.component_type();
        if let Some((name, _)) = ty.imports(&self.engine).find(|(name, _)| !is_granted(name)) {
            // A component for another contract version imports that version's interfaces:
            // its export says which version it targets.
            if name.starts_with("sluice:transform/") {
                self.check_exports(&component)?;
            }
            return Err(LoadError::UnsupportedImport(format!("`{name}`")));
        }
        let exports = self.check_exports(&component)?;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::MismatchedImport(format!("{e:#}")))?;
        let bad_export = |export| {
            move |e: wasmtime::Error| LoadError::BadExport {
                export,
                message: format!("{e:#}"),
            }
        };
        let columnar = (exports.iter().any(|e| e == COLUMNAR_EXPORT))
            .then(|| {
                columnar_bindings::exports::sluice::transform::columnar::GuestIndices::new(
                    &instance_pre,
                )
            })
            .transpose()
            .map_err(bad_export(COLUMNAR_EXPORT))?;
        let stateful = if exports.iter().any(|e| e == STATEFUL_EXPORT) {
            let indices =
                stateful_bindings::exports::sluice::transform::stateful::GuestIndices::new(
                    &instance_pre,
                )
                .map_err(bad_export(STATEFUL_EXPORT))?;
            Some(indices)
        } else if ty
            .imports(&self.engine)
            .any(|(name, _)| is_stateful_import(name))
        {
            return Err(LoadError::NotStateful);
        } else {
            None
        };
        let pre = bindings::TransformerPre::new(instance_pre).map_err(bad_export(EXPORT))?;
        Ok(Module {
            pre,
            sha256,
            size: bytes.len(),
            exports,
            columnar,
            stateful,
        })
    }

    /// Checks that `component` exports the contract's interface; returns the names it exports.
    fn check_exports(&self, component: &Component) -> Result<Vec<String>, LoadError> {
        let ty = component.component_type();
        let exports: Vec<(String, bool)> = ty
            .exports(&self.engine)
            .map(|(name, item)| {
                (
                    name.to_string(),
                    matches!(item.ty, ComponentItem::ComponentInstance(_)),
                )
            })
            .collect();
        if exports
            .iter()
            .any(|(name, is_instance)| name == EXPORT && *is_instance)
        {
            return Ok(exports.into_iter().map(|(name, _)| name).collect());
        }
        if let Some((found, _)) = exports
            .iter()
            .find(|(name, _)| name.starts_with("sluice:transform/transform@"))
        {
            return Err(LoadError::WrongVersion {
                found: found.clone(),
                expected_sdk: env!("CARGO_PKG_VERSION"),
            });
        }
        let names: Vec<&str> = exports.iter().map(|(n, _)| n.as_str()).collect();
        Err(LoadError::WrongWorld {
            exports: if names.is_empty() {
                "nothing".into()
            } else {
                names.join(", ")
            },
        })
    }

    /// Creates an instance of `module`, granted `tables`, and calls its `init` with `config`.
    /// A stateful transform's state is kept in memory.
    pub fn instantiate(
        &self,
        module: &Module,
        label: &str,
        config: &[(String, String)],
        tables: &Tables,
    ) -> Result<Instance, InstantiateError> {
        self.instantiate_with_task(module, label, config, tables, None)
    }

    /// [`Engine::instantiate`], with a stateful transform's state in `task` (ignored for a
    /// stateless one).
    pub fn instantiate_with_task(
        &self,
        module: &Module,
        label: &str,
        config: &[(String, String)],
        tables: &Tables,
        task: Option<SharedTask>,
    ) -> Result<Instance, InstantiateError> {
        Instance::new(
            self.clone(),
            module.clone(),
            label.to_string(),
            config.to_vec(),
            tables.clone(),
            task,
        )
    }

    pub(crate) fn wasmtime(&self) -> &wasmtime::Engine {
        &self.engine
    }
}

/// The WASI 0.2 packages the host links, in full but sandboxed (see `host`): no files, sockets,
/// environment or clock. Not `wasi:http`.
const GRANTED_WASI: [&str; 6] = [
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:filesystem/",
    "wasi:io/",
    "wasi:random/",
    "wasi:sockets/",
];

/// Whether the host links `import`.
fn is_granted(import: &str) -> bool {
    GRANTED_WASI
        .iter()
        .any(|package| import.starts_with(package))
        || ["log", "tables", "types"]
            .iter()
            .any(|i| import == format!("sluice:transform/{i}@0.1.0"))
        || is_stateful_import(import)
}

/// Whether `import` is granted to stateful transforms only.
fn is_stateful_import(import: &str) -> bool {
    ["state", "timers"]
        .iter()
        .any(|i| import == format!("sluice:transform/{i}@0.1.0"))
}

/// Whether `bytes` start as a component does (enough to tell an upload's first chunk).
pub(crate) fn check_header(bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        let start = &bytes[..bytes.len().min(8)];
        return Err(LoadError::NotWasm(
            String::from_utf8_lossy(start).into_owned(),
        ));
    }
    // Bytes 4..8 are the version (core modules: 1) and the layer (components: 1).
    if bytes[4..8] == [1, 0, 0, 0] {
        return Err(LoadError::CoreModule);
    }
    Ok(())
}

pub(crate) fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Compiled components on disk, one file per component and engine build:
/// `<sha256 of the component>-<engine compatibility hash>.cwasm`.
struct CompiledCache {
    dir: PathBuf,
    /// Hash of what makes compiled code usable by this engine (wasmtime version, target,
    /// settings): another build's files are never looked at.
    key: String,
}

/// Most compiled files kept; the least recently used go first.
const COMPILED_CACHE_FILES: usize = 64;

impl CompiledCache {
    fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.key))
    }

    /// The component compiled from bytes with hash `sha256`, if a file holds it.
    fn get(&self, engine: &wasmtime::Engine, sha256: &str) -> Option<Component> {
        let path = self.path(sha256);
        if !path.exists() {
            return None;
        }
        // SAFETY: the file was written by `put` from `Component::serialize` of this engine
        // build (its name carries the compatibility hash, and wasmtime checks it again), and
        // is replaced only by rename, never changed in place.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => {
                // Its modification time orders the files for pruning.
                let _ = std::fs::File::open(&path)
                    .and_then(|f| f.set_modified(std::time::SystemTime::now()));
                Some(component)
            }
            Err(error) => {
                tracing::warn!(path = %path.display(), error = %format!("{error:#}"), "compiled_cache_unreadable: compiling again");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Keeps `component`'s machine code; a failure only costs a compile next time.
    fn put(&self, sha256: &str, component: &Component) {
        let written = (|| -> std::io::Result<()> {
            let bytes = component.serialize().map_err(std::io::Error::other)?;
            std::fs::create_dir_all(&self.dir)?;
            let mut file = tempfile::NamedTempFile::new_in(&self.dir)?;
            std::io::Write::write_all(&mut file, &bytes)?;
            file.persist(self.path(sha256)).map_err(|e| e.error)?;
            prune(&self.dir, COMPILED_CACHE_FILES)
        })();
        if let Err(error) = written {
            tracing::warn!(dir = %self.dir.display(), %error, "compiled_cache_write_failed");
        }
    }
}

/// Removes the least recently used `.cwasm` files of `dir` beyond the `keep` newest.
fn prune(dir: &Path, keep: usize) -> std::io::Result<()> {
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let path = entry.path();
            (path.extension()? == "cwasm").then_some(())?;
            Some((entry.metadata().ok()?.modified().ok()?, path))
        })
        .collect();
    if files.len() > keep {
        files.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
        for (_, path) in files.drain(keep..) {
            let _ = std::fs::remove_file(path);
        }
    }
    Ok(())
}

/// Advances the engine's epoch every [`EPOCH_TICK`], so that `set_epoch_deadline` enforces CPU
/// budgets. Stops when the engine is dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engine: &wasmtime::Engine) -> Arc<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_stop, engine) = (stop.clone(), engine.weak());
        std::thread::Builder::new()
            .name("sluice-epoch".into())
            .spawn(move || {
                while !thread_stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match engine.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .expect("spawn epoch thread");
        Arc::new(EpochTicker { stop })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Ticks of the epoch that make up `budget`, at least one.
fn budget_ticks(budget: Duration) -> u64 {
    (budget.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
}

#[cfg(test)]
pub(crate) mod tests;
