//! Every librdkafka client Sluice makes. Settings are assembled here and nowhere else, from
//! Sluice's defaults for the client's role, the `[kafka]` tables of the configuration file (or
//! the command line's [`KafkaArgs`]) and what the role requires; one quiet context; one way to
//! read partitions of a topic by assignment ([`TopicReader`]).

use crate::config::{Guarantee, KafkaConfig, PipelineConfig, Scalar, Start};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use std::time::{Duration, Instant};

/// Connection settings on the command line, the same for every subcommand that talks to Kafka.
/// `SLUICE_KAFKA_<NAME>` environment variables set properties too (see [`kafka_from_env`]).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers (wins over `bootstrap.servers` in a configuration file).
    #[arg(long, env = "SLUICE_BOOTSTRAP_SERVERS", value_name = "HOST:PORT,...")]
    pub bootstrap_servers: Option<String>,
    /// A librdkafka property for every client (security settings, for instance), repeatable.
    #[arg(short = 'X', long = "property", value_name = "KEY=VALUE", value_parser = crate::cli::key_value)]
    pub properties: Vec<(String, String)>,
}

impl KafkaArgs {
    /// Applies these settings over `kafka`: the environment's `SLUICE_KAFKA_*`, then `-X`, then
    /// `--bootstrap-servers` win over the file.
    pub fn apply(&self, kafka: &mut KafkaConfig) {
        let properties = kafka_from_env(std::env::vars()).into_iter();
        for (key, value) in properties.chain(self.properties.iter().cloned()) {
            kafka.common.insert(key, Scalar(value));
        }
        if let Some(servers) = &self.bootstrap_servers {
            kafka
                .common
                .insert("bootstrap.servers".into(), Scalar(servers.clone()));
        }
    }

    /// The client settings for a subcommand without a configuration file; `localhost:9092`
    /// unless bootstrap servers are given.
    pub fn to_config(&self) -> KafkaConfig {
        let mut kafka = KafkaConfig::default();
        kafka
            .common
            .insert("bootstrap.servers".into(), Scalar("localhost:9092".into()));
        self.apply(&mut kafka);
        kafka
    }
}

/// Connection settings of a subcommand that only talks to Kafka (`gen`, `peek`): a
/// configuration file's `[kafka]` tables, then the environment and flags, as in `sluice run`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClientKafkaArgs {
    /// A Sluice configuration file whose `[kafka]` settings to use (the rest of it is ignored),
    /// so that secrets stay out of the command line and shell history.
    #[arg(long = "config", value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Settings that win over the file.
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

impl ClientKafkaArgs {
    /// The client settings: `localhost:9092` unless the file, the environment or a flag says
    /// where Kafka is.
    pub fn to_config(&self) -> Result<KafkaConfig, crate::config::ConfigError> {
        let Some(path) = &self.config else {
            return Ok(self.kafka.to_config());
        };
        /// A configuration file, read for its `[kafka]` tables only.
        #[derive(serde::Deserialize)]
        struct KafkaOnly {
            #[serde(default)]
            kafka: KafkaConfig,
        }
        let text =
            std::fs::read_to_string(path).map_err(|source| crate::config::ConfigError::Read {
                path: path.clone(),
                source,
            })?;
        let file: KafkaOnly =
            toml::from_str(&text).map_err(|e| crate::config::ConfigError::from(e).in_file(path))?;
        let mut kafka = file.kafka;
        kafka
            .common
            .entry("bootstrap.servers".into())
            .or_insert_with(|| Scalar("localhost:9092".into()));
        self.kafka.apply(&mut kafka);
        Ok(kafka)
    }
}

/// librdkafka properties from environment variables: `SLUICE_KAFKA_SASL_PASSWORD=x` sets
/// `sasl.password` (property names are lower case with dots, so `_` stands for `.`). Keeps
/// secrets out of configuration files and command lines.
pub fn kafka_from_env(vars: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
    vars.into_iter()
        .filter_map(|(name, value)| {
            let property = name.strip_prefix("SLUICE_KAFKA_")?;
            (!property.is_empty()).then(|| (property.to_ascii_lowercase().replace('_', "."), value))
        })
        .collect()
}

