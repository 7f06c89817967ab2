//! Where stateful transforms keep their state: on local disk, in one embedded store per
//! pipeline ([fjall], a keyspace per slot and task), rebuilt from a compacted changelog topic
//! per stateful slot, which is the state's durable copy (as Kafka Streams keeps its stores).
//!
//! - Every batch's state changes go to the slot's changelog, partition = the task's partition,
//!   through the pipeline's sink: with the batch's outputs, so that at-least-once commits no
//!   offset before they are acknowledged, and exactly-once writes them in the same transaction
//!   as the outputs and offsets.
//! - A task's store is trusted only from a *checkpoint*: the changelog offset it is current
//!   to, written when the task is let go after a successful commit, and removed when the task is
//!   opened again. Without one (a crash, an aborted transaction, a failure), the store is
//!   cleared and rebuilt from the changelog's beginning; with one, only what came after it is
//!   read.
//!
//! fjall was chosen by measurement (`bench/store-choice`): it loads a million keys in 2.3-3 s
//! (a restore from Kafka, which bounds it, takes 7.7 s per million: `make bench`) and stays
//! under 300 MB of memory with 10 million keys.

use super::metrics::PipelineMetrics;
use super::sink::Acks;
use crate::config::{Guarantee, KafkaConfig, PipelineConfig};
use crate::engine::state::{Changes, KeyValueStore, SharedTask, TaskState};
use crate::kafka::{QuietContext, Role, client_config};
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Why a task's state cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The store on disk.
    #[error("the state store in {dir}: {message}")]
    Store {
        /// Its folder.
        dir: String,
        /// What went wrong.
        message: String,
    },
    /// The inputs cannot feed tasks.
    #[error("{0}")]
    Inputs(String),
    /// The changelog topic.
    #[error("changelog topic `{topic}`: {message}")]
    Changelog {
        /// The topic.
        topic: String,
        /// What went wrong.
        message: String,
    },
}

/// How long a request to the broker about a changelog may take.
const TIMEOUT: Duration = Duration::from_secs(30);
/// How long restoring one task may take before it counts as failed.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(600);
/// Changelog records applied to the store per write while restoring.
const RESTORE_BATCH: usize = 4096;

/// The state of one pipeline's stateful slots, for all its tasks on this member.
pub struct StateStores {
    dir: PathBuf,
    kafka: KafkaConfig,
    pipeline: PipelineConfig,
    metrics: Arc<PipelineMetrics>,
    /// Opened on first use, so that stateless pipelines make no folder.
    db: OnceLock<Result<Db, String>>,
    /// Open tasks, by (slot, partition).
    open: Mutex<HashMap<(usize, i32), OpenTask>>,
    /// Per partition number: held while a batch of any input's partition runs through a
    /// stateful chain and its outputs and changes are written, so that the task's changes reach
    /// the changelog in the order they were made.
    task_locks: Mutex<HashMap<i32, Arc<Mutex<TaskWrites>>>>,
    /// Changelog topics known to exist.
    changelogs: Mutex<HashSet<usize>>,
    /// Reads changelogs; see [`StateStores::reader`].
    reader: Mutex<Option<BaseConsumer<QuietContext>>>,
}

/// What a task has written that may not be in the log yet, whichever of its inputs' workers
/// wrote it: its changes stay in order across the sink's slots (see `TaskWrites::keep_order`).
pub struct TaskWrites {
    /// The slot the task's last batch went to.
    slot: Option<usize>,
    /// The deliveries of its batches not known to be done.
    pending: Vec<Arc<Acks>>,
    /// When the task last had a record (or, before any, when this was made).
    last_record: Instant,
    /// When its stream time last moved: with a record, or by the idle timeout.
    last_advance: Instant,
}

impl Default for TaskWrites {
    fn default() -> Self {
        let now = Instant::now();
        TaskWrites {
            slot: None,
            pending: Vec::new(),
            last_record: now,
            last_advance: now,
        }
    }
}

/// How often an idle task's stream time moves on (see [`TaskWrites::idle`]).
pub const IDLE_STEP: Duration = Duration::from_secs(1);

