//! A partition worker: runs one partition's batches through its own chain instances, hands the
//! outputs and dead letters to the [`Sink`], and publishes the partition's committable offset
//! once everything derived from it is acknowledged.
//!
//! Batches are written in order and up to [`MAX_IN_FLIGHT`] of them await acknowledgement at
//! once, so that the producer's round trip overlaps the next batch's transform.

use super::Pipeline;
use super::chain::{Chain, ChainFailure, ChainResult};
use super::sink::{Acks, Ledger, Sink, SinkBatch};
use super::state_store::{StateStores, TaskWrites};
use crate::config::OnError;
use crate::engine::state::{Changes, SharedTask};
use crate::engine::{
    Engine, FailureKind, InputBatch, InputBatchBuilder, InputRef, InstantiateError,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

/// Batches written but not yet fully acknowledged, per partition. With 8, workers waited on the
/// producer's 10 ms linger: 32 gave 1.3x the records per second on `make bench-peers`.
const MAX_IN_FLIGHT: usize = 32;

/// Batches handed to a worker and not yet started. The one poll thread waits when a worker's
/// queue is full, and librdkafka hands it a partition's records in runs of a fetch (hundreds of
/// KiB), so a short queue idles the other workers while one catches up (2 left 19% of the
/// machine idle in `make bench-peers`' chain of three).
const QUEUED_BATCHES: usize = 16;

/// The most bytes of batches handed to a worker and not yet started, unless a single batch is
/// larger: what two batches of the default largest size held before, so that queueing more
/// batches of small records costs no more memory with large ones.
const QUEUED_BYTES: usize = 16 << 20;

/// Longest a partition waits for its writes to one transaction to be acknowledged before it
/// writes to the next (see `Worker::open_sink`): the producer's delivery timeout is longer, but
/// a transaction call gives up after as long.
const SLOT_ORDER_WAIT: Duration = Duration::from_secs(10);

/// Why a partition cannot go on; its pipeline then stops.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    /// A trapped transform could not be started afresh.
    #[error("cannot restart a trapped transform")]
    Restart(#[source] InstantiateError),
    /// The transforms for a newly assigned partition do not start.
    #[error("cannot start the transforms for {topic}/{partition}")]
    Start {
        /// The partition's topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// Why.
        #[source]
        source: InstantiateError,
    },
    /// The worker's thread could not be started.
    #[error("cannot start a worker thread")]
    Thread(#[source] std::io::Error),
    /// A stateful transform's state store failed: what it holds can no longer be trusted.
    #[error("{0}")]
    State(String),
    /// A record failed, with no dead-letter topic and `on_error = "stop"`.
    #[error(
        "record {topic}/{partition}@{offset} failed{stage} ({kind}): {message}; the pipeline has no dead_letter and on_error = \"stop\""
    )]
    RecordFailed {
        /// The record's topic.
        topic: String,
        /// Its partition.
        partition: i32,
        /// Its offset.
        offset: i64,
        /// ` in transform N (module)`, or nothing for a record no transform saw.
        stage: String,
        /// How it failed.
        kind: FailureKind,
        /// What went wrong.
        message: String,
    },
    /// An output or dead letter could not be written.
    #[error("{0}")]
    Delivery(String),
}

/// What every partition worker of a pipeline shares.
pub struct WorkerShared {
    /// The pipeline, as the control plane sees it: deployed chain, tables, metrics, status.
    pub pipeline: Arc<Pipeline>,
    /// The engine that runs the transforms.
    pub engine: Engine,
    /// Where stateful transforms keep their state.
    pub state: StateStores,
    /// Where outputs and dead letters go.
    pub sink: Sink,
    /// What to do with failed records without a dead-letter topic.
    pub on_error: OnError,
    /// Bumped by each aborted transaction: batches sent before it are dropped, since the
    /// source reads their records again from the committed offsets.
    pub generation: Arc<AtomicU64>,
    /// Bumped whenever batches start going into a new transaction (the sink's slots switch,
    /// or the open ones are aborted): with exactly-once, a deploy is switched to only then, so
    /// that a partition's records in one transaction all come from one version of the chain.
    pub transactions: AtomicU64,
    /// Stateful transforms: see `idle_timeout_ms` in the configuration.
    pub idle_timeout: Option<Duration>,
}