/// Consumer settings a pipeline needs for at-least-once, whatever the user sets: offsets are
/// stored by Sluice only once outputs are acknowledged, and auto-commit commits what was stored.
const PIPELINE_CONSUMER_REQUIRED: &[(&str, &str)] = &[
    ("enable.auto.offset.store", "false"),
    ("enable.auto.commit", "true"),
];

/// Consumer settings an exactly-once pipeline needs, whatever the user sets: offsets are
/// committed inside the producer's transactions, never by the consumer, and inputs written by
/// transactions are read only once committed.
const EXACTLY_ONCE_CONSUMER_REQUIRED: &[(&str, &str)] = &[
    ("enable.auto.offset.store", "false"),
    ("enable.auto.commit", "false"),
    ("isolation.level", "read_committed"),
];

/// An exactly-once producer's default: a transaction left open by a crashed member that does
/// not come back is aborted by the broker after this long, and until then read_committed
/// readers of its output partitions wait (librdkafka: 60 s).
const EXACTLY_ONCE_PRODUCER_DEFAULTS: &[(&str, &str)] = &[("transaction.timeout.ms", "10000")];

/// A pipeline consumer's defaults, tuned for throughput; any of them can be overridden in
/// `[kafka]`.
pub const PIPELINE_CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    // Commit stored offsets every second: what a crash replays is at most about a second.
    ("auto.commit.interval.ms", "1000"),
    // Per-partition lag for metrics.
    ("statistics.interval.ms", "1000"),
    // Bound the prefetch queue per partition (librdkafka's default is 64 MiB).
    ("queued.max.messages.kbytes", "32768"),
    ("fetch.wait.max.ms", "100"),
    // Fetch up to 512 KiB per partition (librdkafka: 1 MiB). A fetched buffer stays in memory
    // until its last record is consumed, so the peak memory follows this: over 1M records on
    // 2 x 3 partitions, 160 MiB peak RSS against 215 MiB at 1 MiB and 325 MiB at 4 MiB, with
    // the same or more records per second (the tz pipeline and the bare pipe alike).
    ("fetch.message.max.bytes", "524288"),
    ("fetch.max.bytes", "67108864"),
    // Once a partition's prefetch queue is full, look again after 10 ms rather than
    // librdkafka's 1 s, which leaves drained workers idle (`make bench-peers`: 1.35x the
    // records per second alone, 2.1x together with 32 batches in flight per worker).
    ("fetch.queue.backoff.ms", "10"),
    // librdkafka holds back a new connection for half of this after the bootstrap connection
    // is replaced, which delayed the group's join at every start by 50 ms (100 is the default;
    // reconnects to a broker that is down still back off exponentially, up to 10 s).
    ("reconnect.backoff.ms", "10"),
];

/// A pipeline producer's defaults, tuned for throughput rather than librdkafka's latency
/// defaults.
pub const PIPELINE_PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    // Ordered, de-duplicated retries: per-partition order survives broker hiccups.
    ("enable.idempotence", "true"),
    ("acks", "all"),
    // Wait up to 5 ms to fill batches of up to 1 MiB, compressed with lz4. With the source's
    // 10 ms linger: p99 28 ms from produce to output at half the tz peak, against 40 ms with
    // 20 and 10 ms (`make bench`, same run and broker).
    ("linger.ms", "5"),
    ("batch.size", "1048576"),
    ("batch.num.messages", "10000"),
    ("compression.type", "lz4"),
    ("queue.buffering.max.messages", "500000"),
    ("queue.buffering.max.kbytes", "262144"),
];

/// A reader's settings: it assigns partitions itself, so the group is never joined and nothing
/// is committed; asking for a topic never creates it.
const READER_REQUIRED: &[(&str, &str)] = &[
    ("enable.auto.commit", "false"),
    ("enable.auto.offset.store", "false"),
    ("enable.partition.eof", "true"),
    ("allow.auto.create.topics", "false"),
];

