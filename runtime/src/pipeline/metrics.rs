//! Per-pipeline counters, kept in-process for logs, the metrics endpoint and the dashboard.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the batch latency histogram, in microseconds.
pub const LATENCY_BUCKETS_US: [u64; 12] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];

/// Where a pipeline is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Joining its consumer group.
    Starting,
    /// Consuming and writing.
    Running,
    /// Draining in-flight batches before it stops.
    Stopping,
    /// Stopped after a graceful stop.
    Stopped,
    /// Stopped because of this error.
    Failed(String),
}

/// One counter per topic of a fixed list.
#[derive(Debug, Default)]
pub struct TopicCounters(Vec<(String, AtomicU64)>);

impl TopicCounters {
    fn new(topics: &[String]) -> Self {
        TopicCounters(
            topics
                .iter()
                .map(|t| (t.clone(), AtomicU64::new(0)))
                .collect(),
        )
    }

    /// Adds `n` to the counter of `topic` (a topic not in the list is not counted).
    pub fn add(&self, topic: &str, n: u64) {
        if let Some((_, counter)) = self.0.iter().find(|(t, _)| t == topic) {
            counter.fetch_add(n, Relaxed);
        }
    }

    /// Adds `n` to the counter of the topic at `index` in the list.
    pub fn add_at(&self, index: usize, n: u64) {
        if let Some((_, counter)) = self.0.get(index) {
            counter.fetch_add(n, Relaxed);
        }
    }

    /// Each topic with its count.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0.iter().map(|(t, c)| (t.as_str(), c.load(Relaxed)))
    }

    /// The sum over every topic.
    pub fn total(&self) -> u64 {
        self.iter().map(|(_, n)| n).sum()
    }
}

/// Counters of one pipeline. All are totals since the process started.
#[derive(Debug)]
pub struct PipelineMetrics {
    /// The pipeline's name.
    pub name: String,
    /// Records consumed, per input topic.
    pub consumed: TopicCounters,
    /// Records written (acknowledged or not yet), per output topic.
    pub produced: TopicCounters,
    /// Records whose transform failed, per input topic.
    pub failed: TopicCounters,
    /// Failed records written to the dead-letter topic.
    pub dead_lettered: AtomicU64,
    /// Failed records skipped (`on_error = "skip"`).
    pub skipped: AtomicU64,
    /// Batches run through the chain.
    pub batches: AtomicU64,
    /// Sum of batch latencies, in microseconds.
    pub batch_latency_us_sum: AtomicU64,
    /// Batch latency histogram: counts per bucket of [`LATENCY_BUCKETS_US`], plus one for more.
    pub batch_latency_buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    /// Trapped instances that were started afresh.
    pub instance_restarts: AtomicU64,
    /// Partition workers that died (each stops the pipeline).
    pub worker_deaths: AtomicU64,
    /// Exactly-once: transactions committed.
    pub transactions_committed: AtomicU64,
    /// Exactly-once: transactions aborted (their records are processed again).
    pub transactions_aborted: AtomicU64,
    /// Reports of an assigned partition left waiting for the group's committed offset.
    pub committed_offset_waits: AtomicU64,
    /// Exactly-once: when the last transaction committed, in milliseconds since the Unix
    /// epoch (0 before the first).
    pub last_commit_ms: AtomicU64,
    /// Exactly-once: why the last transaction was aborted.
    pub last_abort: Mutex<Option<String>>,
    /// Partition workers that switched to a newly deployed chain.
    pub swaps: AtomicU64,
    /// The longest a partition waited for a switch (new instances starting), in microseconds.
    pub swap_pause_max_us: AtomicU64,
    /// Consumer lag per input partition, from librdkafka's statistics.
    pub lag: Mutex<BTreeMap<(String, i32), i64>>,
    /// The input partitions the group has assigned to this process.
    pub assigned: Mutex<std::collections::BTreeSet<(String, i32)>>,
    /// Stateful transforms: tasks whose state is open (restored, or being restored).
    pub state_tasks: AtomicU64,
    /// Stateful transforms: tasks restoring their state from its changelog right now (their
    /// partitions wait).
    pub state_restoring: AtomicU64,
    /// Stateful transforms: changelog records read to restore state.
    pub state_restored_records: AtomicU64,
    /// Stateful transforms: changes written to changelogs.
    pub changelog_records: AtomicU64,
    /// Where the pipeline is.
    pub status: Mutex<Status>,
}

impl PipelineMetrics {
    /// Zeroed counters for pipeline `name`, which reads `inputs` and writes `outputs`.
    pub fn new(name: &str, inputs: &[String], outputs: &[String]) -> Self {
        PipelineMetrics {
            name: name.to_string(),
            consumed: TopicCounters::new(inputs),
            produced: TopicCounters::new(outputs),
            failed: TopicCounters::new(inputs),
            dead_lettered: AtomicU64::new(0),
            state_tasks: AtomicU64::new(0),
            state_restoring: AtomicU64::new(0),
            state_restored_records: AtomicU64::new(0),
            changelog_records: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            batch_latency_us_sum: AtomicU64::new(0),
            batch_latency_buckets: Default::default(),
            instance_restarts: AtomicU64::new(0),
            worker_deaths: AtomicU64::new(0),
            transactions_committed: AtomicU64::new(0),
            transactions_aborted: AtomicU64::new(0),
            committed_offset_waits: AtomicU64::new(0),
            last_commit_ms: AtomicU64::new(0),
            last_abort: Mutex::new(None),
            swaps: AtomicU64::new(0),
            swap_pause_max_us: AtomicU64::new(0),
            lag: Mutex::new(BTreeMap::new()),
            assigned: Mutex::default(),
            status: Mutex::new(Status::Starting),
        }
    }

    /// Records one batch's latency.
    pub fn observe_batch(&self, latency: Duration) {
        let us = latency.as_micros() as u64;
        self.batches.fetch_add(1, Relaxed);
        self.batch_latency_us_sum.fetch_add(us, Relaxed);
        let bucket = LATENCY_BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.batch_latency_buckets[bucket].fetch_add(1, Relaxed);
    }

    /// Records one partition's switch to a newly deployed chain.
    pub fn observe_swap(&self, pause: Duration) {
        self.swaps.fetch_add(1, Relaxed);
        self.swap_pause_max_us
            .fetch_max(pause.as_micros() as u64, Relaxed);
    }

    /// Records a committed transaction.
    pub fn observe_commit(&self) {
        self.transactions_committed.fetch_add(1, Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        self.last_commit_ms.store(now.as_millis() as u64, Relaxed);
    }

    /// Records an aborted transaction and why.
    pub fn observe_abort(&self, cause: &str) {
        self.transactions_aborted.fetch_add(1, Relaxed);
        *self.last_abort.lock().unwrap() = Some(cause.to_string());
    }

    /// Records a report of a partition left waiting for its committed offset.
    pub fn observe_offset_wait(&self) {
        self.committed_offset_waits.fetch_add(1, Relaxed);
    }

    /// Sets the status, unless the pipeline already failed (the first error is the one to keep).
    pub fn set_status(&self, status: Status) {
        let mut current = self.status.lock().unwrap();
        if !matches!(*current, Status::Failed(_)) {
            *current = status;
        }
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.status.lock().unwrap().clone()
    }

    /// Total consumer lag over every input partition.
    pub fn total_lag(&self) -> i64 {
        self.lag.lock().unwrap().values().sum()
    }
}
