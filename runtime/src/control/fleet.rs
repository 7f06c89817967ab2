//! A fleet's control plane in Kafka, as Kafka Connect keeps its config and status topics: three
//! one-partition topics, `_sluice.<fleet>.modules` (compacted: module bytes in chunks, and a
//! record per module version), `_sluice.<fleet>.deployments` (compacted: a record per pipeline,
//! what its slots run and whether it is paused) and `_sluice.<fleet>.status` (each member's
//! heartbeat, kept for minutes only). A change is written to a topic first, and every member,
//! the writer included, applies it from there, in the topic's order; a member started with an
//! empty `state_dir` reads the first two topics from the beginning before it starts its
//! pipelines.

use crate::config::{FleetConfig, KafkaConfig};
use crate::kafka::{QuietContext, Role, client_config};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use utoipa::ToSchema;

/// Module bytes per record: under the broker's default message limit (1 MiB), with room for
/// the key.
pub const CHUNK_BYTES: usize = 512 * 1024;

/// How long a start-up may take to read the fleet's topics, and a change to be applied.
const CATCH_UP: Duration = Duration::from_secs(60);

/// How often a member writes its heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(2);

/// A member whose last heartbeat is older than this is shown as missing, and its figures leave
/// the fleet's totals: three heartbeats missed.
pub const MEMBER_TIMEOUT: Duration = Duration::from_secs(3 * HEARTBEAT.as_secs());

/// How long the status topic keeps heartbeats (`retention.ms`): what a member starting reads
/// of it, and how long a member that died without a word stays listed as missing.
const STATUS_RETENTION: Duration = Duration::from_secs(600);

/// Which of the fleet's topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// `_sluice.<fleet>.modules`.
    Modules = 0,
    /// `_sluice.<fleet>.deployments`.
    Deployments = 1,
    /// `_sluice.<fleet>.status`.
    Status = 2,
}

impl Topic {
    const ALL: [Topic; 3] = [Topic::Modules, Topic::Deployments, Topic::Status];
}

/// What a member's heartbeat says of it: written to the status topic every [`HEARTBEAT`].
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct MemberStatus {
    /// The member's id, kept in its `state_dir` (`member-id`).
    pub id: String,
    /// Where its API and dashboard are served.
    pub address: String,
    /// Its Sluice version.
    pub version: String,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_at: i64,
    /// When it wrote this heartbeat, in milliseconds since the Unix epoch.
    pub heartbeat_at: i64,
    /// Per pipeline, in configuration order.
    pub pipelines: Vec<MemberPipeline>,
}

/// A pipeline as one member runs it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct MemberPipeline {
    /// The pipeline.
    pub name: String,
    /// Its status on this member.
    pub status: crate::api::model::Status,
    /// The input partitions the group assigned to this member.
    pub partitions: Vec<AssignedPartition>,
    /// Records per second in, out and failed on this member.
    pub rates: crate::api::model::Rates,
    /// Records not yet consumed from this member's partitions.
    pub lag: i64,
    /// What each transform slot runs on this member, in chain order.
    pub slots: Vec<RunningSlot>,
}

/// One input partition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
pub struct AssignedPartition {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
}

/// What a transform slot runs on a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunningSlot {
    /// The module.
    pub module: String,
    /// Its version.
    pub version: u32,
}

/// The latest heartbeat of each member, as the status topic says.
#[derive(Debug, Default)]
pub struct Members {
    /// By member id: its status, and when it was written as this member's clock sees it (the
    /// heartbeat's time, but never later than when it was read).
    latest: Mutex<BTreeMap<String, (MemberStatus, i64)>>,
}

impl Members {
    /// Applies a status record: `None` is a member that left.
    fn apply(&self, key: &str, value: Option<&[u8]>) {
        let Some(id) = key.strip_prefix(MEMBER_PREFIX) else {
            return;
        };
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        let Some(value) = value else {
            latest.remove(id);
            return;
        };
        match serde_json::from_slice::<MemberStatus>(value) {
            Ok(status) if status.id == id => {
                let seen = status.heartbeat_at.min(now_ms());
                latest.insert(id.to_string(), (status, seen));
            }
            Ok(_) => {
                tracing::warn!(
                    event = "fleet_record_refused",
                    key,
                    "a heartbeat under another member's key: ignored"
                )
            }
            Err(error) => {
                tracing::warn!(event = "fleet_record_refused", key, %error, "a heartbeat that is not a member's status: ignored")
            }
        }
    }

