//! The source: consumes a pipeline's input partitions on one poll thread, packs each record
//! into its partition's next batch, bounded by records, bytes and time, and hands the batch to
//! that partition's worker. It follows the group's assignment (a worker per assigned
//! partition; revoked partitions are drained and committed before they are let go) and stores
//! the workers' committable offsets with the consumer, whose auto-commit commits them.

use super::Pipeline;
use super::committer::{Committed, Committer, PartitionProgress};
use super::metrics::Status;
use super::sink::TransactionError;
use super::worker::{Command, PartitionError, Progress, WorkerHandle, WorkerShared};
use crate::config::{KafkaConfig, PipelineConfig};
use crate::engine::InputBatchBuilder;
use crate::kafka::{LogThrottle, Role, client_config};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{Headers, Message};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the source cuts batches and paces itself.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Most records per batch.
    pub records: usize,
    /// Most bytes (keys, values, headers) per batch; a record alone larger than this is too
    /// large for any batch.
    pub bytes: usize,
    /// Longest a record waits for its batch to fill.
    pub linger: Duration,
}

/// The source's settings.
#[derive(Debug, Clone, Copy)]
pub struct SourceSettings {
    /// Where batches are cut.
    pub batch: BatchLimits,
    /// Records per second cap.
    pub max_records_per_second: Option<u64>,
    /// How long a partition's worker may take to drain when it is let go.
    pub drain_timeout: Duration,
    /// With exactly-once: how often the open transaction commits.
    pub commit_interval: Duration,
}

/// Subscribes `config`'s consumer to the pipeline's inputs and starts the poll thread. It polls
/// once `go` says so (the group is joined meanwhile: librdkafka joins in the background and
/// holds the assignment for the first poll), and not at all if `go` is dropped unsaid; then it
/// runs until `stop` is raised or the pipeline fails, then drains and commits.
pub(super) fn start(
    kafka: &KafkaConfig,
    config: &PipelineConfig,
    workers: Arc<WorkerShared>,
    settings: SourceSettings,
    stop: Arc<AtomicBool>,
    go: std::sync::mpsc::Receiver<()>,
) -> Result<std::thread::JoinHandle<()>, super::PipelineError> {
    let kafka_error = |source| super::PipelineError::Kafka {
        pipeline: config.name.clone(),
        source,
    };
    let committer = (workers.sink.is_transactional())
        .then(|| Committer::start(workers.clone()))
        .transpose()?;
    let assigned = Arc::new(Mutex::new(Assigned::new(committer)));
    let handler = RebalanceHandler {
        workers: workers.clone(),
        assigned: assigned.clone(),
        commit_errors: Mutex::default(),
        offset_waits: Mutex::default(),
        drain_timeout: settings.drain_timeout,
    };
    let client_id = format!("sluice-{}", config.name);
    let consumer: BaseConsumer<RebalanceHandler> =
        client_config(kafka, Role::PipelineConsumer(config), &client_id)
            .create_with_context(handler)
            .map_err(kafka_error)?;
    let inputs: Vec<&str> = config.inputs.iter().map(String::as_str).collect();
    consumer.subscribe(&inputs).map_err(kafka_error)?;
    let source = Source {
        settings,
        workers,
        consumer,
        assigned,
        stop,
    };
    Ok(std::thread::Builder::new()
        .name(format!("sluice-poll-{}", config.name))
        .spawn(move || {
            if go.recv().is_ok() {
                source.run()
            }
        })?)
}

/// A partition's records waiting for their batch to fill.
struct PendingBatch {
    batch: InputBatchBuilder,
    /// When the batch's first record came.
    first_at: Option<Instant>,
}

impl PendingBatch {
    fn new(topic: &str, partition: i32) -> Self {
        PendingBatch {
            batch: InputBatchBuilder::new(topic, partition),
            first_at: None,
        }
    }

    /// Takes the pending records, if any, leaving an empty batch.
    fn take(&mut self) -> Option<InputBatchBuilder> {
        if self.batch.is_empty() {
            return None;
        }
        let fresh = InputBatchBuilder::new(&self.batch.batch().topic, self.batch.batch().partition);
        self.first_at = None;
        Some(std::mem::replace(&mut self.batch, fresh))
    }

