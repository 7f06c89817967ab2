//! A pipeline: consume input partitions, run each partition's records through the chain of
//! transforms in batches, write the outputs, commit. A record's path, one file each:
//!
//! - consumed in [`source`]: one poll thread per pipeline packs records into per-partition
//!   batches (bounded by records, bytes and time) and follows the group's assignment;
//! - transformed in [`worker`]: one thread per assigned partition runs its batches through its
//!   own instances of the [`chain`];
//! - produced in [`sink`]: outputs and dead letters go to Kafka, and a ledger of acknowledged
//!   batches says which input offsets may be committed;
//! - committed in [`source`] again: it stores the committable offsets with the consumer, whose
//!   auto-commit commits them; on revocation and on stop, workers drain and it commits
//!   synchronously before letting go. Exactly-once, the [`committer`] thread commits the sink's
//!   transactions with the offsets they cover, one slot while the workers write into the other.

pub mod chain;
pub mod committer;
pub mod metrics;
pub mod sink;
pub mod source;
pub mod state_store;
pub mod table_loader;
pub mod worker;

use crate::config::{Config, Guarantee, PipelineConfig};
use crate::engine::{Engine, InstantiateError, LoadError};
use crate::tables::{Table, Tables};
use chain::{Deployed, StageSpec};
use metrics::{PipelineMetrics, Status};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

/// Why a pipeline could not start.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A Kafka client could not be created or subscribed.
    #[error("pipeline `{pipeline}`: Kafka client")]
    Kafka {
        /// The pipeline.
        pipeline: String,
        /// What the client said.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// A transform's file cannot be read.
    #[error("{at}: cannot read it")]
    ReadModule {
        /// Where it is declared: `pipeline[0] (unify).transform[1].module `x.wasm``.
        at: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A transform's file name is not a module name (the module is stored under it).
    #[error("{at}")]
    ModuleName {
        /// Where it is declared.
        at: String,
        /// What is wrong with the name.
        #[source]
        source: crate::control::store::StoreError,
    },
    /// A transform's file is not a transform Sluice can run.
    #[error("{at}")]
    LoadModule {
        /// Where it is declared.
        at: String,
        /// What is wrong with it.
        #[source]
        source: LoadError,
    },
    /// A pipeline with a stateful transform cannot keep its state.
    #[error("pipeline `{pipeline}`: stateful transforms")]
    State {
        /// The pipeline.
        pipeline: String,
        /// Why.
        #[source]
        source: state_store::StateError,
    },
    /// A transform does not start with its configuration.
    #[error("{at}")]
    StartModule {
        /// Where it is declared.
        at: String,
        /// Why it does not start.
        #[source]
        source: InstantiateError,
    },
    /// A lookup table could not be loaded from its topic.
    #[error("pipeline `{pipeline}`")]
    Table {
        /// The pipeline.
        pipeline: String,
        /// What went wrong.
        #[source]
        source: Box<table_loader::TableLoadError>,
    },
    /// The producer could not start.
    #[error("pipeline `{pipeline}`")]
    Sink {
        /// The pipeline.
        pipeline: String,
        /// Why.
        #[source]
        source: Box<sink::SinkError>,
    },
    /// A thread could not be started.
    #[error("cannot start a thread")]
    Thread(#[from] std::io::Error),
}

/// A pipeline as the control plane and the API see and change it; shared with its threads.
#[derive(Debug)]
pub struct Pipeline {
    /// The pipeline's name.
    pub name: String,
    /// The topics it consumes.
    pub inputs: Vec<String>,
    /// The topics it may write to; the first is the default.
    pub outputs: Arc<Vec<String>>,
    /// Where failed records go.
    pub dead_letter: Option<String>,
    /// What it promises about its outputs.
    pub guarantee: Guarantee,
    /// Counters and status.
    pub metrics: Arc<PipelineMetrics>,
    /// The lookup tables the transforms may read.
    pub tables: Tables,
    /// The transform chain, replaced whole by a deploy.
    pub deployed: Deployed,
    /// Set to stop consuming without stopping the pipeline; cleared to go on.
    pub paused: AtomicBool,
    /// Raised by the first error the pipeline cannot go on after; its threads then stop.
    failed: AtomicBool,
}

impl Pipeline {
    /// A pipeline as `config` describes it, running `stages`.
    pub fn new(config: &PipelineConfig, tables: Tables, stages: Vec<Arc<StageSpec>>) -> Self {
        Pipeline {
            name: config.name.clone(),
            inputs: config.inputs.clone(),
            outputs: Arc::new(config.outputs.clone()),
            dead_letter: config.dead_letter.clone(),
            guarantee: config.guarantee,
            metrics: Arc::new(PipelineMetrics::new(
                &config.name,
                &config.inputs,
                &config.outputs,
            )),
            tables,
            deployed: Deployed::new(stages),
            paused: AtomicBool::new(false),
            failed: AtomicBool::new(false),
        }
    }

    /// Stops the pipeline because of `error`, which its status then shows (the first error
    /// is the one kept).
    pub fn fail(&self, error: String) {
        self.metrics.set_status(Status::Failed(error));
        self.failed.store(true, Relaxed);
    }

    /// Whether the pipeline failed and is stopping or stopped.
    pub fn has_failed(&self) -> bool {
        self.failed.load(Relaxed)
    }

    /// A partition worker died (a bug: workers turn every error they expect into a status):
    /// logs it, counts it, and stops the pipeline cleanly, so that readiness fails and the
    /// supervisor restarts the process. What the worker had not written is not committed.
    pub fn worker_died(&self, topic: &str, partition: i32, reason: &str) {
        tracing::error!(pipeline = %self.name, topic, partition, reason, event = "worker_died",
            "a partition worker died; stopping the pipeline");
        self.metrics.worker_deaths.fetch_add(1, Relaxed);
        self.fail(format!(
            "the worker of partition {topic}/{partition} died ({reason}); the pipeline stopped, restart the process"
        ));
    }
}

/// The base of the `transactional.id`s of `pipeline`'s producers in member `member` (the sink's
/// two slots add `-0` and `-1`): stable across the member's restarts, so that a restarted
/// member fences its crashed predecessor and aborts its open transactions at once, and unique
/// between members, which would otherwise fence each other.
pub fn transactional_id(pipeline: &PipelineConfig, member: &str) -> String {
    format!("{}-{member}", pipeline.group())
}

/// `error` and its causes, `: `-separated, for a status a person reads.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text = format!("{text}: {e}");
        cause = e.source();
    }
    text
}