impl TaskWrites {
    /// Notes that the task has records at `now`.
    pub fn active(&mut self, now: Instant) {
        self.last_record = now;
        self.last_advance = now;
    }

    /// With `idle_timeout`: if the task has had no record for that long, how far (in
    /// milliseconds) its stream time moves on at `now`: by the wall-clock time since it last
    /// moved, at most every [`IDLE_STEP`]. So an idle task's stream time is that at its last
    /// record plus the wall-clock time since.
    pub fn idle(&mut self, now: Instant, idle_timeout: Duration) -> Option<i64> {
        if now.duration_since(self.last_record) < idle_timeout
            || now.duration_since(self.last_advance) < IDLE_STEP.min(idle_timeout)
        {
            return None;
        }
        let by = now.duration_since(self.last_advance).as_millis() as i64;
        self.last_advance = now;
        Some(by)
    }

    /// Before a batch of the task goes to `slot`: if that is not the slot of the last one, waits
    /// (until `deadline`) for what went to the last one to be in the log, since the two slots'
    /// producers are independent and a restore applies changes in log order. False if it
    /// waited in vain.
    pub fn keep_order(&mut self, slot: usize, deadline: Instant) -> bool {
        self.pending.retain(|acks| !acks.is_done());
        let in_order = self.slot.is_none_or(|last| last == slot)
            || (self.pending.iter())
                .all(|acks| acks.wait(deadline.saturating_duration_since(Instant::now())));
        self.slot = Some(slot);
        in_order
    }

    /// Notes a batch written with `acks`.
    pub fn written(&mut self, acks: Arc<Acks>) {
        self.pending.push(acks);
    }
}

/// An open task's state, with the generation of aborted transactions it was restored in.
struct OpenTask {
    task: SharedTask,
    generation: u64,
}

#[derive(Clone)]
struct Db {
    db: fjall::Database,
    /// Per task keyspace name: the changelog offset its store is current to.
    checkpoints: fjall::Keyspace,
}

impl StateStores {
    /// State for `pipeline` under `state_dir` (its own folder in `state_dir/state`).
    pub fn new(
        state_dir: &std::path::Path,
        kafka: &KafkaConfig,
        pipeline: &PipelineConfig,
        metrics: Arc<PipelineMetrics>,
    ) -> Self {
        let folder: String = (pipeline.name.chars())
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        StateStores {
            dir: state_dir.join("state").join(folder),
            kafka: kafka.clone(),
            pipeline: pipeline.clone(),
            metrics,
            db: OnceLock::new(),
            open: Mutex::default(),
            task_locks: Mutex::default(),
            changelogs: Mutex::default(),
            reader: Mutex::default(),
        }
    }

    /// The changelog topic of stateful slot `slot` (0-based): `<group>-state-<slot>-changelog`.
    pub fn changelog_topic(&self, slot: usize) -> String {
        format!("{}-state-{slot}-changelog", self.pipeline.group())
    }

    fn store_error(&self, message: impl std::fmt::Display) -> StateError {
        StateError::Store {
            dir: self.dir.display().to_string(),
            message: message.to_string(),
        }
    }

    fn db(&self) -> Result<Db, StateError> {
        let opened = self.db.get_or_init(|| {
            let db = fjall::Database::builder(&self.dir)
                .cache_size(32 << 20)
                .open()
                .map_err(|e| e.to_string())?;
            let checkpoints = db
                .keyspace("checkpoints", fjall::KeyspaceCreateOptions::default)
                .map_err(|e| e.to_string())?;
            Ok(Db { db, checkpoints })
        });
        opened.clone().map_err(|e| self.store_error(e))
    }

    /// See [`StateStores::task_locks`].
    pub fn task_lock(&self, partition: i32) -> Arc<Mutex<TaskWrites>> {
        let mut locks = self.task_locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(partition).or_default().clone()
    }