/// Test traffic (`sluice gen`, the demo): a person is watching, so records fail in 30 s rather
/// than librdkafka's 5 minutes.
const TRAFFIC_PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    ("linger.ms", "5"),
    ("compression.type", "lz4"),
    ("message.timeout.ms", "30000"),
];

/// What a client is for; it decides Sluice's defaults and requirements around the user's
/// properties.
#[derive(Debug, Clone, Copy)]
pub enum Role<'a> {
    /// The consumer of a pipeline's inputs, in the pipeline's group.
    PipelineConsumer(&'a PipelineConfig),
    /// The producer of a pipeline's outputs and dead letters; transactional with an id for
    /// exactly-once.
    PipelineProducer {
        /// The pipeline.
        pipeline: &'a PipelineConfig,
        /// `transactional.id`, for exactly-once.
        transactional_id: Option<&'a str>,
    },
    /// A consumer that reads partitions by assignment ([`TopicReader`]); `group` names it in
    /// the broker's logs only.
    Reader {
        /// The `group.id` librdkafka requires; never joined.
        group: &'a str,
    },
    /// A producer of test traffic.
    TrafficProducer,
    /// An admin client (creating topics).
    Admin,
}

/// The librdkafka settings of a client: Sluice's defaults for `role`, then the user's
/// properties (every client's, then the consumer's or producer's), then what `role` requires.
pub fn client_config(kafka: &KafkaConfig, role: Role<'_>, client_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    let set = |config: &mut ClientConfig, pairs: &[(&str, &str)]| {
        for (k, v) in pairs {
            config.set(*k, *v);
        }
    };
    let user = |config: &mut ClientConfig, map: &std::collections::BTreeMap<String, Scalar>| {
        for (k, v) in map {
            config.set(k, &v.0);
        }
    };
    config.set("client.id", client_id);
    match role {
        Role::PipelineConsumer(pipeline) => {
            set(&mut config, PIPELINE_CONSUMER_DEFAULTS);
            let start = match pipeline.start {
                Start::Earliest => "earliest",
                Start::Latest => "latest",
            };
            config.set("auto.offset.reset", start);
            config.set("group.id", pipeline.group());
            config.set(
                "partition.assignment.strategy",
                assignment_strategy(pipeline),
            );
        }
        Role::PipelineProducer {
            transactional_id, ..
        } => {
            set(&mut config, PIPELINE_PRODUCER_DEFAULTS);
            if let Some(id) = transactional_id {
                set(&mut config, EXACTLY_ONCE_PRODUCER_DEFAULTS);
                config.set("transactional.id", id);
            }
        }
        Role::Reader { group } => {
            config.set("group.id", group);
        }
        Role::TrafficProducer => set(&mut config, TRAFFIC_PRODUCER_DEFAULTS),
        Role::Admin => {}
    }
    user(&mut config, &kafka.common);
    match role {
        Role::PipelineConsumer(_) | Role::Reader { .. } => user(&mut config, &kafka.consumer),
        Role::PipelineProducer { .. } | Role::TrafficProducer => user(&mut config, &kafka.producer),
        Role::Admin => {}
    }
    match role {
        Role::PipelineConsumer(pipeline) => {
            match pipeline.guarantee {
                Guarantee::AtLeastOnce => set(&mut config, PIPELINE_CONSUMER_REQUIRED),
                Guarantee::ExactlyOnce => set(&mut config, EXACTLY_ONCE_CONSUMER_REQUIRED),
            }
            if pipeline.inputs.len() > 1 {
                config.set(
                    "partition.assignment.strategy",
                    assignment_strategy(pipeline),
                );
            }
        }
        Role::Reader { .. } => set(&mut config, READER_REQUIRED),
        // An admin client is a producer to librdkafka, which would create a topic it asks
        // about (with the broker's defaults: not compacted, its partition count).
        Role::Admin => {
            config.set("allow.auto.create.topics", "false");
        }
        _ => {}
    }
    config
}