    /// Adds a record that arrived at `now`, handing `ready` what must go to the worker, in
    /// order: the pending batch when this record would take it past `limits.bytes`; the record
    /// alone when it is larger than any batch may be; the batch once it is full. Returns
    /// whether the record started a new batch.
    #[allow(clippy::too_many_arguments)]
    fn add<'h, H: Iterator<Item = (&'h str, Option<&'h [u8]>)>>(
        &mut self,
        limits: &BatchLimits,
        now: Instant,
        offset: i64,
        timestamp: Option<i64>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: impl Fn() -> H,
        mut ready: impl FnMut(Command),
    ) -> bool {
        let size = key.map_or(0, <[u8]>::len)
            + value.map_or(0, <[u8]>::len)
            + headers()
                .map(|(k, v)| k.len() + v.map_or(0, <[u8]>::len))
                .sum::<usize>();
        if self.batch.bytes() + size > limits.bytes
            && let Some(full) = self.take()
        {
            ready(Command::Batch(full));
        }
        if size > limits.bytes {
            let batch = self.batch.batch();
            let mut alone = InputBatchBuilder::new(&batch.topic, batch.partition);
            alone.push(offset, timestamp, key, value, headers());
            ready(Command::TooLarge(alone));
            return false;
        }
        self.batch.push(offset, timestamp, key, value, headers());
        let started = self.first_at.is_none();
        self.first_at.get_or_insert(now);
        if self.batch.len() >= limits.records || self.batch.bytes() >= limits.bytes {
            ready(Command::Batch(self.take().expect("not empty")));
            return false;
        }
        started
    }
}

/// An assigned partition: the batch being filled and the worker that will run it.
struct AssignedPartition {
    topic: String,
    partition: i32,
    pending: PendingBatch,
    worker: WorkerHandle,
    /// The first offset read since the partition was assigned: where an aborted transaction
    /// rewinds to when the group has no committed offset yet.
    first_offset: Option<i64>,
}

impl AssignedPartition {
    /// Hands the pending records to the worker.
    fn flush(&mut self) {
        if let Some(batch) = self.pending.take() {
            self.worker.send(Command::Batch(batch));
        }
    }
}

/// The partitions a pipeline has, shared by its poll loop and its rebalance callbacks (which
/// run on the poll thread, inside `poll`), and, exactly-once, the committer of their
/// transactions.
struct Assigned {
    entries: Vec<AssignedPartition>,
    /// No pending batch started before this: until `linger` after it, no batch is due, and
    /// the per-record check skips the scan of every partition.
    oldest_pending: Option<Instant>,
    /// Exactly-once: commits the sink's slots.
    committer: Option<Committer>,
    /// Exactly-once: when the sink's slots last switched.
    last_switch: Instant,
}

impl Assigned {
    fn new(committer: Option<Committer>) -> Self {
        Assigned {
            entries: Vec::new(),
            oldest_pending: None,
            committer,
            last_switch: Instant::now(),
        }
    }

    fn get_or_start(
        &mut self,
        workers: &Arc<WorkerShared>,
        topic: &str,
        partition: i32,
    ) -> Result<&mut AssignedPartition, PartitionError> {
        let index = match self
            .entries
            .iter()
            .position(|e| e.partition == partition && e.topic == topic)
        {
            Some(index) => index,
            None => {
                let pipeline = &workers.pipeline;
                let chain = workers.chain(topic, partition, workers.generation.load(Relaxed))?;
                let worker = WorkerHandle::spawn(workers.clone(), chain, topic, partition)
                    .map_err(PartitionError::Thread)?;
                tracing::info!(pipeline = %pipeline.name, topic, partition, "partition assigned");
                self.entries.push(AssignedPartition {
                    topic: topic.to_string(),
                    partition,
                    pending: PendingBatch::new(topic, partition),
                    worker,
                    first_offset: None,
                });
                self.entries.len() - 1
            }
        };
        Ok(&mut self.entries[index])
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
        self.flush_pending(|entry| {
            (entry.pending.first_at).is_some_and(|t| now.duration_since(t) >= linger)
        });
    }