    /// Slot `slot`'s state for the task of `partition`, in `generation` (of aborted
    /// transactions): the open one if it was opened in this generation (the task's other
    /// inputs share it), or else opened and restored from the changelog: all of it after an
    /// abort or without a checkpoint, what follows the checkpoint otherwise.
    pub fn open(
        &self,
        slot: usize,
        partition: i32,
        generation: u64,
    ) -> Result<SharedTask, StateError> {
        let mut open = self.lock_open();
        let fresh = match open.get(&(slot, partition)) {
            Some(task) if task.generation >= generation => return Ok(task.task.clone()),
            Some(_) => true,
            None => false,
        };
        let task = self.restore_task(slot, partition, fresh)?;
        let replaced = open.insert(
            (slot, partition),
            OpenTask {
                task: task.clone(),
                generation,
            },
        );
        if replaced.is_none() {
            self.metrics.state_tasks.fetch_add(1, Relaxed);
        }
        Ok(task)
    }

    fn restore_task(
        &self,
        slot: usize,
        partition: i32,
        fresh: bool,
    ) -> Result<SharedTask, StateError> {
        let Db { db, checkpoints } = self.db()?;
        let topic = self.changelog_topic(slot);
        self.ensure_changelog(slot, &topic)?;
        let name = format!("slot{slot}-p{partition}");
        let keyspace = db
            .keyspace(&name, || {
                fjall::KeyspaceCreateOptions::default().max_memtable_size(16 << 20)
            })
            .map_err(|e| self.store_error(e))?;
        // The checkpoint is used once: until the task is let go cleanly, the store may hold
        // changes that never made it to the changelog.
        let checkpoint = checkpoints
            .get(&name)
            .map_err(|e| self.store_error(e))?
            .and_then(|v| Some(i64::from_be_bytes(v.as_ref().try_into().ok()?)))
            .filter(|_| !fresh);
        checkpoints.remove(&name).map_err(|e| self.store_error(e))?;
        if checkpoint.is_none() {
            keyspace.clear().map_err(|e| self.store_error(e))?;
        }
        db.persist(fjall::PersistMode::SyncAll)
            .map_err(|e| self.store_error(e))?;
        let mut store = DiskStore {
            db: db.clone(),
            keyspace,
            failure: OnceLock::new(),
        };
        let metrics = &self.metrics;
        metrics.state_restoring.fetch_add(1, Relaxed);
        let started = Instant::now();
        let restored = self.restore(&topic, partition, checkpoint, &mut store);
        metrics.state_restoring.fetch_sub(1, Relaxed);
        let Restored { from, to, records } = restored?;
        if let Some(failure) = store.failure() {
            return Err(self.store_error(failure));
        }
        tracing::info!(pipeline = %self.pipeline.name, slot, partition, records, from, to, from_checkpoint = checkpoint.is_some(),
            ms = started.elapsed().as_millis() as u64, event = "state_restored", "state restored from its changelog");
        Ok(Arc::new(Mutex::new(TaskState::new(Box::new(store)))))
    }

    /// After the tasks of `partitions` were let go: with `committed`, the stores of those
    /// restored in the current `generation` (of aborted transactions) are current to their
    /// changelogs, whose ends are noted as their checkpoints. The others (a commit that failed,
    /// a failure, or a task that still holds changes of an aborted transaction because no
    /// batch has come to restore it since) are left without one, to be rebuilt when opened again.
    pub fn close(&self, partitions: &[i32], committed: bool, generation: u64) {
        let (current, stale): (Vec<_>, Vec<_>) = {
            let mut open = self.lock_open();
            let keys: Vec<_> = (open.keys())
                .filter(|(_, p)| partitions.contains(p))
                .copied()
                .collect();
            (keys.into_iter())
                .filter_map(|k| open.remove(&k).map(|t| (k, t)))
                .partition(|(_, t)| committed && t.generation == generation)
        };
        let closed = current.len() + stale.len();
        self.metrics.state_tasks.fetch_sub(closed as u64, Relaxed);
        if !stale.is_empty() {
            tracing::info!(pipeline = %self.pipeline.name, tasks = stale.len(),
                "state let go without a checkpoint; it is restored from the changelog next time");
        }
        let current: Vec<_> = current.into_iter().map(|(k, t)| (k, t.task)).collect();
        if !current.is_empty()
            && let Err(error) = self.checkpoint(&current)
        {
            tracing::warn!(pipeline = %self.pipeline.name, %error, event = "state_checkpoint_failed",
                "cannot note where the state stores are; they are restored from the changelog next time");
        }
    }