/// Checks that librdkafka takes every property the pipelines' clients would get (names,
/// values, SASL mechanisms this build supports) by making the clients, which connects to
/// nothing. The error is librdkafka's, which names the property.
pub fn check_properties(kafka: &KafkaConfig, pipelines: &[PipelineConfig]) -> Result<(), String> {
    use rdkafka::producer::BaseProducer;
    for pipeline in pipelines {
        let at = |role: &str, e: KafkaError| {
            let text = e.to_string();
            let text = text
                .strip_prefix("Client creation error: ")
                .unwrap_or(&text);
            format!(
                "[kafka], as pipeline `{}`'s {role} gets it: {text}",
                pipeline.name
            )
        };
        let consumer = client_config(kafka, Role::PipelineConsumer(pipeline), "sluice-check");
        consumer
            .create::<BaseConsumer>()
            .map_err(|e| at("consumer", e))?;
        let transactional_id =
            (pipeline.guarantee == Guarantee::ExactlyOnce).then_some("sluice-check");
        let role = Role::PipelineProducer {
            pipeline,
            transactional_id,
        };
        client_config(kafka, role, "sluice-check")
            .create::<BaseProducer>()
            .map_err(|e| at("producer", e))?;
    }
    Ok(())
}

/// How a pipeline's group shares its partitions among the members of a fleet. One input:
/// cooperative-sticky, so that a member joining or leaving moves only the partitions that
/// change hands, and the others go on without pausing (a default `[kafka.consumer]` may
/// change). Several inputs: range, required, because it gives partition p of every input to
/// one member, which is what a stateful task over co-partitioned topics needs (a transform that
/// keeps state may be deployed into any pipeline later).
fn assignment_strategy(pipeline: &PipelineConfig) -> &'static str {
    if pipeline.inputs.len() > 1 {
        "range"
    } else {
        "cooperative-sticky"
    }
}

/// The bootstrap servers of `kafka`, for messages.
pub fn bootstrap(kafka: &KafkaConfig) -> &str {
    kafka
        .common
        .get("bootstrap.servers")
        .map_or("(bootstrap.servers not set)", |s| s.0.as_str())
}

/// A client context that leaves librdkafka's own logs and errors to debug logging: the client's
/// user reports failures itself, once, instead of librdkafka's repeats (a broker down is logged
/// many times a second).
pub struct QuietContext;

/// Repeated errors (an input topic that does not exist yet, a broker down) are logged once a
/// minute each, even when two of them alternate.
#[derive(Default)]
pub struct LogThrottle {
    /// When each message was last logged.
    logged: std::collections::HashMap<String, Instant>,
}

impl LogThrottle {
    const EVERY: Duration = Duration::from_secs(60);

    /// Whether `message` was not logged in the last minute; if so, it counts as logged now.
    pub fn first_in_a_while(&mut self, message: &str, now: Instant) -> bool {
        if self
            .logged
            .get(message)
            .is_some_and(|at| now.duration_since(*at) < Self::EVERY)
        {
            return false;
        }
        if self.logged.len() >= 64 {
            self.logged
                .retain(|_, at| now.duration_since(*at) < Self::EVERY);
        }
        self.logged.insert(message.to_string(), now);
        true
    }
}

/// librdkafka's log lines, for the pipelines' clients: at debug level, because every trouble
/// worth a warning also comes as an error, to [`client_error`].
pub fn client_log(level: RDKafkaLogLevel, facility: &str, message: &str) {
    tracing::debug!(?level, facility, message, "librdkafka");
}

/// librdkafka's errors, for the pipelines' clients. A broker going down is reported by every
/// client (a consumer and one or two producers per pipeline), again at each reconnection
/// attempt: each kind of error is logged once a minute over all of them
/// (`event="kafka_client_error"`), with the first one's words.
pub fn client_error(error: &KafkaError, reason: &str) {
    static LOGGED: std::sync::LazyLock<ClientErrors> = std::sync::LazyLock::new(Default::default);
    LOGGED.report(error, reason);
}

/// The client errors logged lately, by kind.
#[derive(Default)]
struct ClientErrors(std::sync::Mutex<LogThrottle>);

impl ClientErrors {
    fn report(&self, error: &KafkaError, reason: &str) {
        let kind = client_error_kind(error);
        let mut logged = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if logged.first_in_a_while(&kind, Instant::now()) {
            tracing::warn!(
                event = "kafka_client_error",
                kind,
                reason,
                "Kafka client error (this kind is logged once a minute)"
            );
        }
    }
}