    /// Hands each pending batch to its worker if that worker has taken every batch before it.
    /// Called when the consumer has nothing more fetched: no record is about to join the batch,
    /// the worker is ready for it, and waiting out the linger would only add latency. Under load
    /// the consumer always has records ready and batches fill as before.
    fn flush_to_waiting_workers(&mut self) {
        if self.oldest_pending.is_some() {
            self.flush_pending(|entry| entry.worker.has_taken_all());
        }
    }

    /// Flushes the pending batches of the partitions `due` selects.
    fn flush_pending(&mut self, due: impl Fn(&AssignedPartition) -> bool) {
        for entry in &mut self.entries {
            if entry.pending.first_at.is_some() && due(entry) {
                entry.flush();
            }
        }
        self.oldest_pending = self.entries.iter().filter_map(|e| e.pending.first_at).min();
    }

    /// Stores newly committable offsets with the consumer.
    fn store_offsets<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) {
        for entry in &mut self.entries {
            let next = entry.worker.committable();
            if next > entry.worker.stored
                && store_offset(consumer, &entry.topic, entry.partition, next)
            {
                entry.worker.stored = next;
            }
        }
    }

    /// A worker that died, with its partition and why.
    fn dead_worker(&mut self) -> Option<(String, i32, String)> {
        self.entries.iter_mut().find_map(|e| {
            let reason = e.worker.death()?;
            Some((e.topic.clone(), e.partition, reason))
        })
    }

    /// Drains the workers of the partitions `which` selects and forgets them; returns what
    /// each one finished, to commit.
    fn drain(&mut self, timeout: Duration, which: impl Fn(&str, i32) -> bool) -> Vec<Drained> {
        let (mut drained, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.entries)
            .into_iter()
            .partition(|e| which(&e.topic, e.partition));
        self.entries = kept;
        // Hand every pending batch over first, so that the workers finish in parallel.
        drained.iter_mut().for_each(AssignedPartition::flush);
        let deadline = Instant::now() + timeout;
        drained
            .into_iter()
            .map(|entry| {
                let stored = entry.worker.stored;
                let progress = entry.worker.drain(deadline);
                if Instant::now() >= deadline {
                    tracing::warn!(event = "drain_timed_out", topic = %entry.topic, partition = entry.partition,
                        timeout_ms = timeout.as_millis() as u64,
                        "a partition's in-flight batches did not finish in time; what they did not write is processed again");
                }
                Drained {
                    stored,
                    progress,
                    topic: entry.topic,
                    partition: entry.partition,
                }
            })
            .collect()
    }
}

/// A partition let go, with what its worker finished.
struct Drained {
    topic: String,
    partition: i32,
    progress: Arc<Progress>,
    /// What was last stored or committed for it.
    stored: i64,
}

/// Commits what is done, after `drained` partitions were let go (or none, for a periodic
/// commit). At-least-once stores the drained partitions' acknowledged offsets and commits
/// what is stored; exactly-once commits the open transaction with every partition's produced
/// offsets. Then the drained partitions' state is closed, with a checkpoint if what it holds
/// was committed.
fn commit_done<C: ConsumerContext>(
    workers: &WorkerShared,
    consumer: &BaseConsumer<C>,
    assigned: &mut Assigned,
    drained: &[Drained],
) {
    let committed = if workers.sink.is_transactional() {
        commit_transaction(workers, consumer, assigned, drained)
    } else {
        for d in drained {
            if d.progress.committable() > d.stored {
                store_offset(consumer, &d.topic, d.partition, d.progress.committable());
            }
        }
        commit(consumer, &workers.pipeline.name);
        true
    };
    let partitions: Vec<i32> = drained.iter().map(|d| d.partition).collect();
    let trusted = committed && !workers.pipeline.has_failed();
    workers
        .state
        .close(&partitions, trusted, workers.generation.load(Relaxed));
}

/// How long a seek after an aborted transaction may take.
const SEEK_TIMEOUT: Duration = Duration::from_secs(10);