    fn checkpoint(&self, tasks: &[((usize, i32), SharedTask)]) -> Result<(), StateError> {
        let Db { db, checkpoints } = self.db()?;
        let reader = self.reader()?;
        let consumer = reader.as_ref().expect("made by reader()");
        for ((slot, partition), task) in tasks {
            if crate::engine::state::lock(task).failure().is_some() {
                continue;
            }
            let topic = self.changelog_topic(*slot);
            let (_, end) = watermarks(consumer, &topic, *partition)?;
            // The store's writes are in the journal before the checkpoint that vouches for them.
            db.persist(fjall::PersistMode::SyncAll)
                .map_err(|e| self.store_error(e))?;
            checkpoints
                .insert(format!("slot{slot}-p{partition}"), end.to_be_bytes())
                .map_err(|e| self.store_error(e))?;
        }
        db.persist(fjall::PersistMode::SyncAll)
            .map_err(|e| self.store_error(e))
    }

    fn lock_open(&self) -> std::sync::MutexGuard<'_, HashMap<(usize, i32), OpenTask>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The consumer that reads changelogs by assignment, made on first use. It reads as an
    /// exactly-once pipeline does: only committed changes.
    fn reader(
        &self,
    ) -> Result<std::sync::MutexGuard<'_, Option<BaseConsumer<QuietContext>>>, StateError> {
        let mut reader = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        if reader.is_none() {
            let group = format!("{}-state-restore", self.pipeline.group());
            let mut config = client_config(
                &self.kafka,
                Role::Reader { group: &group },
                &format!("sluice-{}-restore", self.pipeline.name),
            );
            if self.pipeline.guarantee == Guarantee::ExactlyOnce {
                config.set("isolation.level", "read_committed");
            }
            let consumer = config
                .create_with_context(QuietContext)
                .map_err(|e| self.store_error(format!("cannot create a Kafka consumer: {e}")))?;
            *reader = Some(consumer);
        }
        Ok(reader)
    }

    /// Reads `topic`/`partition` from `checkpoint` (or its beginning) to its end into `store`.
    /// The end is the end the broker reports when the restore starts: reading read_committed,
    /// the last stable offset, where committed records end.
    fn restore(
        &self,
        topic: &str,
        partition: i32,
        checkpoint: Option<i64>,
        store: &mut DiskStore,
    ) -> Result<Restored, StateError> {
        let reader = self.reader()?;
        let consumer = reader.as_ref().expect("made by reader()");
        let (low, high) = watermarks(consumer, topic, partition)?;
        let start = checkpoint.map_or(low, |c| c.max(low));
        let mut restored = Restored {
            from: start,
            to: high,
            records: 0,
        };
        if start >= high {
            return Ok(restored);
        }
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(topic, partition, Offset::Offset(start))
            .map_err(|e| changelog_error(topic, e))?;
        consumer
            .assign(&list)
            .map_err(|e| changelog_error(topic, e))?;
        let deadline = Instant::now() + RESTORE_TIMEOUT;
        let (records, mut changes) = (&mut restored.records, Changes::new());
        let mut errors = 0;
        let result = loop {
            if Instant::now() > deadline {
                break Err(StateError::Changelog {
                    topic: topic.to_string(),
                    message: format!(
                        "restoring partition {partition} took longer than {} s",
                        RESTORE_TIMEOUT.as_secs()
                    ),
                });
            }
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => {
                    if let Some(key) = message.key() {
                        changes.insert(key.to_vec(), message.payload().map(<[u8]>::to_vec));
                    }
                    *records += 1;
                    if changes.len() >= RESTORE_BATCH {
                        self.metrics
                            .state_restored_records
                            .fetch_add(changes.len() as u64, Relaxed);
                        store.apply(&std::mem::take(&mut changes));
                    }
                    if message.offset() + 1 >= high {
                        break Ok(());
                    }
                }
                // An end-of-partition event can come before the end (after a fetch of only
                // aborted records or commit markers): the position says whether it is.
                Some(Err(KafkaError::PartitionEOF(_)))
                    if position(consumer, topic, partition) >= high =>
                {
                    break Ok(());
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(error)) => {
                    errors += 1;
                    if errors <= 3 {
                        tracing::warn!(pipeline = %self.pipeline.name, topic, partition, %error,
                            event = "changelog_read_failed", "cannot read the changelog; retrying");
                    }
                }
                None => {}
            }
        };
        let _ = consumer.unassign();
        result?;
        self.metrics
            .state_restored_records
            .fetch_add(changes.len() as u64, Relaxed);
        store.apply(&changes);
        Ok(restored)
    }

    /// Creates slot `slot`'s changelog unless it exists: compacted, with as many partitions as
    /// the inputs, so that task `p` writes partition `p`. Checks that an existing one has as
    /// many.
    fn ensure_changelog(&self, slot: usize, topic: &str) -> Result<(), StateError> {
        if self.changelogs.lock().unwrap().contains(&slot) {
            return Ok(());
        }
        let admin: AdminClient<QuietContext> =
            client_config(&self.kafka, Role::Admin, "sluice-state")
                .create_with_context(QuietContext)
                .map_err(|e| changelog_error(topic, e))?;
        let partitions = |name: &str| -> Result<Option<usize>, StateError> {
            let metadata = admin
                .inner()
                .fetch_metadata(Some(name), TIMEOUT)
                .map_err(|e| changelog_error(topic, e))?;
            Ok(metadata
                .topics()
                .iter()
                .find(|t| t.name() == name && t.error().is_none() && !t.partitions().is_empty())
                .map(|t| t.partitions().len()))
        };
        let wanted = self.input_partitions(&admin)?;
        let have = match partitions(topic)? {
            Some(have) => have,
            None => {
                let new = NewTopic::new(topic, wanted as i32, TopicReplication::Fixed(-1))
                    .set("cleanup.policy", "compact");
                let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
                let created = futures::executor::block_on(admin.create_topics([&new], &options))
                    .map_err(|e| changelog_error(topic, e))?;
                match created.into_iter().next() {
                    Some(Ok(_)) => {
                        tracing::info!(pipeline = %self.pipeline.name, topic, partitions = wanted,
                            event = "changelog_created", "created a state changelog topic")
                    }
                    Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) | None => {}
                    Some(Err((_, code))) => {
                        return Err(StateError::Changelog {
                            topic: topic.to_string(),
                            message: format!(
                                "cannot create it ({code}); create it compacted with {wanted} partitions, or grant CREATE on it"
                            ),
                        });
                    }
                }
                wanted
            }
        };
        if have < wanted {
            return Err(StateError::Changelog {
                topic: topic.to_string(),
                message: format!(
                    "it has {have} partitions, fewer than the inputs' {wanted}: each task needs its own; add partitions to it"
                ),
            });
        }
        self.changelogs.lock().unwrap().insert(slot);
        Ok(())
    }
}