/// What kind of error `error` is: its code, without the broker and timings of its text.
fn client_error_kind(error: &KafkaError) -> String {
    match error.rdkafka_error_code() {
        Some(code) => format!("{code:?}"),
        None => error.to_string(),
    }
}

impl ClientContext for QuietContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        tracing::debug!(?level, facility, message, "librdkafka");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(%error, reason, "librdkafka");
    }
}

impl ConsumerContext for QuietContext {}

/// Why a topic could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The client could not be created (a bad property, typically).
    #[error("cannot create a Kafka consumer")]
    Client(#[source] KafkaError),
    /// No metadata: the broker is unreachable, or refuses us.
    #[error("cannot reach Kafka at {bootstrap}")]
    Unreachable {
        /// The bootstrap servers tried.
        bootstrap: String,
        /// What the client said.
        #[source]
        source: KafkaError,
    },
    /// The topic is not on the broker.
    #[error("topic `{topic}` does not exist (at {bootstrap})")]
    NoTopic {
        /// The topic.
        topic: String,
        /// The bootstrap servers asked.
        bootstrap: String,
    },
    /// A partition's offsets could not be read.
    #[error("cannot read the offsets of {topic}/{partition}")]
    Offsets {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// What the client said.
        #[source]
        source: KafkaError,
    },
    /// Anything else the client refused (an assignment, a poll).
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
}

/// A partition's offsets: the oldest still held and the next to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermarks {
    /// The partition.
    pub partition: i32,
    /// The oldest offset still held.
    pub low: i64,
    /// The offset the next record will get.
    pub high: i64,
}

/// Reads partitions of one topic by assignment: metadata, then each partition's watermarks,
/// then an assignment of start offsets, then polling. No group is joined and nothing is
/// committed. Used by lookup tables, `sluice peek` and the dashboard's dead letters.
pub struct TopicReader {
    consumer: BaseConsumer<QuietContext>,
    topic: String,
    bootstrap: String,
    timeout: Duration,
}

impl std::fmt::Debug for TopicReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicReader")
            .field("topic", &self.topic)
            .finish()
    }
}

impl TopicReader {
    /// A reader of `topic`; `timeout` bounds each request to the broker.
    pub fn new(
        kafka: &KafkaConfig,
        group: &str,
        client_id: &str,
        topic: &str,
        timeout: Duration,
    ) -> Result<Self, ReadError> {
        let consumer = client_config(kafka, Role::Reader { group }, client_id)
            .create_with_context(QuietContext)
            .map_err(ReadError::Client)?;
        Ok(TopicReader {
            consumer,
            topic: topic.to_string(),
            bootstrap: bootstrap(kafka).to_string(),
            timeout,
        })
    }

    /// The topic it reads.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The consumer, for what only some readers need (offsets for times, positions).
    pub fn consumer(&self) -> &BaseConsumer<QuietContext> {
        &self.consumer
    }

