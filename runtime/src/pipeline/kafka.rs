//! Kafka clients: configuration with throughput defaults, and delivery tracking.

use crate::config::{KafkaConfig, PipelineConfig, Start};
use rdkafka::ClientConfig;
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::{ClientContext, message::Message};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Consumer settings Sluice needs for at-least-once, whatever the user sets: offsets are stored
/// by Sluice only once outputs are acknowledged, and auto-commit commits what was stored.
const CONSUMER_REQUIRED: &[(&str, &str)] = &[
    ("enable.auto.offset.store", "false"),
    ("enable.auto.commit", "true"),
];

/// Consumer defaults, tuned for throughput; any of them can be overridden in `[kafka]`.
pub const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    // Commit stored offsets every second: what a crash replays is at most about a second.
    ("auto.commit.interval.ms", "1000"),
    // Per-partition lag for metrics.
    ("statistics.interval.ms", "1000"),
    // Bound the prefetch queue per partition (librdkafka's default is 64 MiB).
    ("queued.max.messages.kbytes", "32768"),
    ("fetch.wait.max.ms", "100"),
    // Fetch up to 4 MiB per partition (librdkafka: 1 MiB): 1.35x the records per second end
    // to end on a 3-partition topic (`make bench-peers`), for about twice the peak memory.
    ("fetch.message.max.bytes", "4194304"),
    ("fetch.max.bytes", "67108864"),
    // Once a partition's prefetch queue is full, look again after 10 ms rather than
    // librdkafka's 1 s, which leaves drained workers idle (`make bench-peers`: 1.35x the
    // records per second alone, 2.1x together with 32 batches in flight per worker).
    ("fetch.queue.backoff.ms", "10"),
];

/// Producer defaults, tuned for throughput rather than librdkafka's latency defaults.
pub const PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    // Ordered, de-duplicated retries: per-partition order survives broker hiccups.
    ("enable.idempotence", "true"),
    ("acks", "all"),
    // Wait up to 10 ms to fill batches of up to 1 MiB, compressed with lz4.
    ("linger.ms", "10"),
    ("batch.size", "1048576"),
    ("batch.num.messages", "10000"),
    ("compression.type", "lz4"),
    ("queue.buffering.max.messages", "500000"),
    ("queue.buffering.max.kbytes", "262144"),
];

fn apply(config: &mut ClientConfig, pairs: impl IntoIterator<Item = (String, String)>) {
    for (k, v) in pairs {
        config.set(k, v);
    }
}

fn owned<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Iterator<Item = (String, String)> + 'a {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()))
}

fn user<'a>(
    map: &'a std::collections::BTreeMap<String, crate::config::Scalar>,
) -> impl Iterator<Item = (String, String)> + 'a {
    map.iter().map(|(k, v)| (k.clone(), v.0.clone()))
}

/// The consumer configuration of `pipeline`.
pub fn consumer_config(kafka: &KafkaConfig, pipeline: &PipelineConfig) -> ClientConfig {
    let mut config = ClientConfig::new();
    apply(&mut config, owned(CONSUMER_DEFAULTS));
    let start = match pipeline.start {
        Start::Earliest => "earliest",
        Start::Latest => "latest",
    };
    config.set("auto.offset.reset", start);
    let group = pipeline
        .group_id
        .clone()
        .unwrap_or_else(|| format!("sluice-{}", pipeline.name));
    config.set("group.id", group);
    config.set("client.id", format!("sluice-{}", pipeline.name));
    apply(&mut config, user(&kafka.common));
    apply(&mut config, user(&kafka.consumer));
    apply(&mut config, owned(CONSUMER_REQUIRED));
    config
}

/// The producer configuration of `pipeline`.
pub fn producer_config(kafka: &KafkaConfig, pipeline: &PipelineConfig) -> ClientConfig {
    let mut config = ClientConfig::new();
    apply(&mut config, owned(PRODUCER_DEFAULTS));
    config.set("client.id", format!("sluice-{}", pipeline.name));
    apply(&mut config, user(&kafka.common));
    apply(&mut config, user(&kafka.producer));
    config
}

/// Counts the deliveries still outstanding for one batch. It starts with one reference held by
/// the batch itself, released by [`Acks::seal`] once every record has been handed to the
/// producer, so it cannot read as complete while records are still being added.
#[derive(Debug)]
pub struct Acks {
    pending: AtomicUsize,
    error: Mutex<Option<String>>,
    lock: Mutex<()>,
    done: Condvar,
}

impl Acks {
    /// Tracking for a new batch.
    pub fn new() -> Arc<Self> {
        Arc::new(Acks {
            pending: AtomicUsize::new(1),
            error: Mutex::new(None),
            lock: Mutex::new(()),
            done: Condvar::new(),
        })
    }

    /// One more record to wait for.
    pub fn expect(&self) {
        self.pending.fetch_add(1, Ordering::AcqRel);
    }