impl StateStores {
    /// Checks that the pipeline's inputs are co-partitioned, as its tasks need: every input
    /// has the same number of partitions. Returns that number.
    pub fn check_inputs(&self) -> Result<usize, StateError> {
        let admin: AdminClient<QuietContext> =
            client_config(&self.kafka, Role::Admin, "sluice-state")
                .create_with_context(QuietContext)
                .map_err(|e| self.store_error(format!("cannot create a Kafka client: {e}")))?;
        self.input_partitions(&admin)
    }

    fn input_partitions(&self, admin: &AdminClient<QuietContext>) -> Result<usize, StateError> {
        let inputs = &self.pipeline.inputs;
        let mut counts = Vec::new();
        for input in inputs {
            let metadata = admin
                .inner()
                .fetch_metadata(Some(input), TIMEOUT)
                .map_err(|e| StateError::Inputs(format!("cannot read `{input}`: {e}")))?;
            let count = (metadata.topics().iter())
                .find(|t| t.name() == input && t.error().is_none())
                .map_or(0, |t| t.partitions().len());
            if count == 0 {
                return Err(StateError::Inputs(format!(
                    "input topic `{input}` does not exist; a stateful pipeline needs its inputs before it starts"
                )));
            }
            counts.push(count);
        }
        if counts.iter().any(|&c| c != counts[0]) {
            let listed: Vec<String> = (inputs.iter().zip(&counts))
                .map(|(t, c)| format!("`{t}` has {c}"))
                .collect();
            return Err(StateError::Inputs(format!(
                "the inputs are not co-partitioned: {}; a stateful pipeline joins partition p of every input in one task, so they need the same number of partitions (and the same key partitioning)",
                listed.join(", ")
            )));
        }
        Ok(counts[0])
    }
}