/// Exactly-once, every `commit_interval`: takes the outcome of the commit under way, if it has
/// finished, and once none is under way and the interval has passed, switches the batches to
/// the sink's other slot and has the committer commit the one they left.
fn commit_due<C: ConsumerContext>(
    workers: &WorkerShared,
    consumer: &BaseConsumer<C>,
    assigned: &mut Assigned,
    now: Instant,
    interval: Duration,
) {
    let Some(committer) = assigned.committer.as_mut() else {
        return;
    };
    if let Some((slot, committed)) = committer.finished() {
        apply_commit(workers, consumer, assigned, slot, committed);
    }
    let busy = assigned.committer.as_ref().is_some_and(Committer::is_busy);
    if !busy && now.duration_since(assigned.last_switch) >= interval {
        switch_and_commit(workers, consumer, assigned, &[]);
    }
}

/// Exactly-once: commits everything handed to the sink so far, including what `drained`
/// partitions did, and waits until it is done; returns whether it committed.
fn commit_transaction<C: ConsumerContext>(
    workers: &WorkerShared,
    consumer: &BaseConsumer<C>,
    assigned: &mut Assigned,
    drained: &[Drained],
) -> bool {
    let Some(committer) = assigned.committer.as_mut() else {
        return false;
    };
    if let Some((slot, committed)) = committer.wait()
        && !apply_commit(workers, consumer, assigned, slot, committed)
    {
        // Aborted: every open transaction with it, and the drained partitions' records since
        // their last commit with them; their next owner reads those again.
        return false;
    }
    switch_and_commit(workers, consumer, assigned, drained);
    match assigned.committer.as_mut().and_then(Committer::wait) {
        Some((slot, committed)) => apply_commit(workers, consumer, assigned, slot, committed),
        None => false,
    }
}

/// Sends further batches to the sink's other slot and asks the committer to commit the one
/// they left, with the offsets of every assigned partition and of `drained`.
fn switch_and_commit<C: ConsumerContext>(
    workers: &WorkerShared,
    consumer: &BaseConsumer<C>,
    assigned: &mut Assigned,
    drained: &[Drained],
) {
    let partitions = (assigned.entries.iter())
        .map(|e| PartitionProgress {
            topic: e.topic.clone(),
            partition: e.partition,
            progress: e.worker.progress().clone(),
            committed: e.worker.stored,
        })
        .chain(drained.iter().map(|d| PartitionProgress {
            topic: d.topic.clone(),
            partition: d.partition,
            progress: d.progress.clone(),
            committed: d.stored,
        }))
        .collect();
    let slot = workers.sink.switch();
    assigned.last_switch = Instant::now();
    workers.transactions.fetch_add(1, Relaxed);
    if let Some(committer) = assigned.committer.as_mut() {
        committer.commit(slot, consumer.group_metadata(), partitions);
    }
}

/// Takes the outcome of `slot`'s commit: notes the committed offsets or, when it failed, aborts
/// both slots' transactions and rewinds every assigned partition to its committed offset, so
/// that what they held is processed again. Returns whether the commit succeeded.
fn apply_commit<C: ConsumerContext>(
    workers: &WorkerShared,
    consumer: &BaseConsumer<C>,
    assigned: &mut Assigned,
    slot: usize,
    committed: Committed,
) -> bool {
    let pipeline = &workers.pipeline;
    let error = match committed {
        Ok(offsets) if offsets.is_empty() => return true,
        Ok(offsets) => {
            for (topic, partition, next) in offsets {
                if let Some(entry) = (assigned.entries.iter_mut())
                    .find(|e| e.partition == partition && e.topic == topic)
                {
                    entry.worker.stored = next.max(entry.worker.stored);
                }
            }
            pipeline.metrics.observe_commit();
            return true;
        }
        Err(error) => error,
    };
    let fatal = matches!(error, TransactionError::Fatal(_));
    let cause = super::error_chain(&error);
    tracing::warn!(pipeline = %pipeline.name, event = "transaction_aborted", %cause,
        "aborting the transaction; its records are read again from the committed offsets");
    pipeline.metrics.observe_abort(&cause);
    // Batches sent before this are dropped by the workers; the other slot's transaction holds
    // records read after this one's, so it is aborted too.
    workers.generation.fetch_add(1, Relaxed);
    workers.transactions.fetch_add(1, Relaxed);
    if let Err(e) = workers.sink.abort_all(fatal.then_some(slot)) {
        pipeline.fail(format!(
            "exactly-once: cannot abort the transaction ({cause}): {e}"
        ));
        return false;
    }
    rewind(consumer, assigned, pipeline);
    false
}

