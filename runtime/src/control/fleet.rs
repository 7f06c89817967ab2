//! A fleet's control plane in Kafka, as Kafka Connect keeps its config topic: two compacted
//! one-partition topics, `_sluice.<fleet>.modules` (module bytes in chunks, and a record per
//! module version) and `_sluice.<fleet>.deployments` (a record per pipeline: what its slots run,
//! whether it is paused). A change is written to a topic first, and every member, the writer
//! included, applies it from there, in the topic's order; a member started with an empty
//! `state_dir` reads both topics from the beginning before it starts its pipelines.

use crate::config::{FleetConfig, KafkaConfig};
use crate::kafka::{QuietContext, Role, client_config};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Module bytes per record: under the broker's default message limit (1 MiB), with room for
/// the key.
pub const CHUNK_BYTES: usize = 512 * 1024;

/// How long a start-up may take to read the fleet's topics, and a change to be applied.
const CATCH_UP: Duration = Duration::from_secs(60);

/// Which of the fleet's topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// `_sluice.<fleet>.modules`.
    Modules = 0,
    /// `_sluice.<fleet>.deployments`.
    Deployments = 1,
}

/// Why the fleet's topics cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The topics could not be created or found.
    #[error(
        "fleet `{fleet}`: cannot create its topics ({topics}): {source}; a member without the right to create topics can run alone: remove [fleet] to keep modules and deployments in state_dir"
    )]
    Topics {
        /// The fleet.
        fleet: String,
        /// The topics' names.
        topics: String,
        /// What the broker said.
        #[source]
        source: Box<KafkaError>,
    },
    /// A client could not be made or used.
    #[error("fleet topics: {0}")]
    Kafka(#[source] Box<KafkaError>),
    /// A write was not applied in time.
    #[error("fleet topic `{topic}`: {what} within {seconds} s")]
    Timeout {
        /// The topic.
        topic: String,
        /// What did not happen.
        what: &'static str,
        /// How long it waited.
        seconds: u64,
    },
}

impl From<KafkaError> for FleetError {
    fn from(error: KafkaError) -> Self {
        FleetError::Kafka(Box::new(error))
    }
}

/// The fleet's topics: writing changes, and knowing what this member has applied.
pub struct FleetLog {
    fleet: String,
    topics: [String; 2],
    producer: FutureProducer<QuietContext>,
    /// Per topic, the offset after the last record applied.
    applied: Mutex<[i64; 2]>,
    changed: Condvar,
}

