//! The Kafka pipeline: consume input partitions, run each partition's records through the chain
//! in batches, write the outputs, commit.
//!
//! Threads, per pipeline: one poll thread owns the consumer; it packs each record straight into
//! its partition's next batch and hands full (or lingering) batches to that partition's worker
//! thread (see [`worker`]). Workers mark offsets committable once outputs are acknowledged; the
//! poll thread stores them with the consumer, whose auto-commit commits them. On revocation and
//! on stop, workers drain and the poll thread commits synchronously before letting go.

pub mod chain;
pub mod kafka;
pub mod metrics;
pub mod table_loader;
pub mod worker;

use crate::config::{Config, OnError, PipelineConfig};
use crate::engine::{Engine, InputBatchBuilder};
use crate::tables::{Table, Tables};
use chain::{Chain, Deployed, StageSpec};
use kafka::AckContext;
use metrics::{PipelineMetrics, Status};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::ThreadedProducer;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, TopicPartitionList};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use worker::WorkerHandle;

/// What the control plane and the API see of a pipeline; shared with its threads.
#[derive(Debug)]
pub struct PipelineShared {
    /// The pipeline's name.
    pub name: String,
    /// The topics it consumes.
    pub inputs: Vec<String>,
    /// The topics it may write to; the first is the default.
    pub outputs: Arc<Vec<String>>,
    /// Where failed records go.
    pub dead_letter: Option<String>,
    /// Counters and status.
    pub metrics: Arc<PipelineMetrics>,
    /// The lookup tables the transforms may read.
    pub tables: Tables,
    /// The transform chain, replaced whole by a deploy.
    pub deployed: Deployed,
    /// Set to stop consuming without stopping the pipeline; cleared to go on.
    pub paused: AtomicBool,
}

impl PipelineShared {
    /// A pipeline as `config` describes it, running `stages`.
    pub fn new(config: &PipelineConfig, tables: Tables, stages: Vec<Arc<StageSpec>>) -> Self {
        PipelineShared {
            name: config.name.clone(),
            inputs: config.inputs.clone(),
            outputs: Arc::new(config.outputs.clone()),
            dead_letter: config.dead_letter.clone(),
            metrics: Arc::new(PipelineMetrics::new(
                &config.name,
                &config.inputs,
                &config.outputs,
            )),
            tables,
            deployed: Deployed::new(stages),
            paused: AtomicBool::new(false),
        }
    }
}

/// Everything a pipeline's threads share.
pub struct PipelineSpec {
    /// What the control plane sees and changes.
    pub shared: Arc<PipelineShared>,
    /// What to do with failed records without a dead-letter topic.
    pub on_error: OnError,
    /// Most records per batch.
    pub batch_size: usize,
    /// Longest a record waits for its batch to fill.
    pub linger: Duration,
    /// Records per second cap.
    pub max_records_per_second: Option<u64>,
    /// The engine that runs the transforms.
    pub engine: Engine,
    /// The producer for outputs and dead letters.
    pub producer: ThreadedProducer<AckContext>,
    /// Set by a worker that cannot go on; the poll thread then stops the pipeline.
    pub failed: AtomicBool,
}

/// A running pipeline.
pub struct Pipeline {
    /// What the control plane sees and changes.
    pub shared: Arc<PipelineShared>,
    thread: std::thread::JoinHandle<()>,
    /// Keep the tables current while the pipeline runs; stopped when it is dropped.
    _loaders: Vec<table_loader::TableLoader>,
}