/// Seeks every assigned partition back to its committed offset and drops what was read since.
/// The committed offset is the one the last committed transaction sent for the partition or,
/// before any since the assignment, where reading started: both are known here, so a rewind
/// needs no answer from a broker that may be the reason for the abort.
/// A partition that cannot be sought back stops the pipeline: reading on from where it is
/// would skip the aborted records.
fn rewind<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    assigned: &mut Assigned,
    pipeline: &Pipeline,
) {
    for entry in &mut assigned.entries {
        entry.pending.take();
        let committed = entry.worker.stored;
        let Some(next) = (committed >= 0).then_some(committed).or(entry.first_offset) else {
            continue;
        };
        if let Err(error) = consumer.seek(
            &entry.topic,
            entry.partition,
            Offset::Offset(next),
            SEEK_TIMEOUT,
        ) {
            pipeline.fail(format!(
                "exactly-once: cannot seek {}/{} back to offset {next} after an aborted transaction: {error}",
                entry.topic, entry.partition
            ));
        }
        entry.worker.rewind(next);
    }
    assigned.oldest_pending = None;
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
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => tracing::warn!(pipeline, error = %e, "cannot commit offsets"),
    }
}

/// The consumer's context: follows rebalances and reads lag from statistics.
struct RebalanceHandler {
    workers: Arc<WorkerShared>,
    assigned: Arc<Mutex<Assigned>>,
    /// At-least-once: failed background commits of stored offsets.
    commit_errors: Mutex<LogThrottle>,
    /// Assigned partitions not fetching yet, since when: they wait for the group's committed
    /// offsets.
    offset_waits: Mutex<OffsetWaits>,
    drain_timeout: Duration,
}

/// Assigned partitions whose committed offsets the group coordinator has not given yet.
///
/// librdkafka retries that silently, and for a read_committed consumer (exactly-once) it is
/// refused for as long as any transaction holding offsets for the group is open: an
/// exactly-once producer of another process, or a transaction the broker left hanging. Without
/// this a member would sit with its partitions assigned, not reading and not saying why.
#[derive(Default)]
struct OffsetWaits {
    since: std::collections::HashMap<(String, i32), Instant>,
    throttle: LogThrottle,
}

/// How long an assigned partition may wait for its committed offset before it is reported:
/// more than Sluice's own transactions may stay open (`transaction.timeout.ms`, 10 s).
const OFFSET_WAIT_REPORTED_AFTER: Duration = Duration::from_secs(20);

impl OffsetWaits {
    /// Notes `partition`'s fetch state (librdkafka's statistics, `fetch_state`); returns how long
    /// it has waited for its committed offset when that is to be reported now.
    fn observe(
        &mut self,
        partition: (&str, i32),
        fetch_state: &str,
        now: Instant,
    ) -> Option<Duration> {
        // "none" (never fetched) or "stopped" (fetched before a revocation): the assignment
        // has not started its fetcher, which it does once it has the committed offset.
        let key = (partition.0.to_string(), partition.1);
        if !matches!(fetch_state, "none" | "stopped") {
            self.since.remove(&key);
            return None;
        }
        let label = format!("{}/{}", key.0, key.1);
        let waited = now.duration_since(*self.since.entry(key).or_insert(now));
        (waited >= OFFSET_WAIT_REPORTED_AFTER && self.throttle.first_in_a_while(&label, now))
            .then_some(waited)
    }
}

impl RebalanceHandler {
    fn pipeline(&self) -> &Pipeline {
        &self.workers.pipeline
    }
}