impl FleetLog {
    /// Creates the fleet's topics if they are missing, and a producer for them.
    pub fn connect(kafka: &KafkaConfig, fleet: &FleetConfig) -> Result<Arc<FleetLog>, FleetError> {
        let topics = [
            format!("_sluice.{}.modules", fleet.name),
            format!("_sluice.{}.deployments", fleet.name),
        ];
        create_topics(kafka, fleet, &topics).map_err(|source| FleetError::Topics {
            fleet: fleet.name.clone(),
            topics: topics.join(", "),
            source: Box::new(source),
        })?;
        let mut config = client_config(kafka, Role::TrafficProducer, "sluice-fleet");
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "0")
            .set("compression.type", "none")
            .set("message.max.bytes", "1000000");
        Ok(Arc::new(FleetLog {
            fleet: fleet.name.clone(),
            topics,
            producer: config.create_with_context(QuietContext)?,
            applied: Mutex::new([0, 0]),
            changed: Condvar::new(),
        }))
    }

    /// The fleet's name.
    pub fn name(&self) -> &str {
        &self.fleet
    }

    /// Reads both topics from the beginning on a thread of its own, handing every record to
    /// `apply` in order, for as long as the process runs; returns once what the topics held
    /// when it was called is applied.
    pub fn follow(
        self: &Arc<Self>,
        kafka: &KafkaConfig,
        mut apply: impl FnMut(Topic, &str, Option<&[u8]>) + Send + 'static,
    ) -> Result<(), FleetError> {
        let group = format!("sluice-fleet-{}", self.fleet);
        let consumer: BaseConsumer<QuietContext> =
            client_config(kafka, Role::Reader { group: &group }, "sluice-fleet-reader")
                .set("fetch.max.bytes", "8388608")
                .create_with_context(QuietContext)?;
        let mut list = TopicPartitionList::new();
        let mut ends = [0i64; 2];
        for (i, topic) in self.topics.iter().enumerate() {
            list.add_partition_offset(topic, 0, Offset::Beginning)?;
            ends[i] = consumer
                .fetch_watermarks(topic, 0, Duration::from_secs(10))?
                .1;
        }
        consumer.assign(&list)?;
        let log = self.clone();
        std::thread::Builder::new()
            .name(format!("sluice-fleet-{}", self.fleet))
            .spawn(move || {
                loop {
                    match consumer.poll(Duration::from_millis(100)) {
                        Some(Ok(message)) => {
                            let topic = if message.topic() == log.topics[0] {
                                Topic::Modules
                            } else {
                                Topic::Deployments
                            };
                            let key = String::from_utf8_lossy(message.key().unwrap_or_default());
                            apply(topic, &key, message.payload());
                            log.applied_up_to(topic, message.offset() + 1);
                        }
                        Some(Err(KafkaError::PartitionEOF(_))) | None => {}
                        Some(Err(error)) => {
                            tracing::warn!(event = "fleet_read_failed", %error, "cannot read the fleet's topics; retrying");
                            std::thread::sleep(Duration::from_millis(500));
                        }
                    }
                }
            })
            .map_err(|e| KafkaError::Subscription(e.to_string()))?;
        for (i, end) in ends.into_iter().enumerate() {
            let topic = if i == 0 {
                Topic::Modules
            } else {
                Topic::Deployments
            };
            self.wait_applied(topic, end, "was not read to its end at start-up")?;
        }
        Ok(())
    }

    /// Waits until this member has applied what both topics hold now, so that a change made
    /// through it builds on every change made through other members before.
    pub fn sync(&self) -> Result<(), FleetError> {
        for (i, topic) in [Topic::Modules, Topic::Deployments].into_iter().enumerate() {
            let (_, end) = (self.producer.client()).fetch_watermarks(
                &self.topics[i],
                0,
                Duration::from_secs(10),
            )?;
            self.wait_applied(topic, end, "was not read to its end")?;
        }
        Ok(())
    }

    /// Writes `value` under `key` to `topic`, then waits until this member has applied it.
    pub fn publish(&self, topic: Topic, key: &str, value: &[u8]) -> Result<(), FleetError> {
        let next = self.write(topic, key, value)? + 1;
        self.wait_applied(topic, next, "did not come back to be applied")
    }

    /// Writes `value` under `key` to `topic`; returns its offset once the broker has it.
    pub fn write(&self, topic: Topic, key: &str, value: &[u8]) -> Result<i64, FleetError> {
        let name = &self.topics[topic as usize];
        let record = FutureRecord::to(name).key(key).payload(value).partition(0);
        let delivered = futures::executor::block_on(self.producer.send(record, CATCH_UP));
        delivered
            .map(|delivery| delivery.offset)
            .map_err(|(error, _)| FleetError::from(error))
    }

    fn applied_up_to(&self, topic: Topic, next: i64) {
        let mut applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        applied[topic as usize] = next;
        self.changed.notify_all();
    }

    fn wait_applied(&self, topic: Topic, next: i64, what: &'static str) -> Result<(), FleetError> {
        let deadline = Instant::now() + CATCH_UP;
        let mut applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        while applied[topic as usize] < next {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(FleetError::Timeout {
                    topic: self.topics[topic as usize].clone(),
                    what,
                    seconds: CATCH_UP.as_secs(),
                });
            }
            applied = (self.changed.wait_timeout(applied, left))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Ok(())
    }
}

/// Creates the compacted one-partition topics of a fleet; ones that exist are left as they are.
fn create_topics(
    kafka: &KafkaConfig,
    fleet: &FleetConfig,
    topics: &[String],
) -> Result<(), KafkaError> {
    let admin: AdminClient<QuietContext> = client_config(kafka, Role::Admin, "sluice-fleet-admin")
        .create_with_context(QuietContext)?;
    let replication = match fleet.replication_factor {
        Some(factor) => factor,
        None => {
            let metadata = admin
                .inner()
                .fetch_metadata(None, Duration::from_secs(10))?;
            (metadata.brokers().len() as i32).clamp(1, 3)
        }
    };
    let new: Vec<NewTopic<'_>> = (topics.iter())
        .map(|topic| {
            NewTopic::new(topic, 1, TopicReplication::Fixed(replication))
                .set("cleanup.policy", "compact")
                .set("retention.ms", "-1")
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let created = futures::executor::block_on(admin.create_topics(&new, &options))?;
    for result in created {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(KafkaError::AdminOp(code)),
        }
    }
    Ok(())
}

/// The key of chunk `index` of `count` of the module bytes hashing to `sha256`.
pub fn chunk_key(sha256: &str, index: usize, count: usize) -> String {
    format!("chunk/{sha256}/{index}/{count}")
}

/// The key of the record making the bytes hashing to `sha256` a version of module `name`.
pub fn module_key(name: &str, sha256: &str) -> String {
    format!("module/{name}/{sha256}")
}

/// The key of pipeline `name`'s deployments.
pub fn pipeline_key(name: &str) -> String {
    format!("pipeline/{name}")
}