    /// Every partition of the topic with its watermarks, by partition number.
    pub fn watermarks(&self) -> Result<Vec<Watermarks>, ReadError> {
        let metadata = self
            .consumer
            .fetch_metadata(Some(&self.topic), self.timeout)
            .map_err(|source| ReadError::Unreachable {
                bootstrap: self.bootstrap.clone(),
                source,
            })?;
        let mut partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == self.topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(ReadError::NoTopic {
                topic: self.topic.clone(),
                bootstrap: self.bootstrap.clone(),
            });
        }
        partitions.sort_unstable();
        partitions
            .into_iter()
            .map(|partition| {
                let (low, high) = self
                    .consumer
                    .fetch_watermarks(&self.topic, partition, self.timeout)
                    .map_err(|source| ReadError::Offsets {
                        topic: self.topic.clone(),
                        partition,
                        source,
                    })?;
                Ok(Watermarks {
                    partition,
                    low,
                    high,
                })
            })
            .collect()
    }

    /// Starts reading each `(partition, offset)`.
    pub fn assign(&self, starts: impl IntoIterator<Item = (i32, Offset)>) -> Result<(), ReadError> {
        let mut list = TopicPartitionList::new();
        for (partition, offset) in starts {
            list.add_partition_offset(&self.topic, partition, offset)?;
        }
        Ok(self.consumer.assign(&list)?)
    }

    /// Reads every `(partition, start, end)` range (end exclusive) and hands each record to
    /// `each`, until every range is read, `each` returns false for a partition (it has what it
    /// needs from it), or `deadline` passes. Returns whether every range was finished.
    pub fn read_ranges(
        &self,
        ranges: &[(i32, i64, i64)],
        deadline: Instant,
        mut each: impl FnMut(&BorrowedMessage<'_>) -> bool,
    ) -> Result<bool, ReadError> {
        let mut open: Vec<(i32, i64)> = ranges
            .iter()
            .filter(|(_, start, end)| start < end)
            .map(|&(p, _, end)| (p, end))
            .collect();
        if open.is_empty() {
            return Ok(true);
        }
        self.assign(
            ranges
                .iter()
                .filter(|(_, start, end)| start < end)
                .map(|&(p, start, _)| (p, Offset::Offset(start))),
        )?;
        while !open.is_empty() {
            if Instant::now() > deadline {
                return Ok(false);
            }
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => {
                    let p = message.partition();
                    let Some(&(_, end)) = open.iter().find(|(q, _)| *q == p) else {
                        continue;
                    };
                    if !each(&message) || message.offset() + 1 >= end {
                        open.retain(|(q, _)| *q != p);
                    }
                }
                Some(Err(KafkaError::PartitionEOF(p))) => open.retain(|(q, _)| *q != p),
                Some(Err(error)) => return Err(error.into()),
                None => {}
            }
        }
        Ok(true)
    }
}