impl WorkerShared {
    /// Instances of the deployed chain for `topic`/`partition`, its stateful slots' state that
    /// of the partition's task in `generation` (see [`StateStores::open`]).
    pub fn chain(
        &self,
        topic: &str,
        partition: i32,
        generation: u64,
    ) -> Result<Chain, PartitionError> {
        let pipeline = &self.pipeline;
        Chain::new(
            &self.engine,
            &pipeline.deployed,
            self.sink.outputs().clone(),
            &pipeline.tables,
            &mut self.open_task(partition, generation),
        )
        .map_err(|source| PartitionError::Start {
            topic: topic.to_string(),
            partition,
            source,
        })
    }

    fn open_task(
        &self,
        partition: i32,
        generation: u64,
    ) -> impl FnMut(usize) -> Result<SharedTask, InstantiateError> + '_ {
        move |slot| {
            (self.state.open(slot, partition, generation))
                .map_err(|e| InstantiateError::State(super::error_chain(&e)))
        }
    }
}

/// What the source sends a worker.
pub enum Command {
    /// Run this batch.
    Batch(InputBatchBuilder),
    /// This one record is larger than any batch may be: fail it without running the chain.
    TooLarge(InputBatchBuilder),
    /// Finish every batch, wait until `deadline` for acknowledgements, publish the final
    /// committable offset, then reply and exit.
    Drain {
        /// When to stop waiting for acknowledgements (they are then not committed, and are
        /// replayed after a restart).
        deadline: Instant,
        /// Told once the worker is done.
        reply: SyncSender<()>,
    },
}

/// A command with the generation it was sent in.
pub struct Envelope {
    generation: u64,
    command: Command,
}

impl Command {
    /// The bytes of its batch: what it holds of the worker's queue until the worker takes it.
    fn bytes(&self) -> usize {
        match self {
            Command::Batch(batch) | Command::TooLarge(batch) => batch.bytes(),
            Command::Drain { .. } => 0,
        }
    }
}

/// A worker's end of its queue of commands.
pub struct Commands {
    receiver: Receiver<Envelope>,
    queued: Arc<AtomicUsize>,
}

impl Commands {
    fn taken(&self, envelope: Envelope) -> Envelope {
        self.queued.fetch_sub(envelope.command.bytes(), Relaxed);
        envelope
    }

    /// The next command, waiting for it.
    pub fn recv(&self) -> Result<Envelope, std::sync::mpsc::RecvError> {
        self.receiver.recv().map(|e| self.taken(e))
    }

    /// The next command, waiting at most `timeout` for it.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Envelope, RecvTimeoutError> {
        self.receiver.recv_timeout(timeout).map(|e| self.taken(e))
    }
}

/// The offsets a worker publishes for its partition.
#[derive(Debug)]
pub struct Progress {
    /// The offset after the last batch whose outputs are all acknowledged (-1 before any):
    /// what at-least-once commits.
    committable: AtomicI64,
    /// Per sink slot, the offset after the last batch whose outputs were all handed to it (-1
    /// before any): with exactly-once, what the slot's open transaction covers.
    produced: [AtomicI64; 2],
}

impl Progress {
    /// Nothing done yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Progress {
            committable: AtomicI64::new(-1),
            produced: [AtomicI64::new(-1), AtomicI64::new(-1)],
        })
    }

    /// The offset after the last batch whose outputs are all acknowledged (-1 before any).
    pub fn committable(&self) -> i64 {
        self.committable.load(Relaxed)
    }

    /// The offset after the last batch whose outputs were all handed to sink slot `slot` (-1
    /// before any).
    pub fn produced_in(&self, slot: usize) -> i64 {
        self.produced[slot].load(Relaxed)
    }

    /// Notes that the batches up to `next` were handed to sink slot `slot`.
    pub fn set_produced(&self, slot: usize, next: i64) {
        self.produced[slot].store(next, Relaxed);
    }

    /// Starts counting again from `next`.
    fn reset(&self, next: i64) {
        self.committable.store(next, Relaxed);
        self.produced.iter().for_each(|p| p.store(next, Relaxed));
    }
}