/// A started pipeline.
pub struct RunningPipeline {
    /// What the control plane sees and changes.
    pub pipeline: Arc<Pipeline>,
    thread: std::thread::JoinHandle<()>,
    /// Keep the tables current while the pipeline runs; stopped when it is dropped.
    _loaders: Vec<table_loader::TableLoader>,
}

impl RunningPipeline {
    /// Whether its poll thread has ended (stopped or failed).
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits for its poll thread to end.
    pub fn join(self) {
        let _ = self.thread.join();
    }
}

/// The tables `pipeline` declares, empty: enough to check that its transforms start.
pub fn declared_tables(pipeline: &PipelineConfig) -> Tables {
    Tables::new(
        pipeline
            .table
            .iter()
            .map(|t| Arc::new(Table::new(&t.name, t.max_mb as usize * 1024 * 1024))),
    )
}

/// A transform the configuration file names, read from disk.
pub struct FileTransform {
    /// Where it is declared, for messages: `pipeline[0] (unify).transform[1].module `x.wasm``.
    pub at: String,
    /// Its name: the file name without `.wasm`.
    pub name: String,
    /// The component's bytes.
    pub bytes: Vec<u8>,
    /// Configuration for its `init`.
    pub config: Vec<(String, String)>,
}

/// Reads every `.wasm` file that `pipeline` (number `index` in the file) names; stored modules
/// are the control plane's to find.
pub fn read_transforms(
    index: usize,
    pipeline: &PipelineConfig,
) -> Result<Vec<FileTransform>, PipelineError> {
    let mut transforms = Vec::new();
    for (t, transform) in pipeline.transform.iter().enumerate() {
        if !transform.is_file() {
            continue;
        }
        let at = format!(
            "pipeline[{index}] ({}).transform[{t}].module `{}`",
            pipeline.name, transform.module
        );
        let bytes = match std::fs::read(&transform.module) {
            Ok(bytes) => bytes,
            Err(source) => return Err(PipelineError::ReadModule { at, source }),
        };
        let name = Path::new(&transform.module)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Err(source) = crate::control::store::check_name(&name) {
            return Err(PipelineError::ModuleName { at, source });
        }
        let config = transform
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect();
        transforms.push(FileTransform {
            at,
            name,
            bytes,
            config,
        });
    }
    Ok(transforms)
}