impl Pipeline {
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

/// Reads every transform that `pipeline` (number `index` in the file) names.
pub fn read_transforms(
    index: usize,
    pipeline: &PipelineConfig,
) -> anyhow::Result<Vec<FileTransform>> {
    let mut transforms = Vec::new();
    for (t, transform) in pipeline.transform.iter().enumerate() {
        let at = format!(
            "pipeline[{index}] ({}).transform[{t}].module `{}`",
            pipeline.name,
            transform.module.display()
        );
        let bytes = std::fs::read(&transform.module)
            .map_err(|e| anyhow::anyhow!("{at}: cannot read it: {e}"))?;
        let name = transform
            .module
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
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

/// Loads every transform of `pipeline` from its file and checks that it starts with its
/// configuration, so that mistakes surface at start-up with the key that holds them.
pub fn load_stages(
    engine: &Engine,
    index: usize,
    pipeline: &PipelineConfig,
    tables: &Tables,
) -> anyhow::Result<Vec<Arc<StageSpec>>> {
    let mut stages = Vec::new();
    for FileTransform {
        at,
        name,
        bytes,
        config,
    } in read_transforms(index, pipeline)?
    {
        let module = engine
            .load(&bytes)
            .map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
        engine
            .instantiate(&module, &name, &config, tables)
            .map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
        stages.push(Arc::new(StageSpec {
            name,
            version: 0,
            module,
            config,
        }));
    }
    Ok(stages)
}

/// Starts every pipeline of `config`, each running the stages `stages_for` chooses for it
/// (given its index, configuration and tables). `stop` asks them all to drain and stop.
pub fn start_all(
    config: &Config,
    engine: &Engine,
    stop: Arc<AtomicBool>,
    mut stages_for: impl FnMut(usize, &PipelineConfig, &Tables) -> anyhow::Result<Vec<Arc<StageSpec>>>,
) -> anyhow::Result<Vec<Pipeline>> {
    let mut pipelines = Vec::new();
    for (index, pipeline) in config.pipeline.iter().enumerate() {
        let loaders = pipeline
            .table
            .iter()
            .map(|t| table_loader::TableLoader::start(&config.kafka, t, &pipeline.name))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let tables = Tables::new(loaders.iter().map(|l| l.table.clone()));
        let stages = stages_for(index, pipeline, &tables)?;
        // Tables are read from their beginning before the pipeline processes anything.
        for loader in &loaders {
            loader
                .wait_ready(Duration::from_secs(120))
                .map_err(|e| anyhow::anyhow!("pipeline[{index}] ({}): {e}", pipeline.name))?;
        }
        pipelines.push(start(
            config,
            pipeline,
            engine,
            stages,
            tables,
            loaders,
            stop.clone(),
        )?);
    }
    Ok(pipelines)
}

fn start(
    config: &Config,
    pipeline: &PipelineConfig,
    engine: &Engine,
    stages: Vec<Arc<StageSpec>>,
    tables: Tables,
    loaders: Vec<table_loader::TableLoader>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Pipeline> {
    let at = |e: rdkafka::error::KafkaError| {
        anyhow::anyhow!("pipeline `{}`: Kafka client: {e}", pipeline.name)
    };
    let producer: ThreadedProducer<AckContext> = kafka::producer_config(&config.kafka, pipeline)
        .create_with_context(AckContext)
        .map_err(at)?;
    let shared = Arc::new(PipelineShared::new(pipeline, tables, stages));
    let spec = Arc::new(PipelineSpec {
        shared: shared.clone(),
        on_error: pipeline.on_error,
        batch_size: pipeline.batch_size,
        linger: Duration::from_millis(pipeline.linger_ms),
        max_records_per_second: pipeline.max_records_per_second,
        engine: engine.clone(),
        producer,
        failed: AtomicBool::new(false),
    });
    let partitions = Arc::new(Mutex::new(Partitions::default()));
    let context = PipelineContext {
        spec: spec.clone(),
        partitions: partitions.clone(),
    };
    let consumer: BaseConsumer<PipelineContext> = kafka::consumer_config(&config.kafka, pipeline)
        .create_with_context(context)
        .map_err(at)?;
    let inputs: Vec<&str> = shared.inputs.iter().map(String::as_str).collect();
    consumer.subscribe(&inputs).map_err(at)?;
    let thread = std::thread::Builder::new()
        .name(format!("sluice-poll-{}", pipeline.name))
        .spawn(move || {
            PollLoop {
                spec,
                consumer,
                partitions,
                stop,
            }
            .run()
        })?;
    Ok(Pipeline {
        shared,
        thread,
        _loaders: loaders,
    })
}

/// Per assigned partition: the batch being filled and the worker that will run it.
struct Partition {
    topic: String,
    partition: i32,
    batch: InputBatchBuilder,
    first_at: Option<Instant>,
    worker: WorkerHandle,
}

/// The partitions a pipeline has, shared by its poll loop and its rebalance callbacks (which
/// run on the poll thread, inside `poll`).
#[derive(Default)]
struct Partitions {
    entries: Vec<Partition>,
    /// No pending batch started before this: until `linger` after it, no batch is due, and
    /// the per-record check skips the scan of every partition.
    oldest_pending: Option<Instant>,
}

impl Partitions {
    fn get_or_start(
        &mut self,
        spec: &Arc<PipelineSpec>,
        topic: &str,
        partition: i32,
    ) -> Result<&mut Partition, String> {
        let index = match self
            .entries
            .iter()
            .position(|e| e.partition == partition && e.topic == topic)
        {
            Some(index) => index,
            None => {
                let shared = &spec.shared;
                let chain = Chain::new(
                    &spec.engine,
                    &shared.deployed,
                    shared.outputs.clone(),
                    &shared.tables,
                )
                .map_err(|e| format!("cannot start the transforms for {topic}/{partition}: {e}"))?;
                let worker = worker::spawn(spec.clone(), chain, topic, partition)
                    .map_err(|e| format!("cannot start a worker thread: {e}"))?;
                tracing::info!(pipeline = %spec.shared.name, topic, partition, "partition assigned");
                self.entries.push(Partition {
                    topic: topic.to_string(),
                    partition,
                    batch: InputBatchBuilder::new(topic, partition),
                    first_at: None,
                    worker,
                });
                self.entries.len() - 1
            }
        };
        Ok(&mut self.entries[index])
    }

    /// Hands the partition's pending records to its worker.
    fn flush(entry: &mut Partition) {
        if entry.batch.is_empty() {
            return;
        }
        let full = std::mem::replace(
            &mut entry.batch,
            InputBatchBuilder::new(&entry.topic, entry.partition),
        );
        entry.first_at = None;
        // A worker only goes away after a drain, which removes its entry first.
        let _ = entry.worker.commands.send(worker::Command::Batch(full));
    }

    /// Notes that a batch began at `now` (a lower bound is enough: clocks only go forward).
    fn batch_started(&mut self, now: Instant) {
        self.oldest_pending.get_or_insert(now);
    }

    /// Flushes batches that have waited `linger`.
    fn flush_lingering(&mut self, now: Instant, linger: Duration) {
        if self
            .oldest_pending
            .is_none_or(|t| now.duration_since(t) < linger)
        {
            return;
        }
        for entry in &mut self.entries {
            if entry
                .first_at
                .is_some_and(|t| now.duration_since(t) >= linger)
            {
                Self::flush(entry);
            }
        }
        self.oldest_pending = self.entries.iter().filter_map(|e| e.first_at).min();
    }

    /// Stores newly committable offsets with the consumer.
    fn store_offsets<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) {
        for entry in &mut self.entries {
            let next = entry.worker.committable.load(Relaxed);
            if next > entry.worker.stored
                && store_offset(consumer, &entry.topic, entry.partition, next)
            {
                entry.worker.stored = next;
            }
        }
    }

    /// Drains the workers of the partitions `which` selects, stores their final offsets and
    /// forgets them.
    fn drain<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        which: impl Fn(&str, i32) -> bool,
    ) {
        let (mut drained, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.entries)
            .into_iter()
            .partition(|e| which(&e.topic, e.partition));
        self.entries = kept;
        // Hand every pending batch over first, so that the workers finish in parallel.
        drained.iter_mut().for_each(Self::flush);
        for entry in drained {
            let stored = entry.worker.stored;
            let next = entry.worker.drain(Duration::from_secs(60));
            if next > stored {
                store_offset(consumer, &entry.topic, entry.partition, next);
            }
        }
    }
}

/// Stores `next` as the offset to resume `topic`/`partition` from at the next commit.
fn store_offset<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
    next: i64,
) -> bool {
    // librdkafka stores (and later commits) the offset it is given plus one: give it the last
    // offset done, not the next one to read.
    match consumer.store_offset(topic, partition, next - 1) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(topic, partition, error = %e, "cannot store offset");
            false
        }
    }
}