/// The source's handle on a worker.
pub struct WorkerHandle {
    /// Where batches go; bounded, so a slow worker slows consumption.
    commands: SyncSender<Envelope>,
    /// The bytes of the batches in `commands`, at most [`QUEUED_BYTES`] but for one batch.
    queued: Arc<AtomicUsize>,
    /// What the worker has done.
    progress: Arc<Progress>,
    /// The generation commands are sent in.
    generation: Arc<AtomicU64>,
    /// What the source last stored with the consumer (at-least-once) or committed in a
    /// transaction (exactly-once).
    pub stored: i64,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Set when a command could not be delivered: the worker is gone.
    lost: bool,
}

impl WorkerHandle {
    /// Starts a worker for `topic`/`partition`, running `chain`.
    pub fn spawn(
        shared: Arc<WorkerShared>,
        chain: Chain,
        topic: &str,
        partition: i32,
    ) -> std::io::Result<WorkerHandle> {
        let progress = Progress::new();
        let generation = shared.generation.clone();
        let worker = Worker {
            shared,
            chain,
            topic: topic.to_string(),
            partition,
            progress: progress.clone(),
            ledger: Ledger::default(),
            halted: false,
            transactions_seen: 0,
            generation_seen: 0,
            last_slot: None,
            next_offset: -1,
        };
        Self::start(
            format!("sluice-{topic}-{partition}"),
            progress,
            generation,
            move |commands| worker.run(commands),
        )
    }

    fn start(
        name: String,
        progress: Arc<Progress>,
        generation: Arc<AtomicU64>,
        body: impl FnOnce(Commands) + Send + 'static,
    ) -> std::io::Result<WorkerHandle> {
        let (commands, receiver) = std::sync::mpsc::sync_channel(QUEUED_BATCHES);
        let queued = Arc::new(AtomicUsize::new(0));
        let receiver = Commands {
            receiver,
            queued: queued.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || body(receiver))?;
        Ok(WorkerHandle {
            commands,
            queued,
            progress,
            generation,
            stored: -1,
            thread: Some(thread),
            lost: false,
        })
    }