/// Loads every `.wasm` file of `pipeline` and checks that it starts with its configuration, so
/// that mistakes surface with the key that holds them.
pub fn load_stages(
    engine: &Engine,
    index: usize,
    pipeline: &PipelineConfig,
    tables: &Tables,
) -> Result<Vec<Arc<StageSpec>>, PipelineError> {
    let mut stages = Vec::new();
    for FileTransform {
        at,
        name,
        bytes,
        config,
    } in read_transforms(index, pipeline)?
    {
        let module = match engine.load(&bytes) {
            Ok(module) => module,
            Err(source) => return Err(PipelineError::LoadModule { at, source }),
        };
        if let Err(source) = engine.instantiate(&module, &name, &config, tables) {
            return Err(PipelineError::StartModule { at, source });
        }
        stages.push(Arc::new(StageSpec {
            name,
            version: 0,
            module,
            config,
        }));
    }
    Ok(stages)
}

/// Starts `shared`, which [`Pipeline::new`] made from `pipeline` with its [`declared_tables`]:
/// fills its tables from their topics (waiting until they have caught up), then consumes. `stop`
/// asks it to drain and stop. `member` names this process among the group's members, stably
/// across its restarts: the transactional ids of exactly-once pipelines are made from it.
/// Stateful transforms keep their state under `state_dir`.
pub fn start(
    config: &Config,
    pipeline: &PipelineConfig,
    engine: &Engine,
    state_dir: &Path,
    member: &str,
    shared: Arc<Pipeline>,
    stop: Arc<AtomicBool>,
) -> Result<RunningPipeline, PipelineError> {
    let table_error = |source| PipelineError::Table {
        pipeline: pipeline.name.clone(),
        source: Box::new(source),
    };
    let mut loaders = Vec::new();
    for declared in &pipeline.table {
        let table = (shared.tables.iter())
            .find(|t| t.name == declared.name)
            .expect("the pipeline holds its declared tables")
            .clone();
        loaders.push(
            table_loader::TableLoader::start(&config.kafka, declared, &pipeline.name, table)
                .map_err(table_error)?,
        );
    }
    let transactional_id =
        (pipeline.guarantee == Guarantee::ExactlyOnce).then(|| transactional_id(pipeline, member));
    let sink = sink::Sink::new(&config.kafka, pipeline, transactional_id.as_deref()).map_err(
        |source| PipelineError::Sink {
            pipeline: pipeline.name.clone(),
            source: Box::new(source),
        },
    )?;
    let stateful = (shared.deployed.current().1.iter()).any(|s| s.module.is_stateful());
    let state =
        state_store::StateStores::new(state_dir, &config.kafka, pipeline, shared.metrics.clone());
    if stateful {
        state
            .check_inputs()
            .map_err(|source| PipelineError::State {
                pipeline: pipeline.name.clone(),
                source,
            })?;
    }
    let workers = Arc::new(worker::WorkerShared {
        pipeline: shared.clone(),
        engine: engine.clone(),
        state,
        sink,
        on_error: pipeline.on_error,
        generation: Default::default(),
        transactions: Default::default(),
        idle_timeout: pipeline.idle_timeout_ms.map(Duration::from_millis),
    });
    let settings = source::SourceSettings {
        batch: source::BatchLimits {
            records: pipeline.batch_size,
            bytes: pipeline.batch_max_bytes(&config.limits),
            linger: Duration::from_millis(pipeline.linger_ms),
        },
        max_records_per_second: pipeline.max_records_per_second,
        drain_timeout: Duration::from_millis(config.shutdown_timeout_ms),
        commit_interval: Duration::from_millis(pipeline.commit_interval_ms),
    };
    let (go, wait) = std::sync::mpsc::channel();
    let thread = source::start(&config.kafka, pipeline, workers, settings, stop, wait)?;
    // Tables are read from their beginning before the pipeline processes anything, while its
    // consumer joins the group (`make bench-peers`: start-up 0.1-0.2 s shorter with a table).
    for loader in &loaders {
        loader
            .wait_ready(Duration::from_secs(120))
            .map_err(table_error)?;
    }
    let _ = go.send(());
    Ok(RunningPipeline {
        pipeline: shared,
        thread,
        _loaders: loaders,
    })
}