/// Where `consumer` reads `topic`/`partition` next (-1 if unknown).
fn position(consumer: &BaseConsumer<QuietContext>, topic: &str, partition: i32) -> i64 {
    (consumer.position().ok())
        .and_then(|list| list.find_partition(topic, partition)?.offset().to_raw())
        .unwrap_or(-1)
}

/// The low and high watermarks of `topic`/`partition`, asked again for up to [`TIMEOUT`] while
/// the client does not know the partition yet (a changelog just created: the metadata it
/// cached may not have every partition).
fn watermarks(
    consumer: &BaseConsumer<QuietContext>,
    topic: &str,
    partition: i32,
) -> Result<(i64, i64), StateError> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match consumer.fetch_watermarks(topic, partition, TIMEOUT) {
            Ok(watermarks) => return Ok(watermarks),
            Err(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
                // Refreshes the client's metadata of the topic.
                let _ = consumer.fetch_metadata(Some(topic), TIMEOUT);
            }
            Err(error) => return Err(changelog_error(topic, error)),
        }
    }
}

fn changelog_error(topic: &str, error: KafkaError) -> StateError {
    StateError::Changelog {
        topic: topic.to_string(),
        message: error.to_string(),
    }
}

/// What a restore read: records from offset `from` up to `to`.
struct Restored {
    from: i64,
    to: i64,
    records: u64,
}

/// A task's keyspace in the pipeline's store.
struct DiskStore {
    db: fjall::Database,
    keyspace: fjall::Keyspace,
    /// The first error: the task's state can no longer be trusted.
    failure: OnceLock<String>,
}

impl DiskStore {
    fn failed<T>(&self, result: fjall::Result<T>) -> Option<T> {
        result
            .map_err(|e| {
                let _ = self.failure.set(e.to_string());
            })
            .ok()
    }
}

impl KeyValueStore for DiskStore {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.failed(self.keyspace.get(key))
            .flatten()
            .map(|v| v.to_vec())
    }

    fn scan(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let range = match end {
            Some(end) => self.keyspace.range(start.to_vec()..end.to_vec()),
            None => self.keyspace.range(start.to_vec()..),
        };
        let mut entries = Vec::new();
        for guard in range.take(limit) {
            match self.failed(guard.into_inner()) {
                Some((k, v)) => entries.push((k.to_vec(), v.to_vec())),
                None => break,
            }
        }
        entries
    }

    fn apply(&mut self, changes: &Changes) {
        let mut batch = self.db.batch();
        for (key, value) in changes {
            match value {
                Some(value) => batch.insert(&self.keyspace, key.as_slice(), value.as_slice()),
                None => batch.remove(&self.keyspace, key.as_slice()),
            }
        }
        self.failed(batch.commit());
    }

    fn failure(&self) -> Option<String> {
        self.failure.get().cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_task_moves_on_by_the_wall_clock_once_idle_for_the_timeout() {
        let mut task = TaskWrites::default();
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        task.active(start);
        let timeout = Duration::from_millis(500);
        assert_eq!(task.idle(at(499), timeout), None, "not idle yet");
        assert_eq!(
            task.idle(at(500), timeout),
            Some(500),
            "the time since the last record"
        );
        assert_eq!(task.idle(at(900), timeout), None, "at most every IDLE_STEP");
        assert_eq!(task.idle(at(1_700), timeout), Some(1_200));
        task.active(at(2_000));
        assert_eq!(
            task.idle(at(2_400), timeout),
            None,
            "a record makes it active again"
        );
        assert_eq!(task.idle(at(2_600), timeout), Some(600));
    }
}