    fn release(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _guard = self.lock.lock().unwrap();
            self.done.notify_all();
        }
    }

    /// A record could not be written; the first error is kept.
    pub fn fail(&self, error: String) {
        self.error.lock().unwrap().get_or_insert(error);
        self.release();
    }

    /// Every record of the batch has been handed over.
    pub fn seal(&self) {
        self.release();
    }

    /// Whether every delivery is in.
    pub fn is_done(&self) -> bool {
        self.pending.load(Ordering::Acquire) == 0
    }

    /// Waits up to `timeout` for every delivery; true when they are all in.
    pub fn wait(&self, timeout: Duration) -> bool {
        let guard = self.lock.lock().unwrap();
        let (_guard, result) = self
            .done
            .wait_timeout_while(guard, timeout, |_| !self.is_done())
            .unwrap();
        !result.timed_out()
    }

    /// The first delivery error, if any.
    pub fn error(&self) -> Option<String> {
        self.error.lock().unwrap().clone()
    }
}

/// Producer context: routes each delivery report to its batch's [`Acks`].
pub struct AckContext;

impl ClientContext for AckContext {}

impl ProducerContext for AckContext {
    type DeliveryOpaque = Arc<Acks>;

    fn delivery(&self, result: &DeliveryResult<'_>, acks: Arc<Acks>) {
        match result {
            Ok(_) => acks.release(),
            Err((error, message)) => {
                acks.fail(format!("cannot write to `{}`: {error}", message.topic()))
            }
        }
    }
}

/// The newest `limit` records of `topic` (per partition at most `limit`, then the newest
/// `limit` overall by timestamp, oldest first), read by assignment: no consumer group, no
/// commits. For the dashboard's dead-letter view.
pub fn read_latest(
    kafka: &KafkaConfig,
    topic: &str,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<rdkafka::message::OwnedMessage>, rdkafka::error::KafkaError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Offset, TopicPartitionList};
    let mut config = ClientConfig::new();
    apply(&mut config, user(&kafka.common));
    apply(&mut config, user(&kafka.consumer));
    config
        .set("group.id", "sluice-read-latest")
        .set("enable.auto.commit", "false")
        .set("client.id", "sluice-api");
    let consumer: BaseConsumer = config.create()?;
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut assignment = TopicPartitionList::new();
    let mut remaining = 0;
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        let (low, high) = consumer.fetch_watermarks(topic, partition.id(), timeout)?;
        let start = (high - limit as i64).max(low);
        if start < high {
            assignment.add_partition_offset(topic, partition.id(), Offset::Offset(start))?;
            remaining += (high - start) as usize;
        }
    }
    let mut records = Vec::with_capacity(remaining);
    if remaining == 0 {
        return Ok(records);
    }
    consumer.assign(&assignment)?;
    let deadline = std::time::Instant::now() + timeout;
    while records.len() < remaining && std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => records.push(message.detach()),
            Some(Err(e)) => return Err(e),
            None => {}
        }
    }
    records.sort_by_key(|m| (m.timestamp().to_millis(), m.partition(), m.offset()));
    let skip = records.len().saturating_sub(limit);
    records.drain(..skip);
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn user_settings_override_defaults_but_not_what_at_least_once_needs() {
        let config = Config::parse(
            r#"
            [kafka]
            "bootstrap.servers" = "b:9092"
            "linger.ms" = 50
            "enable.auto.offset.store" = true
            [kafka.consumer]
            "fetch.wait.max.ms" = 5
            [[pipeline]]
            name = "p"
            inputs = ["a"]
            outputs = ["b"]
            start = "latest"
            "#,
        )
        .unwrap();
        let consumer = consumer_config(&config.kafka, &config.pipeline[0]);
        assert_eq!(consumer.get("bootstrap.servers"), Some("b:9092"));
        assert_eq!(consumer.get("group.id"), Some("sluice-p"));
        assert_eq!(consumer.get("auto.offset.reset"), Some("latest"));
        assert_eq!(consumer.get("fetch.wait.max.ms"), Some("5"));
        assert_eq!(consumer.get("enable.auto.offset.store"), Some("false"));
        let producer = producer_config(&config.kafka, &config.pipeline[0]);
        assert_eq!(producer.get("linger.ms"), Some("50"));
        assert_eq!(producer.get("compression.type"), Some("lz4"));
        assert_eq!(producer.get("fetch.wait.max.ms"), None);
    }

    #[test]
    fn acks_complete_only_once_sealed_and_keep_the_first_error() {
        let acks = Acks::new();
        acks.expect();
        acks.expect();
        acks.release();
        acks.fail("first".into());
        assert!(!acks.is_done(), "not sealed yet");
        acks.seal();
        assert!(acks.is_done() && acks.wait(Duration::ZERO));
        assert_eq!(acks.error().as_deref(), Some("first"));
    }
}