impl ClientContext for RebalanceHandler {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        crate::kafka::client_log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        crate::kafka::client_error(&error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        let metrics = &self.pipeline().metrics;
        let assigned = metrics.assigned.lock().unwrap().clone();
        let mut lag = metrics.lag.lock().unwrap();
        let mut waits = self.offset_waits.lock().unwrap();
        let now = Instant::now();
        waits.since.retain(|key, _| assigned.contains(key));
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    lag.insert((topic.clone(), *partition), p.consumer_lag);
                }
                if !assigned.contains(&(topic.clone(), *partition)) {
                    continue;
                }
                if let Some(waited) = waits.observe((topic, *partition), &p.fetch_state, now) {
                    tracing::warn!(pipeline = %self.pipeline().name, event = "committed_offset_wait",
                        topic, partition, waited_s = waited.as_secs(),
                        "the partition is assigned but not read: the group's committed offset for it has not come. \
                         The group coordinator is unavailable, or (read_committed, exactly-once) a transaction \
                         holding offsets for the group is still open: another member's, or one the broker left \
                         open (`kafka-transactions.sh describe-producers --topic __consumer_offsets --partition N`)");
                    metrics.observe_offset_wait();
                }
            }
        }
    }
}

impl ConsumerContext for RebalanceHandler {
    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        match result {
            // Nothing stored since the last commit.
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => {
                // The offsets stay stored and the next commit tries again; until one succeeds,
                // a restart replays from the last committed offsets.
                let text = error.to_string();
                let mut throttle = self.commit_errors.lock().unwrap();
                if throttle.first_in_a_while(&text, Instant::now()) {
                    tracing::warn!(pipeline = %self.pipeline().name, event = "offset_commit_failed",
                        error = %text, "cannot commit offsets; retrying with the next commit");
                }
            }
        }
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let revoked = pairs(list);
            let started = Instant::now();
            let mut assigned = self.assigned.lock().unwrap();
            let drained = assigned.drain(self.drain_timeout, |topic, partition| {
                revoked.iter().any(|(t, p)| t == topic && *p == partition)
            });
            let drained_after = started.elapsed();
            commit_done(&self.workers, consumer, &mut assigned, &drained);
            // How long the group waited for this member, and on what.
            tracing::debug!(pipeline = %self.pipeline().name, partitions = revoked.len(),
                drain_ms = drained_after.as_millis() as u64,
                commit_ms = (started.elapsed() - drained_after).as_millis() as u64,
                "revoked partitions drained and committed");
            let metrics = &self.pipeline().metrics;
            metrics
                .lag
                .lock()
                .unwrap()
                .retain(|key, _| !revoked.contains(key));
            (metrics.assigned.lock().unwrap()).retain(|key| !revoked.contains(key));
            tracing::info!(pipeline = %self.pipeline().name, partitions = revoked.len(), "partitions revoked after draining");
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let pipeline = self.pipeline();
        match rebalance {
            Rebalance::Assign(list) => {
                let mut assigned = self.assigned.lock().unwrap();
                (pipeline.metrics.assigned.lock().unwrap()).extend(pairs(list));
                for (topic, partition) in pairs(list) {
                    if let Err(error) = assigned.get_or_start(&self.workers, &topic, partition) {
                        pipeline.fail(super::error_chain(&error));
                    }
                }
                // Partitions assigned while the pipeline is paused start paused.
                if pipeline.paused.load(Relaxed)
                    && let Err(e) = consumer.pause(list)
                {
                    tracing::warn!(pipeline = %pipeline.name, error = %e, "cannot pause new partitions");
                }
                pipeline.metrics.set_status(Status::Running);
            }
            Rebalance::Error(e) => {
                tracing::warn!(pipeline = %pipeline.name, error = %e, "rebalance error")
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

/// The poll loop of one pipeline.
struct Source {
    settings: SourceSettings,
    workers: Arc<WorkerShared>,
    consumer: BaseConsumer<RebalanceHandler>,
    assigned: Arc<Mutex<Assigned>>,
    stop: Arc<AtomicBool>,
}

impl Source {
    fn pipeline(&self) -> &Pipeline {
        &self.workers.pipeline
    }

    fn run(self) {
        let pipeline = self.pipeline();
        let limits = self.settings.batch;
        let mut limiter = self.settings.max_records_per_second.map(RateLimiter::new);
        let mut last_tick = Instant::now();
        let transactional = self.workers.sink.is_transactional();
        let mut consumer_errors = LogThrottle::default();
        let poll_timeout = limits
            .linger
            .clamp(Duration::from_millis(1), Duration::from_millis(100));
        let mut paused = false;
        while !self.stop.load(Relaxed) && !pipeline.has_failed() {
            let want_paused = pipeline.paused.load(Relaxed);
            if want_paused != paused && self.pause(want_paused) {
                paused = want_paused;
            }
            let mut polled = self.consumer.poll(Duration::ZERO);
            if polled.is_none() {
                self.assigned.lock().unwrap().flush_to_waiting_workers();
                polled = self.consumer.poll(poll_timeout);
            }
            if let (Some(limiter), Some(Ok(_))) = (&mut limiter, &polled) {
                limiter.take();
            }
            // One clock reading and one lock per record: at hundreds of thousands of records a
            // second, both show in profiles.
            let now = Instant::now();
            let mut assigned = self.assigned.lock().unwrap();
            match polled {
                Some(Ok(message)) => {
                    let entry = match assigned.get_or_start(
                        &self.workers,
                        message.topic(),
                        message.partition(),
                    ) {
                        Ok(entry) => entry,
                        Err(error) => {
                            pipeline.fail(super::error_chain(&error));
                            break;
                        }
                    };
                    // Read once: librdkafka parses a record's headers again at every call
                    // when it has none, and `add` walks them twice.
                    let parsed = message.headers();
                    let headers = || {
                        parsed
                            .into_iter()
                            .flat_map(|h| h.iter())
                            .map(|h| (h.key, h.value))
                    };
                    entry.first_offset.get_or_insert(message.offset());
                    let worker = &mut entry.worker;
                    let started = entry.pending.add(
                        &limits,
                        now,
                        message.offset(),
                        message.timestamp().to_millis(),
                        message.key(),
                        message.payload(),
                        headers,
                        |command| worker.send(command),
                    );
                    if started {
                        assigned.batch_started(now);
                    }
                }
                Some(Err(error)) => {
                    let text = error.to_string();
                    if consumer_errors.first_in_a_while(&text, now) {
                        tracing::warn!(pipeline = %pipeline.name, error = %text, "consumer error");
                    }
                }
                None => {}
            }
            assigned.flush_lingering(now, limits.linger);
            if transactional {
                let interval = self.settings.commit_interval;
                commit_due(&self.workers, &self.consumer, &mut assigned, now, interval);
            }
            if now.duration_since(last_tick) >= Duration::from_millis(100) {
                last_tick = now;
                if !transactional {
                    assigned.store_offsets(&self.consumer);
                }
                if let Some((topic, partition, reason)) = assigned.dead_worker() {
                    pipeline.worker_died(&topic, partition, &reason);
                }
                if let Some(error) = pipeline.tables.failure() {
                    tracing::error!(pipeline = %pipeline.name, %error, "pipeline stopping");
                    pipeline.fail(error);
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
        let name = &self.pipeline().name;
        match result {
            Ok(()) => {
                tracing::info!(pipeline = %name, "{}", if pause { "paused" } else { "resumed" });
                true
            }
            Err(e) => {
                tracing::warn!(pipeline = %name, error = %e, "cannot pause or resume");
                false
            }
        }
    }

    fn shut_down(self) {
        let pipeline = self.pipeline();
        pipeline.metrics.set_status(Status::Stopping);
        tracing::info!(pipeline = %pipeline.name, "draining in-flight batches");
        let started = Instant::now();
        let mut assigned = self.assigned.lock().unwrap();
        let drained = assigned.drain(self.settings.drain_timeout, |_, _| true);
        let drained_after = started.elapsed();
        commit_done(&self.workers, &self.consumer, &mut assigned, &drained);
        tracing::debug!(pipeline = %pipeline.name, drain_ms = drained_after.as_millis() as u64,
            commit_ms = (started.elapsed() - drained_after).as_millis() as u64,
            "drained and committed for the stop");
        drop(assigned);
        self.consumer.unsubscribe();
        pipeline.metrics.set_status(Status::Stopped);
        tracing::info!(pipeline = %pipeline.name, status = ?pipeline.metrics.status(), "pipeline stopped");
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What `add` hands over, as (kind, offsets).
    fn add_all(
        pending: &mut PendingBatch,
        limits: &BatchLimits,
        sizes: &[(i64, usize)],
    ) -> Vec<(&'static str, Vec<i64>)> {
        let mut ready = Vec::new();
        for &(offset, size) in sizes {
            let value = vec![b'x'; size];
            pending.add(
                limits,
                Instant::now(),
                offset,
                None,
                None,
                Some(&value),
                std::iter::empty,
                |c| {
                    ready.push(match c {
                        Command::Batch(b) => ("batch", b.batch().offsets.clone()),
                        Command::TooLarge(b) => ("too_large", b.batch().offsets.clone()),
                        Command::Drain { .. } => ("drain", Vec::new()),
                    })
                },
            );
        }
        ready
    }

    #[test]
    fn batches_are_cut_by_records_and_by_bytes_and_oversized_records_go_alone() {
        let limits = BatchLimits {
            records: 3,
            bytes: 100,
            linger: Duration::from_secs(1),
        };
        let mut pending = PendingBatch::new("t", 0);
        let by_count = add_all(&mut pending, &limits, &[(0, 1), (1, 1), (2, 1), (3, 1)]);
        assert_eq!(by_count, vec![("batch", vec![0, 1, 2])]);
        assert_eq!(pending.take().unwrap().len(), 1);
        // 60 + 60 would pass 100 bytes: the first goes alone; exactly 100 is full at once.
        let by_bytes = add_all(&mut pending, &limits, &[(4, 60), (5, 60), (6, 40)]);
        assert_eq!(by_bytes, vec![("batch", vec![4]), ("batch", vec![5, 6])]);
        // A record over the limit flushes what is pending, then goes alone, in offset order.
        let oversized = add_all(&mut pending, &limits, &[(7, 10), (8, 101), (9, 10)]);
        assert_eq!(oversized, vec![("batch", vec![7]), ("too_large", vec![8])]);
        assert_eq!(pending.take().unwrap().batch().offsets[0], 9);
        assert!(pending.take().is_none());
    }

    #[test]
    fn repeated_errors_are_logged_once_a_minute_each_even_when_they_alternate() {
        let mut throttle = LogThrottle::default();
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let logged: Vec<bool> = [
            ("a", 0),
            ("b", 1),
            ("a", 2),
            ("b", 3),
            ("a", 59),
            ("a", 60),
            ("b", 61),
        ]
        .iter()
        .map(|(message, s)| throttle.first_in_a_while(message, at(*s)))
        .collect();
        assert_eq!(logged, vec![true, true, false, false, false, true, true]);
    }

    #[test]
    fn a_partition_not_fetching_for_20_s_is_reported_once_a_minute_and_fetching_resets_it() {
        let mut waits = OffsetWaits::default();
        let start = Instant::now();
        let mut observe = |state: &str, s: u64| {
            waits
                .observe(("in", 0), state, start + Duration::from_secs(s))
                .map(|waited| waited.as_secs())
        };
        assert_eq!(observe("none", 0), None);
        assert_eq!(observe("none", 19), None);
        assert_eq!(observe("none", 20), Some(20));
        assert_eq!(observe("none", 21), None, "once a minute");
        assert_eq!(observe("none", 80), Some(80));
        // Fetching: the wait is over; a later one (after a revocation) counts afresh.
        assert_eq!(observe("active", 81), None);
        assert_eq!(observe("stopped", 200), None);
        assert_eq!(observe("stopped", 219), None);
        assert_eq!(observe("stopped", 220), Some(20));
    }

    #[test]
    fn the_rate_limiter_spaces_records_out() {
        let mut limiter = RateLimiter::new(1000);
        let started = Instant::now();
        for _ in 0..200 {
            limiter.take();
        }
        // 200 records at 1000/s take at least 0.2 s, less the burst of 100 allowed after idling
        // (none here: it starts with no tokens).
        assert!(
            started.elapsed() >= Duration::from_millis(190),
            "{:?}",
            started.elapsed()
        );
    }
}