/// Commits stored offsets now, e.g. before partitions are let go.
fn commit<C: ConsumerContext>(consumer: &BaseConsumer<C>, pipeline: &str) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => {}
        // Nothing stored since the last commit.
        Err(rdkafka::error::KafkaError::ConsumerCommit(
            rdkafka::types::RDKafkaErrorCode::NoOffset,
        )) => {}
        Err(e) => tracing::warn!(pipeline, error = %e, "cannot commit offsets"),
    }
}

/// The consumer's context: rebalances and statistics.
struct PipelineContext {
    spec: Arc<PipelineSpec>,
    partitions: Arc<Mutex<Partitions>>,
}

impl ClientContext for PipelineContext {
    fn stats(&self, statistics: Statistics) {
        let mut lag = self.spec.shared.metrics.lag.lock().unwrap();
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    lag.insert((topic.clone(), *partition), p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for PipelineContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let revoked = pairs(list);
            let mut partitions = self.partitions.lock().unwrap();
            partitions.drain(consumer, |topic, partition| {
                revoked.iter().any(|(t, p)| t == topic && *p == partition)
            });
            commit(consumer, &self.spec.shared.name);
            let mut lag = self.spec.shared.metrics.lag.lock().unwrap();
            lag.retain(|key, _| !revoked.contains(key));
            tracing::info!(pipeline = %self.spec.shared.name, partitions = revoked.len(), "partitions revoked after draining");
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let mut partitions = self.partitions.lock().unwrap();
                for (topic, partition) in pairs(list) {
                    if let Err(error) = partitions.get_or_start(&self.spec, &topic, partition) {
                        self.spec.shared.metrics.set_status(Status::Failed(error));
                        self.spec.failed.store(true, Relaxed);
                    }
                }
                // Partitions assigned while the pipeline is paused start paused.
                if self.spec.shared.paused.load(Relaxed)
                    && let Err(e) = consumer.pause(list)
                {
                    tracing::warn!(pipeline = %self.spec.shared.name, error = %e, "cannot pause new partitions");
                }
                self.spec.shared.metrics.set_status(Status::Running);
            }
            Rebalance::Error(e) => {
                tracing::warn!(pipeline = %self.spec.shared.name, error = %e, "rebalance error")
            }
            Rebalance::Revoke(_) => {}
        }
    }
}