/// The newest `limit` records of `topic` (per partition at most `limit`, then the newest
/// `limit` overall by timestamp, oldest first). For the dashboard's dead-letter view.
pub fn read_latest(
    kafka: &KafkaConfig,
    topic: &str,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<rdkafka::message::OwnedMessage>, ReadError> {
    let reader = TopicReader::new(kafka, "sluice-read-latest", "sluice-api", topic, timeout)?;
    read_latest_with(&reader, limit, timeout)
}

/// [`read_latest`] with a reader made once and kept (the API keeps one per topic).
pub fn read_latest_with(
    reader: &TopicReader,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<rdkafka::message::OwnedMessage>, ReadError> {
    let watermarks = match reader.watermarks() {
        // Nothing has been written to it yet.
        Err(ReadError::NoTopic { .. }) => return Ok(Vec::new()),
        other => other?,
    };
    let ranges: Vec<(i32, i64, i64)> = watermarks
        .into_iter()
        .map(|w| (w.partition, (w.high - limit as i64).max(w.low), w.high))
        .collect();
    let mut records = Vec::new();
    reader.read_ranges(&ranges, Instant::now() + timeout, |message| {
        records.push(message.detach());
        true
    })?;
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
    fn user_settings_override_defaults_but_not_what_a_role_requires() {
        let config = Config::parse(
            r#"
            [kafka]
            "bootstrap.servers" = "b:9092"
            "linger.ms" = 50
            "enable.auto.offset.store" = true
            [kafka.consumer]
            "fetch.wait.max.ms" = 5
            "enable.auto.commit" = true
            [[pipeline]]
            name = "p"
            inputs = ["a"]
            outputs = ["b"]
            start = "latest"
            "#,
        )
        .unwrap();
        let pipeline = &config.pipeline[0];
        let consumer = client_config(&config.kafka, Role::PipelineConsumer(pipeline), "c");
        assert_eq!(consumer.get("bootstrap.servers"), Some("b:9092"));
        assert_eq!(consumer.get("group.id"), Some("sluice-p"));
        assert_eq!(consumer.get("auto.offset.reset"), Some("latest"));
        assert_eq!(consumer.get("fetch.wait.max.ms"), Some("5"));
        assert_eq!(consumer.get("enable.auto.offset.store"), Some("false"));
        let producer = client_config(
            &config.kafka,
            Role::PipelineProducer {
                pipeline,
                transactional_id: None,
            },
            "c",
        );
        assert_eq!(producer.get("linger.ms"), Some("50"));
        assert_eq!(producer.get("compression.type"), Some("lz4"));
        assert_eq!(producer.get("fetch.wait.max.ms"), None);
        assert_eq!(producer.get("transactional.id"), None);
        let mut exactly = pipeline.clone();
        exactly.guarantee = Guarantee::ExactlyOnce;
        let consumer = client_config(&config.kafka, Role::PipelineConsumer(&exactly), "c");
        assert_eq!(consumer.get("enable.auto.commit"), Some("false"));
        assert_eq!(consumer.get("isolation.level"), Some("read_committed"));
        let role = Role::PipelineProducer {
            pipeline: &exactly,
            transactional_id: Some("sluice-p-m1"),
        };
        let producer = client_config(&config.kafka, role, "c");
        assert_eq!(producer.get("transactional.id"), Some("sluice-p-m1"));
        assert_eq!(producer.get("linger.ms"), Some("50"));
        let reader = client_config(&config.kafka, Role::Reader { group: "g" }, "r");
        assert_eq!(reader.get("enable.auto.commit"), Some("false"));
        assert_eq!(reader.get("fetch.wait.max.ms"), Some("5"));
        let admin = client_config(&config.kafka, Role::Admin, "a");
        assert_eq!(
            (admin.get("bootstrap.servers"), admin.get("linger.ms")),
            (Some("b:9092"), Some("50"))
        );
    }

    #[test]
    fn one_input_is_shared_cooperatively_and_several_by_range_whatever_the_file_says() {
        let config = Config::parse(
            r#"
            [kafka.consumer]
            "partition.assignment.strategy" = "roundrobin"
            [[pipeline]]
            name = "one"
            inputs = ["a"]
            outputs = ["b"]
            [[pipeline]]
            name = "two"
            inputs = ["a", "c"]
            outputs = ["b"]
            "#,
        )
        .unwrap();
        let strategy = |index: usize, kafka: &KafkaConfig| {
            let consumer =
                client_config(kafka, Role::PipelineConsumer(&config.pipeline[index]), "c");
            consumer
                .get("partition.assignment.strategy")
                .map(str::to_string)
        };
        let defaults = KafkaConfig::default();
        assert_eq!(
            strategy(0, &defaults).as_deref(),
            Some("cooperative-sticky")
        );
        assert_eq!(strategy(1, &defaults).as_deref(), Some("range"));
        // The file may choose for one input, not for several.
        assert_eq!(strategy(0, &config.kafka).as_deref(), Some("roundrobin"));
        assert_eq!(strategy(1, &config.kafka).as_deref(), Some("range"));
    }

    #[test]
    fn a_kind_of_client_error_is_logged_once_a_minute_over_every_client() {
        use rdkafka::types::RDKafkaErrorCode;
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tracing_subscriber::layer::SubscriberExt;
        struct Count(Arc<AtomicUsize>);
        impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Count {
            fn on_event(
                &self,
                event: &tracing::Event<'_>,
                _: tracing_subscriber::layer::Context<'_, S>,
            ) {
                if *event.metadata().level() == tracing::Level::WARN {
                    self.0.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        let warnings = Arc::new(AtomicUsize::new(0));
        let subscriber = tracing_subscriber::registry().with(Count(warnings.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let errors = ClientErrors::default();
            let down = KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure);
            // Two brokers, three clients, two attempts each: one line.
            for attempt in 0..2 {
                for broker in 1..=2 {
                    for _client in 0..3 {
                        let reason = format!(
                            "127.0.0.1:{broker}/bootstrap: Connect failed (after {attempt}ms in state CONNECT)"
                        );
                        errors.report(&down, &reason);
                    }
                }
            }
            let all_down = KafkaError::Global(RDKafkaErrorCode::AllBrokersDown);
            errors.report(&all_down, "2/2 brokers are down");
            client_log(RDKafkaLogLevel::Error, "FAIL", "Connect failed");
        });
        assert_eq!(warnings.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn gen_and_peek_read_the_kafka_tables_of_a_configuration_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        std::fs::write(
            &path,
            "[kafka]\n\"bootstrap.servers\" = \"k:9093\"\n\"sasl.username\" = \"me\"\n\
             [kafka.producer]\n\"linger.ms\" = 7\n[[pipeline]]\nname = \"ignored\"\n",
        )
        .unwrap();
        let args = ClientKafkaArgs {
            config: Some(path.clone()),
            kafka: KafkaArgs {
                bootstrap_servers: None,
                properties: vec![("sasl.password".into(), "from -X".into())],
            },
        };
        let kafka = args.to_config().unwrap();
        let get = |k: &str| kafka.common.get(k).map(|v| v.0.as_str());
        assert_eq!(get("bootstrap.servers"), Some("k:9093"));
        assert_eq!(get("sasl.username"), Some("me"));
        assert_eq!(get("sasl.password"), Some("from -X"));
        assert_eq!(kafka.producer["linger.ms"].0, "7");
        let missing = ClientKafkaArgs {
            config: Some(dir.path().join("nope.toml")),
            ..Default::default()
        };
        assert!(
            missing
                .to_config()
                .unwrap_err()
                .to_string()
                .contains("nope.toml")
        );
    }

    #[test]
    fn misspelt_properties_and_unsupported_sasl_mechanisms_are_named() {
        let check = |kafka: &str| {
            let text = format!(
                "{kafka}\n[[pipeline]]\nname = \"p\"\ninputs = [\"a\"]\noutputs = [\"b\"]\n"
            );
            let config = Config::parse(&text).unwrap();
            check_properties(&config.kafka, &config.pipeline)
        };
        assert_eq!(check("[kafka]\n\"linger.ms\" = 5"), Ok(()));
        let misspelt = check("[kafka]\n\"bootstrap.server\" = \"k:9092\"").unwrap_err();
        assert!(misspelt.contains("bootstrap.server"), "{misspelt}");
        assert!(
            misspelt.starts_with("[kafka], as pipeline `p`'s consumer gets it"),
            "{misspelt}"
        );
        let producer_only = check("[kafka.producer]\n\"linger.msec\" = 5").unwrap_err();
        assert!(
            producer_only.contains("producer gets it") && producer_only.contains("linger.msec"),
            "{producer_only}"
        );
        let gssapi = check(
            "[kafka]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanisms\" = \"GSSAPI\"",
        )
        .unwrap_err();
        assert!(gssapi.contains("GSSAPI"), "{gssapi}");
        for supported in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] {
            let sasl = format!(
                "[kafka]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanisms\" = \"{supported}\"\n\"sasl.username\" = \"u\"\n\"sasl.password\" = \"p\""
            );
            assert_eq!(check(&sasl), Ok(()), "{supported}");
        }
    }

    #[test]
    fn command_line_settings_win_over_the_file_and_default_to_localhost() {
        let args = KafkaArgs {
            bootstrap_servers: Some("k:1".into()),
            properties: vec![("security.protocol".into(), "ssl".into())],
        };
        let mut kafka = KafkaConfig::default();
        kafka
            .common
            .insert("bootstrap.servers".into(), Scalar("file:9092".into()));
        args.apply(&mut kafka);
        assert_eq!(bootstrap(&kafka), "k:1");
        assert_eq!(kafka.common["security.protocol"].0, "ssl");
        assert_eq!(
            bootstrap(&KafkaArgs::default().to_config()),
            "localhost:9092"
        );
    }

    #[test]
    fn properties_come_from_sluice_kafka_variables() {
        let vars = [
            ("SLUICE_KAFKA_SASL_PASSWORD", "s3cret"),
            ("SLUICE_KAFKA_", "x"),
            ("HOME", "/root"),
        ];
        let kafka = kafka_from_env(vars.map(|(k, v)| (k.to_string(), v.to_string())));
        assert_eq!(kafka, [("sasl.password".to_string(), "s3cret".to_string())]);
    }
}