    /// Every member's latest status with when it was written, heartbeats older than the
    /// status topic's retention left out.
    pub fn latest(&self) -> Vec<(MemberStatus, i64)> {
        let oldest = now_ms() - STATUS_RETENTION.as_millis() as i64;
        let latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        (latest.values())
            .filter(|(_, seen)| *seen >= oldest)
            .cloned()
            .collect()
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
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
    topics: [String; 3],
    producer: FutureProducer<QuietContext>,
    /// Per topic, the offset after the last record applied.
    applied: Mutex<[i64; 3]>,
    changed: Condvar,
    /// What the status topic says of each member.
    pub members: Members,
    /// Set once this member has said it left: no heartbeat may follow. Held while either is
    /// queued, so that the tombstone is the member's last record.
    left: Mutex<bool>,
}

impl FleetLog {
    /// Creates the fleet's topics if they are missing, and a producer for them.
    pub fn connect(kafka: &KafkaConfig, fleet: &FleetConfig) -> Result<Arc<FleetLog>, FleetError> {
        let topics = [
            format!("_sluice.{}.modules", fleet.name),
            format!("_sluice.{}.deployments", fleet.name),
            format!("_sluice.{}.status", fleet.name),
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
            applied: Mutex::new([0; 3]),
            changed: Condvar::new(),
            members: Members::default(),
            left: Default::default(),
        }))
    }

    /// The fleet's name.
    pub fn name(&self) -> &str {
        &self.fleet
    }

    /// Reads the topics from the beginning on a thread of its own, handing every record of the
    /// modules and deployments topics to `apply` in order and keeping [`Self::members`], for as
    /// long as the process runs; returns once what the modules and deployments topics held when
    /// it was called is applied.
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
        let mut ends = [0i64; 3];
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
                            let Some(topic) = (Topic::ALL.into_iter())
                                .find(|t| log.topics[*t as usize] == message.topic())
                            else {
                                continue;
                            };
                            let key = String::from_utf8_lossy(message.key().unwrap_or_default());
                            match topic {
                                Topic::Status => log.members.apply(&key, message.payload()),
                                _ => apply(topic, &key, message.payload()),
                            }
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
        for topic in [Topic::Modules, Topic::Deployments] {
            let end = ends[topic as usize];
            self.wait_applied(topic, end, "was not read to its end at start-up")?;
        }
        Ok(())
    }

    /// Waits until this member has applied what both topics hold now, so that a change made
    /// through it builds on every change made through other members before.
    pub fn sync(&self) -> Result<(), FleetError> {
        for topic in [Topic::Modules, Topic::Deployments] {
            let (_, end) = (self.producer.client()).fetch_watermarks(
                &self.topics[topic as usize],
                0,
                Duration::from_secs(10),
            )?;
            self.wait_applied(topic, end, "was not read to its end")?;
        }
        Ok(())
    }

    /// Writes `value` under `key` to `topic` (`None`: a tombstone, which deletes the key),
    /// then waits until this member has applied it.
    pub fn publish(&self, topic: Topic, key: &str, value: Option<&[u8]>) -> Result<(), FleetError> {
        let next = self.write(topic, key, value)? + 1;
        self.wait_applied(topic, next, "did not come back to be applied")
    }

    /// Writes `value` under `key` to `topic` (`None`: a tombstone); returns its offset once
    /// the broker has it.
    pub fn write(&self, topic: Topic, key: &str, value: Option<&[u8]>) -> Result<i64, FleetError> {
        let name = &self.topics[topic as usize];
        let mut record: FutureRecord<str, [u8]> = FutureRecord::to(name).key(key).partition(0);
        if let Some(value) = value {
            record = record.payload(value);
        }
        let delivered = futures::executor::block_on(self.producer.send(record, CATCH_UP));
        delivered
            .map(|delivery| delivery.offset)
            .map_err(|(error, _)| FleetError::from(error))
    }

    /// Writes `status` as this member's heartbeat, without waiting for the broker: a heartbeat
    /// that cannot be written is logged, and the next one tries again. Call it inside a Tokio
    /// runtime.
    pub fn heartbeat(&self, status: &MemberStatus) {
        let left = self.left.lock().unwrap_or_else(|e| e.into_inner());
        if *left {
            return;
        }
        let key = member_key(&status.id);
        let value = serde_json::to_vec(status).expect("serialises");
        let record = FutureRecord::to(&self.topics[Topic::Status as usize])
            .key(&key)
            .payload(&value)
            .partition(0);
        let delivery = match self.producer.send_result(record) {
            Ok(delivery) => delivery,
            Err((error, _)) => return heartbeat_failed(&error),
        };
        tokio::spawn(async move {
            if let Ok(Err((error, _))) = delivery.await {
                heartbeat_failed(&error);
            }
        });
    }

    /// Says that member `id` has left, so that others stop listing it at once; no heartbeat
    /// follows.
    pub fn leave(&self, id: &str) {
        let key = member_key(id);
        let record: FutureRecord<'_, str, [u8]> =
            FutureRecord::to(&self.topics[Topic::Status as usize])
                .key(key.as_str())
                .partition(0);
        let queued = {
            let mut left = self.left.lock().unwrap_or_else(|e| e.into_inner());
            *left = true;
            self.producer
                .send_result(record)
                .map_err(|(error, _)| error)
        };
        let sent = queued.and_then(|_| self.producer.flush(Duration::from_secs(5)));
        if let Err(error) = sent {
            tracing::warn!(event = "fleet_leave_failed", %error, "cannot say in the status topic that this member left; others will list it as missing");
        }
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

fn heartbeat_failed(error: &KafkaError) {
    tracing::warn!(event = "fleet_heartbeat_failed", %error, "cannot write this member's heartbeat; retrying with the next");
}

/// Creates the one-partition topics of a fleet (the status topic last); ones that exist are
/// left as they are.
fn create_topics(
    kafka: &KafkaConfig,
    fleet: &FleetConfig,
    topics: &[String; 3],
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
    let status_retention = STATUS_RETENTION.as_millis().to_string();
    let new: Vec<NewTopic<'_>> = (topics.iter().enumerate())
        .map(|(i, topic)| {
            let topic = NewTopic::new(topic, 1, TopicReplication::Fixed(replication));
            if i == Topic::Status as usize {
                // Heartbeats matter for minutes: deleted after that, in small segments.
                topic
                    .set("cleanup.policy", "delete")
                    .set("retention.ms", &status_retention)
                    .set("segment.ms", "60000")
            } else {
                topic
                    .set("cleanup.policy", "compact")
                    .set("retention.ms", "-1")
            }
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

/// The prefix of a member's key in the status topic.
const MEMBER_PREFIX: &str = "member/";

/// The key of member `id`'s heartbeats in the status topic.
fn member_key(id: &str) -> String {
    format!("{MEMBER_PREFIX}{id}")
}

/// The key of pipeline `name`'s deployments.
pub fn pipeline_key(name: &str) -> String {
    format!("pipeline/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heartbeat(id: &str, at: i64) -> Vec<u8> {
        serde_json::to_vec(&MemberStatus {
            id: id.into(),
            heartbeat_at: at,
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn members_are_what_their_latest_heartbeats_say_until_they_leave() {
        let members = Members::default();
        let now = now_ms();
        members.apply("member/a", Some(&heartbeat("a", now - 4000)));
        members.apply("member/a", Some(&heartbeat("a", now - 1000)));
        members.apply("member/b", Some(&heartbeat("b", now)));
        // Refused: another member's key, not a status, heartbeats past the retention.
        members.apply("member/c", Some(&heartbeat("a", now)));
        members.apply("member/d", Some(b"not json"));
        let long_ago = now - STATUS_RETENTION.as_millis() as i64 - 1000;
        members.apply("member/e", Some(&heartbeat("e", long_ago)));
        let seen: Vec<(String, i64)> = (members.latest().into_iter())
            .map(|(m, seen)| (m.id, seen))
            .collect();
        assert_eq!(seen, [("a".into(), now - 1000), ("b".into(), now)]);

        members.apply("member/a", None);
        let ids: Vec<String> = members.latest().into_iter().map(|(m, _)| m.id).collect();
        assert_eq!(ids, ["b"]);
    }

    #[test]
    fn a_heartbeat_from_a_clock_ahead_counts_from_when_it_was_read() {
        let members = Members::default();
        let before = now_ms();
        members.apply("member/a", Some(&heartbeat("a", before + 3_600_000)));
        let (_, seen) = members.latest().remove(0);
        assert!(seen >= before && seen <= now_ms(), "{seen}");
    }
}