fn pairs(list: &TopicPartitionList) -> Vec<(String, i32)> {
    list.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

struct PollLoop {
    spec: Arc<PipelineSpec>,
    consumer: BaseConsumer<PipelineContext>,
    partitions: Arc<Mutex<Partitions>>,
    stop: Arc<AtomicBool>,
}

impl PollLoop {
    fn run(self) {
        let spec = &self.spec;
        let mut limiter = spec.max_records_per_second.map(RateLimiter::new);
        let mut last_store = Instant::now();
        let mut last_error: Option<(String, Instant)> = None;
        let poll_timeout = spec
            .linger
            .clamp(Duration::from_millis(1), Duration::from_millis(100));
        let mut paused = false;
        while !self.stop.load(Relaxed) && !spec.failed.load(Relaxed) {
            let want_paused = spec.shared.paused.load(Relaxed);
            if want_paused != paused && self.pause(want_paused) {
                paused = want_paused;
            }
            let polled = self.consumer.poll(poll_timeout);
            if let (Some(limiter), Some(Ok(_))) = (&mut limiter, &polled) {
                limiter.take();
            }
            // One clock reading and one lock per record: at hundreds of thousands of records a
            // second, both show in profiles.
            let now = Instant::now();
            let mut partitions = self.partitions.lock().unwrap();
            match polled {
                Some(Ok(message)) => {
                    let entry =
                        match partitions.get_or_start(spec, message.topic(), message.partition()) {
                            Ok(entry) => entry,
                            Err(error) => {
                                spec.shared.metrics.set_status(Status::Failed(error));
                                spec.failed.store(true, Relaxed);
                                break;
                            }
                        };
                    let headers = message
                        .headers()
                        .into_iter()
                        .flat_map(|h| h.iter())
                        .map(|h| (h.key, h.value));
                    entry.batch.push(
                        message.offset(),
                        message.timestamp().to_millis(),
                        message.key(),
                        message.payload(),
                        headers,
                    );
                    let started = entry.first_at.is_none();
                    entry.first_at.get_or_insert(now);
                    if entry.batch.len() >= spec.batch_size {
                        Partitions::flush(entry);
                    } else if started {
                        partitions.batch_started(now);
                    }
                }
                Some(Err(error)) => {
                    // Repeated errors (an input topic that does not exist yet, a broker down) are
                    // logged once a minute.
                    let text = error.to_string();
                    if last_error.as_ref().is_none_or(|(last, at)| {
                        *last != text || at.elapsed() > Duration::from_secs(60)
                    }) {
                        tracing::warn!(pipeline = %spec.shared.name, error = %text, "consumer error");
                        last_error = Some((text, Instant::now()));
                    }
                }
                None => {}
            }
            partitions.flush_lingering(now, spec.linger);
            if now.duration_since(last_store) >= Duration::from_millis(100) {
                partitions.store_offsets(&self.consumer);
                last_store = now;
                if let Some(error) = spec.shared.tables.failure() {
                    tracing::error!(pipeline = %spec.shared.name, %error, "pipeline stopping");
                    spec.shared.metrics.set_status(Status::Failed(error));
                    spec.failed.store(true, Relaxed);
                }
            }
        }
        self.shut_down();
    }

    /// Pauses or resumes fetching from every assigned partition; the consumer stays in its
    /// group and batches already fetched still run.
    fn pause(&self, pause: bool) -> bool {
        let result = self.consumer.assignment().and_then(|assigned| {
            if pause {
                self.consumer.pause(&assigned)
            } else {
                self.consumer.resume(&assigned)
            }
        });
        match result {
            Ok(()) => {
                tracing::info!(pipeline = %self.spec.shared.name, "{}", if pause { "paused" } else { "resumed" });
                true
            }
            Err(e) => {
                tracing::warn!(pipeline = %self.spec.shared.name, error = %e, "cannot pause or resume");
                false
            }
        }
    }

    fn shut_down(self) {
        let spec = &self.spec;
        spec.shared.metrics.set_status(Status::Stopping);
        tracing::info!(pipeline = %spec.shared.name, "draining in-flight batches");
        self.partitions
            .lock()
            .unwrap()
            .drain(&self.consumer, |_, _| true);
        commit(&self.consumer, &spec.shared.name);
        self.consumer.unsubscribe();
        spec.shared.metrics.set_status(Status::Stopped);
        tracing::info!(pipeline = %spec.shared.name, status = ?spec.shared.metrics.status(), "pipeline stopped");
    }
}

/// Spaces records out to at most `rate` per second, with bursts of up to a tenth of a second.
struct RateLimiter {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    fn new(rate: u64) -> Self {
        RateLimiter {
            rate: rate as f64,
            tokens: 0.0,
            last: Instant::now(),
        }
    }

    fn take(&mut self) {
        let burst = (self.rate / 10.0).max(1.0);
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(burst);
        self.last = now;
        if self.tokens < 1.0 {
            std::thread::sleep(Duration::from_secs_f64((1.0 - self.tokens) / self.rate));
            self.tokens = 1.0;
            self.last = Instant::now();
        }
        self.tokens -= 1.0;
    }
}