    /// Hands `command` over, waiting while the worker is busy; a worker that is gone is noted
    /// (see [`WorkerHandle::death`]).
    pub fn send(&mut self, command: Command) {
        let bytes = command.bytes();
        // A batch that would take the queue past its bytes waits for the worker to take the
        // ones before it, unless the worker is gone.
        while bytes > 0 && !self.lost && !self.thread.as_ref().is_some_and(|t| t.is_finished()) {
            let queued = self.queued.load(Relaxed);
            if queued == 0 || queued + bytes <= QUEUED_BYTES {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        self.queued.fetch_add(bytes, Relaxed);
        let generation = self.generation.load(Relaxed);
        if self
            .commands
            .send(Envelope {
                generation,
                command,
            })
            .is_err()
        {
            self.lost = true;
        }
    }

    /// Whether the worker has taken every batch sent to it (it may still be running the last).
    /// A batch is seen by its bytes, so one of records without keys, values or headers is not.
    pub fn has_taken_all(&self) -> bool {
        self.queued.load(Relaxed) == 0
    }

    /// See [`Progress::committable`].
    pub fn committable(&self) -> i64 {
        self.progress.committable()
    }

    /// What the worker has done.
    pub fn progress(&self) -> &Arc<Progress> {
        &self.progress
    }

    /// Starts counting again from `next` after an aborted transaction: what the worker had
    /// produced since is gone.
    pub fn rewind(&mut self, next: i64) {
        self.progress.reset(next);
        self.stored = next;
    }

    /// Why the worker is gone, if it ended without being asked to drain: its panic message.
    pub fn death(&mut self) -> Option<String> {
        if !self.lost && !self.thread.as_ref().is_some_and(|t| t.is_finished()) {
            return None;
        }
        let reason = match self.thread.take().map(|t| t.join()) {
            Some(Err(panic)) => panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "it panicked".into()),
            _ => "its thread ended".into(),
        };
        self.lost = true;
        Some(reason)
    }

    /// Asks the worker to drain, waits until it has (or `deadline` passes), and returns what
    /// it has done.
    pub fn drain(mut self, deadline: Instant) -> Arc<Progress> {
        let (reply, done) = std::sync::mpsc::sync_channel(1);
        self.send(Command::Drain { deadline, reply });
        let left = deadline.saturating_duration_since(Instant::now());
        if !self.lost
            && done.recv_timeout(left).is_ok()
            && let Some(thread) = self.thread.take()
        {
            let _ = thread.join();
        }
        self.progress
    }
}

struct Worker {
    shared: Arc<WorkerShared>,
    chain: Chain,
    topic: String,
    partition: i32,
    progress: Arc<Progress>,
    ledger: Ledger,
    /// After an unrecoverable error: batches are ignored and nothing more is committed.
    halted: bool,
    /// [`WorkerShared::transactions`] when this worker last looked for a deploy.
    transactions_seen: u64,
    /// The generation of the last batch run: a newer one means a transaction was aborted.
    generation_seen: u64,
    /// The sink slot the last batch went to.
    last_slot: Option<usize>,
    /// The offset after the last batch handed to the sink (-1 before any).
    next_offset: i64,
}

impl Worker {
    fn run(mut self, commands: Commands) {
        loop {
            let received = commands.recv_timeout(Duration::from_millis(20));
            // Batches sent before an aborted transaction are read again from the committed
            // offsets.
            let current = |generation| generation == self.shared.generation.load(Relaxed);
            match received {
                Ok(Envelope {
                    generation,
                    command: Command::Batch(batch),
                }) if !self.halted && current(generation) => {
                    if let Err(error) = self.handle(batch.batch(), generation) {
                        self.halt(error);
                    }
                    self.settle(None);
                    while self.ledger.len() > MAX_IN_FLIGHT && !self.halted {
                        self.ledger.wait_oldest(Duration::from_millis(100));
                        self.settle(None);
                    }
                }
                Ok(Envelope {
                    generation,
                    command: Command::TooLarge(record),
                }) if !self.halted && current(generation) => {
                    if let Err(error) = self.too_large(record.batch(), generation) {
                        self.halt(error);
                    }
                    self.settle(None);
                }
                Ok(Envelope {
                    command: Command::Drain { deadline, reply },
                    ..
                }) => {
                    self.settle(Some(deadline));
                    let _ = reply.send(());
                    return;
                }
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    if !self.halted
                        && let Err(error) = self.idle()
                    {
                        self.halt(error);
                    }
                    self.settle(None);
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn pipeline(&self) -> &Pipeline {
        &self.shared.pipeline
    }

    /// Stops this partition's progress: nothing after the last acknowledged batch is committed,
    /// so a restart replays from there.
    fn halt(&mut self, error: PartitionError) {
        tracing::error!(pipeline = %self.pipeline().name, topic = %self.topic, partition = self.partition, %error, "pipeline stopping");
        self.pipeline().fail(super::error_chain(&error));
        self.halted = true;
        self.ledger.clear();
    }

    /// Publishes the offsets of batches whose every delivery is in, oldest first, waiting for
    /// outstanding ones until `wait` if given.
    fn settle(&mut self, wait: Option<Instant>) {
        let settled = self.ledger.settle(wait);
        if let Some(next_offset) = settled.committable {
            tracing::debug!(topic = %self.topic, partition = self.partition, next_offset, "batches acknowledged");
            self.progress.committable.store(next_offset, Relaxed);
        }
        if let Some(error) = settled.failed {
            if self.shared.sink.is_transactional() {
                // The transaction cannot commit with a record missing: the source aborts it and
                // reads these records again.
                tracing::warn!(pipeline = %self.pipeline().name, topic = %self.topic, partition = self.partition,
                    %error, "a write failed; the open transaction will be aborted");
                self.ledger.clear();
                return;
            }
            self.halt(PartitionError::Delivery(error));
        } else if wait.is_some() && !self.ledger.is_empty() {
            tracing::warn!(pipeline = %self.pipeline().name, topic = %self.topic, partition = self.partition,
                batches = self.ledger.len(), "acknowledgements still outstanding at the drain deadline; leaving them uncommitted");
        }
    }

    fn handle(&mut self, batch: &InputBatch, generation: u64) -> Result<(), PartitionError> {
        let Some(&last) = batch.offsets.last() else {
            return Ok(());
        };
        let next_offset = last + 1;
        let metrics = self.shared.pipeline.metrics.clone();
        metrics.consumed.add(&batch.topic, batch.len() as u64);
        // A stateful task's batches run one at a time, whichever input they come from, and its
        // state is restored after an abort only once no batch of the task is running.
        let task_lock = self.shared.state.task_lock(self.partition);
        let hold = || task_lock.lock().unwrap_or_else(|e| e.into_inner());
        let held = self.chain.is_stateful().then(hold);
        if generation != self.generation_seen {
            self.forget_aborted_work(generation)?;
        }
        self.switch_if_deployed();
        let mut held = match held {
            None if self.chain.is_stateful() => Some(hold()),
            held => held,
        };
        let started = Instant::now();
        if let Some(task) = held.as_mut() {
            task.active(started);
        }
        let restarts = self.chain.restarts();
        let result = self.chain.run(batch).map_err(PartitionError::Restart)?;
        metrics.observe_batch(started.elapsed());
        metrics
            .instance_restarts
            .fetch_add(self.chain.restarts() - restarts, Relaxed);
        if let Some(failure) = self.chain.state_failure() {
            return Err(PartitionError::State(failure));
        }
        let changelog = self.chain.take_changelog();

        let shared = self.shared.clone();
        let Some(sink) = self.open_sink(&shared, generation) else {
            return Ok(());
        };
        if let Some(task) = held.as_mut() {
            self.keep_task_order(task, sink.slot());
        }
        let acks = Acks::new();
        if !result.failures.is_empty() {
            metrics
                .failed
                .add(&batch.topic, result.failures.len() as u64);
            for failure in &result.failures {
                self.fail_record(&sink, batch, failure, &acks)?;
            }
        }
        let outputs = self.write_outputs(&sink, &result, &acks);
        self.write_changelog(&sink, &changelog, &acks);
        self.progress.set_produced(sink.slot(), next_offset);
        drop(sink);
        tracing::debug!(topic = %self.topic, partition = self.partition, first = batch.offsets[0],
            last, records = batch.len(), outputs, "batch written");
        acks.seal();
        if let Some(task) = held.as_mut() {
            task.written(acks.clone());
        }
        self.next_offset = next_offset;
        self.ledger.push(next_offset, acks);
        Ok(())
    }

    /// Keeps the task's writes in order across the sink's slots (see
    /// [`TaskWrites::keep_order`]); a wait that runs out is logged, and the batch goes on.
    fn keep_task_order(&self, task: &mut TaskWrites, slot: usize) {
        if !task.keep_order(slot, Instant::now() + SLOT_ORDER_WAIT) {
            tracing::warn!(pipeline = %self.shared.pipeline.name, topic = %self.topic, partition = self.partition,
                "the task's writes to the previous transaction are still unacknowledged; going on");
        }
    }

    /// With `idle_timeout_ms`, a stateful task without records for that long: its stream time
    /// moves on by the wall clock (see [`TaskWrites::idle`](super::state_store::TaskWrites::idle))
    /// and the outputs of the timers that fire are written like a batch's, covering no offset.
    /// With exactly-once they go in the open transaction, which commits without offsets if
    /// need be (see [`SinkBatch::unanchored`]).
    fn idle(&mut self) -> Result<(), PartitionError> {
        let Some(timeout) = self.shared.idle_timeout else {
            return Ok(());
        };
        if !self.chain.is_stateful() {
            return Ok(());
        }
        let task_lock = self.shared.state.task_lock(self.partition);
        let mut task = task_lock.lock().unwrap_or_else(|e| e.into_inner());
        let Some(by) = task.idle(Instant::now(), timeout) else {
            return Ok(());
        };
        let generation = self.shared.generation.load(Relaxed);
        if generation != self.generation_seen {
            self.forget_aborted_work(generation)?;
        }
        self.switch_if_deployed();
        let offset = self.next_offset.max(0) - 1;
        let result = (self.chain)
            .idle(by, &self.topic, self.partition, offset)
            .map_err(PartitionError::Restart)?;
        if let Some(failure) = self.chain.state_failure() {
            return Err(PartitionError::State(failure));
        }
        let changelog = self.chain.take_changelog();
        let shared = self.shared.clone();
        let Some(sink) = self.open_sink(&shared, generation) else {
            return Ok(());
        };
        self.keep_task_order(&mut task, sink.slot());
        let acks = Acks::new();
        let outputs = self.write_outputs(&sink, &result, &acks);
        self.write_changelog(&sink, &changelog, &acks);
        sink.unanchored();
        drop(sink);
        tracing::debug!(topic = %self.topic, partition = self.partition, by_ms = by, outputs,
            "idle: stream time moved on");
        acks.seal();
        task.written(acks.clone());
        self.ledger.push(self.next_offset, acks);
        Ok(())
    }

    /// Writes a batch's changes of stateful slots' state to their changelogs.
    fn write_changelog(
        &self,
        sink: &SinkBatch<'_>,
        changelog: &[(usize, Changes)],
        acks: &Arc<Acks>,
    ) {
        for (slot, changes) in changelog {
            let topic = self.shared.state.changelog_topic(*slot);
            for (key, value) in changes {
                sink.changelog(&topic, self.partition, key, value.as_deref(), acks);
            }
            (self.pipeline().metrics.changelog_records).fetch_add(changes.len() as u64, Relaxed);
        }
    }

    /// After an aborted transaction: the instances start afresh, so that nothing they kept in
    /// memory from the aborted records survives into the records read again, and stateful ones
    /// restore their state from what the changelog committed.
    fn forget_aborted_work(&mut self, generation: u64) -> Result<(), PartitionError> {
        self.chain = self.shared.chain(&self.topic, self.partition, generation)?;
        self.generation_seen = generation;
        Ok(())
    }

    /// The sink, for a batch of `generation`; `None` if a transaction was aborted since, in
    /// which case the batch is dropped (the source reads its records again).
    ///
    /// A partition's writes stay in order across the sink's slots, whose producers are
    /// independent: before the first batch goes to a slot other than the last one's, what went
    /// to the last one is acknowledged, so in the log. Without this, a state change written
    /// just before a switch could land after a newer one written just after it, and a restore
    /// from the changelog would end with the older value.
    fn open_sink<'s>(
        &mut self,
        shared: &'s WorkerShared,
        generation: u64,
    ) -> Option<SinkBatch<'s>> {
        let sink = shared.sink.batch();
        if shared.generation.load(Relaxed) != generation {
            return None;
        }
        if self.last_slot.is_some_and(|slot| slot != sink.slot()) {
            let deadline = Instant::now() + SLOT_ORDER_WAIT;
            if !self.ledger.wait_all(deadline) {
                tracing::warn!(pipeline = %shared.pipeline.name, topic = %self.topic, partition = self.partition,
                    "writes to the previous transaction are still unacknowledged; going on");
            }
        }
        self.last_slot = Some(sink.slot());
        Some(sink)
    }

    /// Fails the one record of `record` as too large for any batch, without running the chain.
    fn too_large(&mut self, record: &InputBatch, generation: u64) -> Result<(), PartitionError> {
        let Some(&only) = record.offsets.first() else {
            return Ok(());
        };
        let metrics = &self.shared.pipeline.metrics;
        metrics.consumed.add(&record.topic, 1);
        metrics.failed.add(&record.topic, 1);
        let size = InputRef::new(record, 0).size();
        let failure = ChainFailure {
            input: 0,
            stage: 0,
            kind: FailureKind::TooLarge,
            message: format!(
                "the record is {size} bytes (key, value and headers), more than a batch may hold (batch_max_bytes)"
            ),
        };
        let shared = self.shared.clone();
        let Some(sink) = self.open_sink(&shared, generation) else {
            return Ok(());
        };
        let acks = Acks::new();
        self.fail_record(&sink, record, &failure, &acks)?;
        self.progress.set_produced(sink.slot(), only + 1);
        drop(sink);
        acks.seal();
        self.next_offset = only + 1;
        self.ledger.push(only + 1, acks);
        Ok(())
    }

    /// Switches to a newly deployed chain at this batch boundary, timing the pause it causes.
    fn switch_if_deployed(&mut self) {
        // With exactly-once, a transaction's records all come from one version of the chain.
        if self.shared.sink.is_transactional() {
            let ended = self.shared.transactions.load(Relaxed);
            if ended == self.transactions_seen {
                return;
            }
            self.transactions_seen = ended;
        }
        let pipeline = &self.shared.pipeline;
        let started = Instant::now();
        let mut open_task = self.shared.open_task(self.partition, self.generation_seen);
        match (self.chain).update(
            &self.shared.engine,
            &pipeline.deployed,
            &pipeline.tables,
            &mut open_task,
        ) {
            Ok(false) => {}
            Ok(true) => {
                let pause = started.elapsed();
                pipeline.metrics.observe_swap(pause);
                tracing::info!(pipeline = %pipeline.name, topic = %self.topic, partition = self.partition,
                    pause_us = pause.as_micros() as u64, "switched to the deployed transforms");
            }
            Err(error) => {
                tracing::error!(pipeline = %pipeline.name, topic = %self.topic, partition = self.partition, %error,
                    "cannot start the deployed transforms; this partition keeps running the previous ones");
            }
        }
    }

    /// Writes the batch's outputs, counting them per output topic; returns how many.
    fn write_outputs(
        &self,
        sink: &SinkBatch<'_>,
        result: &ChainResult<'_>,
        acks: &Arc<Acks>,
    ) -> u64 {
        let mut written = vec![0u64; self.shared.sink.outputs().len()];
        for (_, route, output) in result.outputs() {
            sink.output(route, &output, acks);
            written[route] += 1;
        }
        for (route, n) in written.iter().enumerate() {
            self.pipeline().metrics.produced.add_at(route, *n);
        }
        written.iter().sum()
    }

    /// Sends a failed record to the dead-letter topic, or skips it, or stops the partition, as
    /// the pipeline's settings say.
    fn fail_record(
        &self,
        sink: &SinkBatch<'_>,
        batch: &InputBatch,
        failure: &ChainFailure,
        acks: &Arc<Acks>,
    ) -> Result<(), PartitionError> {
        let record = InputRef::new(batch, failure.input);
        let pipeline = self.pipeline();
        // A record too large to batch never reached a stage.
        let stage =
            (failure.kind != FailureKind::TooLarge).then(|| self.chain.stage(failure.stage));
        let module = stage.map_or("", |s| s.name.as_str());
        if self.shared.sink.has_dead_letter() {
            let (partition, offset) = (self.partition.to_string(), record.offset().to_string());
            let mut context = vec![
                ("sluice.error.message", failure.message.as_str()),
                ("sluice.error.kind", failure.kind.as_str()),
                ("sluice.pipeline", pipeline.name.as_str()),
                ("sluice.source.topic", self.topic.as_str()),
                ("sluice.source.partition", partition.as_str()),
                ("sluice.source.offset", offset.as_str()),
            ];
            let (stage_index, version) = (
                failure.stage.to_string(),
                stage.map(|s| s.version.to_string()),
            );
            if let (Some(stage), Some(version)) = (stage, &version) {
                context.extend([
                    ("sluice.transform.slot", stage_index.as_str()),
                    ("sluice.transform.module", module),
                    ("sluice.transform.version", version.as_str()),
                    ("sluice.transform.sha256", stage.module.sha256.as_str()),
                ]);
            }
            sink.dead_letter(&record, &context, acks);
            pipeline.metrics.dead_lettered.fetch_add(1, Relaxed);
            return Ok(());
        }
        match self.shared.on_error {
            OnError::Skip => {
                tracing::warn!(pipeline = %pipeline.name, topic = %self.topic, partition = self.partition,
                    offset = record.offset(), stage = failure.stage, module, kind = %failure.kind,
                    error = %failure.message, "skipping failed record");
                pipeline.metrics.skipped.fetch_add(1, Relaxed);
                Ok(())
            }
            OnError::Stop => Err(PartitionError::RecordFailed {
                topic: self.topic.clone(),
                partition: self.partition,
                offset: record.offset(),
                stage: stage.map_or(String::new(), |_| {
                    format!(" in transform {} ({module})", failure.stage)
                }),
                kind: failure.kind,
                message: failure.message.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_for_death(handle: &mut WorkerHandle) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(reason) = handle.death() {
                return reason;
            }
            assert!(
                Instant::now() < deadline,
                "the worker's death went unnoticed"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_worker_that_dies_is_noticed_with_its_panic_and_keeps_only_what_was_acknowledged() {
        let progress = Progress::new();
        progress.committable.store(41, Relaxed);
        let generation = Arc::new(AtomicU64::new(0));
        let mut handle = WorkerHandle::start("t".into(), progress, generation, |commands| {
            let _first = commands.recv();
            panic!("bug in the worker");
        })
        .unwrap();
        assert_eq!(handle.death(), None, "alive until its first command");
        handle.send(Command::Batch(InputBatchBuilder::new("t", 0)));
        assert_eq!(wait_for_death(&mut handle), "bug in the worker");
        // Later commands are refused, not lost silently, and draining returns at once with
        // what was acknowledged before the death.
        handle.send(Command::Batch(InputBatchBuilder::new("t", 0)));
        assert!(handle.lost);
        let started = Instant::now();
        let progress = handle.drain(Instant::now() + Duration::from_secs(30));
        assert_eq!(progress.committable(), 41);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn batches_wait_while_the_queue_holds_its_bytes_unless_it_is_empty() {
        let batch_of = |bytes: usize| {
            let mut batch = InputBatchBuilder::new("t", 0);
            batch.push(0, None, None, Some(&vec![b'x'; bytes]), []);
            Command::Batch(batch)
        };
        let (open, gate) = std::sync::mpsc::channel::<()>();
        let generation = Arc::new(AtomicU64::new(0));
        let mut handle = WorkerHandle::start("t".into(), Progress::new(), generation, move |c| {
            let _ = gate.recv();
            while c.recv().is_ok() {}
        })
        .unwrap();
        let queued = handle.queued.clone();
        assert!(handle.has_taken_all(), "nothing sent yet");
        // Alone, a batch larger than the bound goes in; the next one waits for the worker.
        handle.send(batch_of(QUEUED_BYTES + 1));
        assert!(!handle.has_taken_all(), "the worker is held at its gate");
        let (sent, second) = std::sync::mpsc::channel();
        let sender = std::thread::spawn(move || {
            handle.send(batch_of(1));
            sent.send(()).unwrap();
            handle
        });
        let watched = Instant::now();
        while watched.elapsed() < Duration::from_millis(200) {
            assert!(second.try_recv().is_err(), "sent past the queue's bytes");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(queued.load(Relaxed) > QUEUED_BYTES);
        open.send(()).unwrap();
        second
            .recv_timeout(Duration::from_secs(10))
            .expect("sent once the worker took the first batch");
        let handle = sender.join().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !handle.has_taken_all() {
            assert!(Instant::now() < deadline, "the worker took every batch");
            std::thread::sleep(Duration::from_millis(5));
        }
        handle.drain(Instant::now() + Duration::from_secs(10));
    }

    #[test]
    fn a_healthy_worker_drains_and_is_not_taken_for_dead() {
        let progress = Progress::new();
        let published = progress.clone();
        let generation = Arc::new(AtomicU64::new(0));
        let mut handle = WorkerHandle::start("t".into(), progress, generation, move |commands| {
            while let Ok(envelope) = commands.recv() {
                if let Command::Drain { reply, .. } = envelope.command {
                    published.committable.store(7, Relaxed);
                    let _ = reply.send(());
                    return;
                }
            }
        })
        .unwrap();
        handle.send(Command::Batch(InputBatchBuilder::new("t", 0)));
        assert_eq!(handle.death(), None);
        assert_eq!(
            handle
                .drain(Instant::now() + Duration::from_secs(30))
                .committable(),
            7
        );
    }
}
