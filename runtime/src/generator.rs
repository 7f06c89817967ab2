//! Realistic test traffic for Kafka: the seed scenarios Sluice was conceived from.
//!
//! - [`Scenario::Timezones`] (seed 000's `create-stream.py`): server logs
//!   `{"date": "2024-02-05 10:01:52.884548 -0500", "message": "0"}`, each sent at random to the
//!   New York topic (`timezone1`) or the Paris one (`timezone2`), with the offset each city had
//!   at that instant (daylight saving time included).
//! - [`Scenario::Orders`] (seed 004): customers `{"id": "5", "name": "fred", "age": 34, ...}`
//!   keyed by their id, as a compacted table expects (new customers and updates keep coming),
//!   and orders `{"customer_id": "5", "order_id": "17", "price": 25.25, "currency": "eur", ...}`
//!   that reference customers already sent.
//!
//! Record generation ([`Generator`]) is pure: the same seed and the same clock readings give
//! the same records. [`run`] sends them to Kafka at a [`Pace`] until a count is reached or a stop
//! flag is raised; `sluice gen` and `sluice demo` both drive it.

use crate::config::KafkaConfig;
use crate::kafka::{QuietContext, Role, bootstrap, client_config};
use anyhow::Context;
use chrono::DateTime;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Message};
use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Which traffic to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Seed 000: logs of a New York server and a Paris server, to two topics.
    Timezones,
    /// Seed 004: customers (keyed, latest value per key) and the orders that reference them.
    Orders,
}

impl Scenario {
    /// The scenario's two topics, by default.
    pub fn default_topics(self) -> [&'static str; 2] {
        match self {
            Scenario::Timezones => ["timezone1", "timezone2"],
            Scenario::Orders => ["customers", "orders"],
        }
    }

    /// Whether the scenario's topic at `index` is a table (latest value per key), to be created
    /// compacted.
    pub fn is_table(self, index: usize) -> bool {
        self == Scenario::Orders && index == 0
    }
}

/// When records are sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// A steady rate, in records per second.
    Rate(f64),
    /// `size` records at once, every `every`.
    Burst {
        /// Records per burst.
        size: u64,
        /// Time between the starts of two bursts.
        every: Duration,
    },
    /// As fast as the producer takes them.
    Max,
}

impl Pace {
    /// When record number `index` (from 0) is due, counted from the start.
    pub fn due(&self, index: u64) -> Duration {
        match *self {
            Pace::Rate(per_second) => Duration::from_secs_f64(index as f64 / per_second),
            Pace::Burst { size, every } => {
                every.saturating_mul((index / size.max(1)).min(u32::MAX as u64) as u32)
            }
            Pace::Max => Duration::ZERO,
        }
    }
}

/// One generated record, before it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedRecord {
    /// Which of the scenario's two topics it goes to: 0 or 1.
    pub topic: usize,
    /// Its key, if the scenario keys this topic.
    pub key: Option<String>,
    /// Its value: a JSON object.
    pub value: String,
    /// Its event time (in the value), in milliseconds since the epoch; earlier than the clock
    /// for late records.
    pub event_time_ms: i64,
}

/// The longest a late record's event time lags behind the clock.
pub const MAX_LATENESS: Duration = Duration::from_secs(300);

/// Generates a scenario's records, deterministically from a seed.
#[derive(Debug, Clone)]
pub struct Generator {
    scenario: Scenario,
    late_fraction: f64,
    rng: SplitMix64,
    /// Records of the timezone scenario so far: the next `message`.
    logs: u64,
    /// Customers sent so far, in the order they were created.
    customers: Vec<Customer>,
    /// The next new customer's id.
    next_customer: u64,
    /// The next order id.
    next_order: u64,
    /// Records owed before anything else (an order waiting for its new customer).
    pending: VecDeque<GeneratedRecord>,
    /// The timezone scenario's dates in New York and in Paris.
    log_dates: [LogDates; 2],
}

/// Seed 000's dates in one zone, `2024-02-05 10:01:52.884548 -0500` with the offset in force
/// there at that instant. The date, time and offset are formatted once a second: formatting each
/// whole date took a core at 400,000 records a second, as much as the pipeline `sluice gen` was
/// loading.
#[derive(Debug, Clone)]
struct LogDates {
    zone: chrono_tz::Tz,
    /// The second the text below is for.
    second: i64,
    /// `2024-02-05 10:01:52`.
    head: String,
    /// ` -0500`.
    offset: String,
}

impl LogDates {
    fn new(zone: chrono_tz::Tz) -> Self {
        LogDates {
            zone,
            second: i64::MIN,
            head: String::new(),
            offset: String::new(),
        }
    }

    /// Appends the date of `micros` since the epoch to `out`.
    fn write(&mut self, micros: i64, out: &mut String) {
        let second = micros.div_euclid(1_000_000);
        if second != self.second {
            let at = DateTime::from_timestamp(second, 0)
                .unwrap_or_default()
                .with_timezone(&self.zone);
            self.head = at.format("%Y-%m-%d %H:%M:%S").to_string();
            self.offset = at.format(" %z").to_string();
            self.second = second;
        }
        let fraction = micros.rem_euclid(1_000_000);
        let _ = write!(out, "{}.{fraction:06}{}", self.head, self.offset);
    }
}

/// A customer of the orders scenario.
#[derive(Debug, Clone)]
struct Customer {
    id: u64,
    name: String,
    age: u32,
    email: String,
}

/// The most customers the orders scenario creates: after that, only updates, so that the
/// customers table (and a long `sluice demo`) stays bounded.
const MAX_CUSTOMERS: usize = 10_000;

/// Seed 004's customers, sent first so that its orders (customers 2, 5 and 7) find them.
const SEED_CUSTOMERS: [(u64, &str, u32); 3] = [(5, "fred", 34), (7, "sue", 25), (2, "bill", 51)];

const FIRST_NAMES: &[&str] = &[
    "ada",
    "alan",
    "grace",
    "linus",
    "barbara",
    "ken",
    "margaret",
    "dennis",
    "frances",
    "edsger",
    "radia",
    "john",
    "katherine",
    "donald",
    "hedy",
    "niklaus",
    "sophie",
    "tim",
    "annie",
    "guido",
];
const CURRENCIES: &[&str] = &["usd", "eur", "aud", "gbp"];
/// Well-known test card numbers (valid checksums, never real cards), for the PII stripper to find.
const TEST_CARDS: &[&str] = &[
    "4111 1111 1111 1111",
    "5555 5555 5555 4444",
    "3782 822463 10005",
    "6011 1111 1111 1117",
];

impl Generator {
    /// A generator of `scenario`; `late_fraction` (0 to 1) of the records get an event time up
    /// to [`MAX_LATENESS`] in the past, so they arrive late and out of order.
    pub fn new(scenario: Scenario, seed: u64, late_fraction: f64) -> Generator {
        Generator {
            scenario,
            late_fraction: late_fraction.clamp(0.0, 1.0),
            rng: SplitMix64(seed),
            logs: 0,
            customers: Vec::new(),
            next_customer: SEED_CUSTOMERS.iter().map(|c| c.0).max().unwrap_or(0) + 1,
            next_order: 1000,
            pending: VecDeque::new(),
            log_dates: [
                LogDates::new(chrono_tz::America::New_York),
                LogDates::new(chrono_tz::Europe::Paris),
            ],
        }
    }

    /// The next record, its event time derived from `now_ms` (milliseconds since the epoch).
    pub fn next_record(&mut self, now_ms: i64) -> GeneratedRecord {
        if let Some(record) = self.pending.pop_front() {
            return record;
        }
        let event_time_ms = self.event_time(now_ms);
        match self.scenario {
            Scenario::Timezones => self.log_line(event_time_ms),
            Scenario::Orders => self.order_or_customer(event_time_ms),
        }
    }

    fn event_time(&mut self, now_ms: i64) -> i64 {
        if self.late_fraction > 0.0 && self.rng.unit() < self.late_fraction {
            // At least a second late: late enough to be out of order at any realistic rate.
            now_ms - 1000 - self.rng.below(MAX_LATENESS.as_millis() as u64 - 1000) as i64
        } else {
            now_ms
        }
    }

    fn log_line(&mut self, event_time_ms: i64) -> GeneratedRecord {
        let new_york = self.rng.below(2) == 0;
        // Seed 000 logs microseconds; derive them from the clock's milliseconds plus noise.
        let micros = event_time_ms * 1000 + self.rng.below(1000) as i64;
        let topic = if new_york { 0 } else { 1 };
        // Neither the date nor the number has anything to escape.
        let mut value = String::with_capacity(72);
        value.push_str(r#"{"date": ""#);
        self.log_dates[topic].write(micros, &mut value);
        let _ = write!(value, r#"", "message": "{}"}}"#, self.logs);
        self.logs += 1;
        GeneratedRecord {
            topic,
            key: None,
            value,
            event_time_ms,
        }
    }

    fn order_or_customer(&mut self, event_time_ms: i64) -> GeneratedRecord {
        if self.customers.len() < SEED_CUSTOMERS.len() {
            let (id, name, age) = SEED_CUSTOMERS[self.customers.len()];
            let customer = Customer {
                id,
                name: name.to_string(),
                age,
                email: format!("{name}@example.com"),
            };
            return self.send_customer(customer, event_time_ms);
        }
        let roll = self.rng.below(100);
        if roll < 5 && self.customers.len() < MAX_CUSTOMERS {
            // A new customer, and at once their first order.
            let id = self.next_customer;
            self.next_customer += 1;
            let first = FIRST_NAMES[self.rng.below(FIRST_NAMES.len() as u64) as usize];
            let customer = Customer {
                id,
                name: first.to_string(),
                age: 18 + self.rng.below(63) as u32,
                email: format!("{first}.{id}@example.com"),
            };
            let record = self.send_customer(customer, event_time_ms);
            let order = self.order(self.customers.len() - 1, event_time_ms);
            self.pending.push_back(order);
            record
        } else if roll < 8 {
            // An update: the table keeps the latest value of each key.
            let index = self.rng.below(self.customers.len() as u64) as usize;
            let mut customer = self.customers[index].clone();
            customer.age += 1;
            self.customers.remove(index);
            self.send_customer(customer, event_time_ms)
        } else {
            let index = self.rng.below(self.customers.len() as u64) as usize;
            self.order(index, event_time_ms)
        }
    }

    fn send_customer(&mut self, customer: Customer, event_time_ms: i64) -> GeneratedRecord {
        let value = format!(
            r#"{{"id": {}, "name": {}, "age": {}, "email": {}}}"#,
            json_string(&customer.id.to_string()),
            json_string(&customer.name),
            customer.age,
            json_string(&customer.email)
        );
        let key = Some(customer.id.to_string());
        self.customers.push(customer);
        GeneratedRecord {
            topic: 0,
            key,
            value,
            event_time_ms,
        }
    }

    fn order(&mut self, customer: usize, event_time_ms: i64) -> GeneratedRecord {
        let customer = &self.customers[customer];
        let order_id = self.next_order.to_string();
        self.next_order += 1;
        let cents = 100 + self.rng.below(30_000);
        let currency = CURRENCIES[self.rng.below(CURRENCIES.len() as u64) as usize];
        let card = TEST_CARDS[self.rng.below(TEST_CARDS.len() as u64) as usize];
        // Seed 004's `ts`: local time to the second, without an offset.
        let ts = DateTime::from_timestamp_millis(event_time_ms)
            .unwrap_or_default()
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string();
        // Prices keep two decimals (`50.50`), as in the seed: written by hand, not by serde.
        let value = format!(
            r#"{{"customer_id": {}, "order_id": {}, "price": {}.{:02}, "currency": {}, "ts": {}, "email": {}, "card": {}}}"#,
            json_string(&customer.id.to_string()),
            json_string(&order_id),
            cents / 100,
            cents % 100,
            json_string(currency),
            json_string(&ts),
            json_string(&customer.email),
            json_string(card)
        );
        GeneratedRecord {
            topic: 1,
            key: Some(order_id),
            value,
            event_time_ms,
        }
    }
}

fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// A tiny deterministic PRNG (SplitMix64): good enough for test traffic, and stable across
/// releases, unlike a library's default generator.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0; the modulo bias is negligible for small `n`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What to send, and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// The traffic.
    pub scenario: Scenario,
    /// The scenario's two topics, in the order of [`Scenario::default_topics`].
    pub topics: [String; 2],
    /// When records are sent.
    pub pace: Pace,
    /// Stop after this many records (over both topics); `None` runs until stopped.
    pub count: Option<u64>,
    /// The fraction of records whose event time is late (0 to 1).
    pub late_fraction: f64,
    /// The PRNG seed: the same seed gives the same choices.
    pub seed: u64,
    /// Partitions of the topics that do not exist yet and are created.
    pub partitions: i32,
}

impl Options {
    /// Options for `scenario` with its default topics, at `pace`, forever, seed 0.
    pub fn new(scenario: Scenario, pace: Pace) -> Options {
        Options {
            scenario,
            topics: scenario.default_topics().map(String::from),
            pace,
            count: None,
            late_fraction: 0.0,
            seed: 0,
            partitions: 3,
        }
    }
}

/// What a run sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Records acknowledged by the broker, per topic (in the order of [`Options::topics`]).
    pub delivered: [u64; 2],
    /// Records the broker refused or that timed out.
    pub failed: u64,
    /// How long the run took.
    pub elapsed: Duration,
}

/// Counts delivery reports.
#[derive(Default)]
struct Deliveries {
    delivered: [AtomicU64; 2],
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    /// The last client error logged: librdkafka repeats an error (a broker down) many times a
    /// second, and once is enough for the user.
    last_client_error: Mutex<String>,
}

impl ClientContext for Deliveries {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        tracing::debug!(?level, facility, message, "librdkafka");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let text = format!("{error}: {reason}");
        let mut last = self
            .last_client_error
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if *last != text {
            tracing::warn!("Kafka: {text}");
            *last = text;
        }
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, topic: usize) {
        match result {
            Ok(_) => {
                self.delivered[topic].fetch_add(1, Relaxed);
            }
            Err((error, message)) => {
                self.failed.fetch_add(1, Relaxed);
                let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
                first.get_or_insert_with(|| format!("{}: {error}", message.topic()));
            }
        }
    }
}

/// How long a flush waits: whatever is queued is delivered or times out (message.timeout.ms,
/// 30 s) within this.
const DELIVERY_WAIT: Duration = Duration::from_secs(35);

/// Sends `options`' traffic to the Kafka `kafka` names until `options.count` records are sent
/// or `stop` is raised; then waits for the broker to acknowledge them. Topics that do not exist
/// are created first (the customers table compacted).
pub fn run(kafka: &KafkaConfig, options: &Options, stop: &AtomicBool) -> anyhow::Result<Summary> {
    let producer: BaseProducer<Deliveries> =
        client_config(kafka, Role::TrafficProducer, "sluice-gen")
            .create_with_context(Deliveries::default())
            .context("cannot create a Kafka producer")?;
    producer
        .client()
        .fetch_metadata(None, Duration::from_secs(10))
        .with_context(|| format!("cannot reach Kafka at {}", bootstrap(kafka)))?;
    create_missing_topics(kafka, options)?;

    let mut started = Instant::now();
    let mut generator = Generator::new(options.scenario, options.seed, options.late_fraction);
    let mut sent = 0u64;
    let mut last_progress = Instant::now();
    let mut topic_ready = [false; 2];
    while options.count.is_none_or(|count| sent < count) && !stop.load(Relaxed) {
        if !wait_until(&producer, started + options.pace.due(sent), stop) {
            break;
        }
        let record = generator.next_record(now_ms());
        let topic = record.topic;
        if !send(&producer, &options.topics, record, stop)? {
            break;
        }
        sent += 1;
        // A topic's first record is delivered before the pace goes on: until the producer
        // knows the topic's partitions, records queue up behind it and then go in one burst,
        // and the traffic would not be at the rate asked for.
        if !topic_ready[topic] {
            topic_ready[topic] = true;
            producer.flush(DELIVERY_WAIT).with_context(|| {
                format!(
                    "the first record to `{}` was not acknowledged",
                    options.topics[topic]
                )
            })?;
            let now = Instant::now();
            started = now.checked_sub(options.pace.due(sent)).unwrap_or(now);
        }
        // Delivery reports and progress now and then: each costs a reading of the clock.
        if !sent.is_multiple_of(64) {
            continue;
        }
        producer.poll(Duration::ZERO);
        if last_progress.elapsed() >= Duration::from_secs(10) {
            last_progress = Instant::now();
            let delivered: u64 = producer
                .context()
                .delivered
                .iter()
                .map(|d| d.load(Relaxed))
                .sum();
            tracing::info!(sent, delivered, "generating");
        }
    }
    let flushed = producer.flush(DELIVERY_WAIT);
    let deliveries = producer.context();
    let summary = Summary {
        delivered: [
            deliveries.delivered[0].load(Relaxed),
            deliveries.delivered[1].load(Relaxed),
        ],
        failed: deliveries.failed.load(Relaxed),
        elapsed: started.elapsed(),
    };
    if summary.failed > 0 {
        let first = deliveries
            .first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_default();
        anyhow::bail!(
            "{} of {sent} records were not delivered (first error: {first})",
            summary.failed
        );
    }
    flushed.with_context(|| {
        format!(
            "records still unacknowledged after {} s",
            DELIVERY_WAIT.as_secs()
        )
    })?;
    Ok(summary)
}

/// Waits until `due`, serving delivery reports; false if `stop` was raised meanwhile.
fn wait_until(producer: &BaseProducer<Deliveries>, due: Instant, stop: &AtomicBool) -> bool {
    loop {
        if stop.load(Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= due {
            return true;
        }
        // Serve delivery reports, then sleep: polling with a timeout under a millisecond would
        // spin (librdkafka counts in whole milliseconds). Naps of at least a millisecond (the
        // records due meanwhile then go together, as the producer's linger would send them):
        // one per record at 400,000 a second cost more than the records. Short enough to
        // notice a stop within 100 ms.
        producer.poll(Duration::ZERO);
        std::thread::sleep((due - now).clamp(Duration::from_millis(1), Duration::from_millis(100)));
    }
}

/// Queues `record`, waiting while the producer's queue is full; false if `stop` was raised
/// while waiting.
fn send(
    producer: &BaseProducer<Deliveries>,
    topics: &[String; 2],
    record: GeneratedRecord,
    stop: &AtomicBool,
) -> anyhow::Result<bool> {
    let topic = &topics[record.topic];
    let mut base = BaseRecord::with_opaque_to(topic, record.topic).payload(record.value.as_str());
    if let Some(key) = &record.key {
        base = base.key(key.as_str());
    }
    loop {
        match producer.send(base) {
            Ok(()) => return Ok(true),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                if stop.load(Relaxed) {
                    return Ok(false);
                }
                base = returned;
                producer.poll(Duration::from_millis(50));
            }
            Err((error, _)) => {
                return Err(error).with_context(|| format!("cannot send to `{topic}`"));
            }
        }
    }
}

/// Creates the topics that do not exist yet. A failure is only a warning: the broker may create
/// topics on first use, or refuse us the right to create them but let us write.
fn create_missing_topics(kafka: &KafkaConfig, options: &Options) -> anyhow::Result<()> {
    let admin: AdminClient<QuietContext> = client_config(kafka, Role::Admin, "sluice-gen")
        .create_with_context(QuietContext)
        .context("cannot create a Kafka admin client")?;
    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .context("cannot read topic metadata")?;
    let missing: Vec<usize> = (0..2)
        .filter(|&i| {
            !metadata
                .topics()
                .iter()
                .any(|t| t.name() == options.topics[i] && t.error().is_none())
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let new_topics: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|&i| {
            let topic = NewTopic::new(
                &options.topics[i],
                options.partitions.max(1),
                TopicReplication::Fixed(-1),
            );
            if options.scenario.is_table(i) {
                topic.set("cleanup.policy", "compact")
            } else {
                topic
            }
        })
        .collect();
    let admin_options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    match futures::executor::block_on(admin.create_topics(&new_topics, &admin_options)) {
        Ok(results) => {
            for result in results {
                match result {
                    Ok(topic) => tracing::info!(%topic, "created topic"),
                    Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => {
                        tracing::debug!(%topic, "topic exists")
                    }
                    Err((topic, error)) => {
                        tracing::warn!(%topic, %error, "cannot create topic; sending anyway")
                    }
                }
            }
        }
        Err(error) => tracing::warn!(%error, "cannot create topics; sending anyway"),
    }
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-02-05 15:01:52.884 UTC, seed 000's first record.
    const WINTER_MS: i64 = 1_707_145_312_884;

    #[test]
    fn the_customer_population_is_bounded() {
        let mut g = Generator::new(Scenario::Orders, 7, 0.0);
        for _ in 0..300_000 {
            g.next_record(WINTER_MS);
        }
        assert_eq!(g.customers.len(), MAX_CUSTOMERS);
        let mut ids: Vec<u64> = g.customers.iter().map(|c| c.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), MAX_CUSTOMERS, "ids are unique");
    }

    fn parse(value: &str) -> serde_json::Value {
        serde_json::from_str(value).unwrap_or_else(|e| panic!("{e}: {value}"))
    }

    /// A whole seed-000 date formatted by chrono at once: what [`LogDates`] must write.
    fn formatted_whole(zone: &chrono_tz::Tz, micros: i64) -> String {
        DateTime::from_timestamp_micros(micros)
            .unwrap_or_default()
            .with_timezone(zone)
            .format("%Y-%m-%d %H:%M:%S%.6f %z")
            .to_string()
    }

    fn format_log_date(zone: &chrono_tz::Tz, micros: i64) -> String {
        let mut out = String::new();
        LogDates::new(*zone).write(micros, &mut out);
        out
    }

    #[test]
    fn log_dates_written_once_a_second_read_as_formatted_whole() {
        let zones = [chrono_tz::America::New_York, chrono_tz::Europe::Paris];
        for zone in zones {
            let mut dates = LogDates::new(zone);
            // Across New York's and Paris's spring and autumn changes, within and across seconds,
            // and before the epoch.
            let starts = [
                1_710_053_998,
                1_711_846_798,
                1_729_990_798,
                1_730_613_598,
                -2,
            ];
            for start in starts {
                for step in 0..4_000i64 {
                    let micros = start * 1_000_000 + step * 999_983 / 4;
                    let mut out = String::new();
                    dates.write(micros, &mut out);
                    assert_eq!(out, formatted_whole(&zone, micros), "{zone} at {micros}");
                }
            }
        }
    }

    #[test]
    fn log_dates_carry_the_offset_in_force_in_each_city() {
        let ny = &chrono_tz::America::New_York;
        let paris = &chrono_tz::Europe::Paris;
        assert_eq!(
            format_log_date(ny, 1_707_145_312_884_548),
            "2024-02-05 10:01:52.884548 -0500"
        );
        assert_eq!(
            format_log_date(paris, 1_707_145_312_884_548),
            "2024-02-05 16:01:52.884548 +0100"
        );
        // Summer: daylight saving time in both.
        assert_eq!(
            format_log_date(ny, 1_720_000_000_000_000),
            "2024-07-03 05:46:40.000000 -0400"
        );
        assert_eq!(
            format_log_date(paris, 1_720_000_000_000_000),
            "2024-07-03 11:46:40.000000 +0200"
        );
        // 2024-03-10 06:59:59 UTC is 01:59:59 EST; a second later it is 03:00:00 EDT.
        assert_eq!(
            format_log_date(ny, 1_710_053_999_000_000),
            "2024-03-10 01:59:59.000000 -0500"
        );
        assert_eq!(
            format_log_date(ny, 1_710_054_000_000_000),
            "2024-03-10 03:00:00.000000 -0400"
        );
        // Between 10 and 31 March 2024 New York has moved its clocks and Paris has not yet.
        assert_eq!(
            format_log_date(paris, 1_710_054_000_000_000),
            "2024-03-10 08:00:00.000000 +0100"
        );
        // 2024-10-27 01:00 UTC: Paris falls back from +0200 to +0100.
        assert_eq!(
            format_log_date(paris, 1_729_990_799_000_000),
            "2024-10-27 02:59:59.000000 +0200"
        );
        assert_eq!(
            format_log_date(paris, 1_729_990_800_000_000),
            "2024-10-27 02:00:00.000000 +0100"
        );
    }

    #[test]
    fn timezone_logs_have_seed_000_shape_and_go_to_their_citys_topic() {
        let mut generator = Generator::new(Scenario::Timezones, 7, 0.0);
        let records: Vec<_> = (0..200).map(|_| generator.next_record(WINTER_MS)).collect();
        for (i, record) in records.iter().enumerate() {
            assert!(
                record.value.starts_with(r#"{"date": "2024-02-05 "#),
                "{}",
                record.value
            );
            let value = parse(&record.value);
            assert_eq!(value.as_object().unwrap().len(), 2);
            assert_eq!(value["message"], i.to_string());
            let date = value["date"].as_str().unwrap();
            let expected_offset = if record.topic == 0 { "-0500" } else { "+0100" };
            assert!(
                date.ends_with(expected_offset),
                "{date} to topic {}",
                record.topic
            );
            // The date is the same instant as the event time, to the millisecond.
            let parsed =
                chrono::DateTime::parse_from_str(date, "%Y-%m-%d %H:%M:%S%.6f %z").unwrap();
            assert_eq!(parsed.timestamp_millis(), WINTER_MS);
            assert_eq!(record.key, None);
        }
        let new_york = records.iter().filter(|r| r.topic == 0).count();
        assert!(
            (60..140).contains(&new_york),
            "about half to each city: {new_york}"
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_records() {
        for scenario in [Scenario::Timezones, Scenario::Orders] {
            let run = |seed| {
                let mut generator = Generator::new(scenario, seed, 0.2);
                (0..100)
                    .map(|i| generator.next_record(WINTER_MS + i * 1000))
                    .collect::<Vec<_>>()
            };
            assert_eq!(run(42), run(42));
            assert_ne!(run(42), run(43));
        }
    }

    #[test]
    fn late_records_are_late_by_up_to_five_minutes() {
        let mut generator = Generator::new(Scenario::Timezones, 1, 0.3);
        let records: Vec<_> = (0..1000)
            .map(|_| generator.next_record(WINTER_MS))
            .collect();
        let late: Vec<i64> = records
            .iter()
            .map(|r| WINTER_MS - r.event_time_ms)
            .filter(|&lag| lag > 0)
            .collect();
        assert!(
            (200..400).contains(&late.len()),
            "about 30% late: {}",
            late.len()
        );
        assert!(
            late.iter()
                .all(|&lag| (1000..=MAX_LATENESS.as_millis() as i64).contains(&lag))
        );
        assert!(records.iter().all(|r| r.event_time_ms <= WINTER_MS));
        let none_late = Generator::new(Scenario::Timezones, 1, 0.0).next_record(WINTER_MS);
        assert_eq!(none_late.event_time_ms, WINTER_MS);
    }

    #[test]
    fn orders_reference_customers_already_sent_with_seed_004_shape() {
        let mut generator = Generator::new(Scenario::Orders, 3, 0.0);
        let records: Vec<_> = (0..500)
            .map(|i| generator.next_record(1_585_912_800_000 + i * 1000))
            .collect();
        // Seed 004's customers come first, keyed by their id.
        let first: Vec<_> = records[..3]
            .iter()
            .map(|r| (r.topic, r.key.clone().unwrap()))
            .collect();
        assert_eq!(first, [(0, "5".into()), (0, "7".into()), (0, "2".into())]);
        assert_eq!(
            records[0].value,
            r#"{"id": "5", "name": "fred", "age": 34, "email": "fred@example.com"}"#
        );

        let mut known = std::collections::HashSet::new();
        let (mut orders, mut updates) = (0, 0);
        for record in &records {
            let value = parse(&record.value);
            if record.topic == 0 {
                let id = value["id"].as_str().unwrap().to_string();
                assert_eq!(record.key.as_deref(), Some(id.as_str()));
                assert!(value["age"].is_u64() && value["name"].is_string());
                updates += usize::from(!known.insert(id));
            } else {
                orders += 1;
                let customer = value["customer_id"].as_str().unwrap();
                assert!(
                    known.contains(customer),
                    "order for unknown customer {customer}"
                );
                assert_eq!(record.key.as_deref(), value["order_id"].as_str());
                assert!(value["price"].is_f64() && value["currency"].is_string());
                // Two decimals, as in the seed (`15.00`), and seed 004's `ts` format.
                let price = record
                    .value
                    .split(r#""price": "#)
                    .nth(1)
                    .unwrap()
                    .split(',')
                    .next()
                    .unwrap();
                assert_eq!(
                    price.split('.').nth(1).unwrap().len(),
                    2,
                    "{}",
                    record.value
                );
                chrono::NaiveDateTime::parse_from_str(
                    value["ts"].as_str().unwrap(),
                    "%Y-%m-%dT%H:%M:%S",
                )
                .unwrap();
            }
        }
        assert!(orders > 400, "mostly orders: {orders}");
        assert!(
            known.len() > 5 && updates > 0,
            "new customers ({}) and updates ({updates}) keep coming",
            known.len()
        );
    }

    #[test]
    fn paces_schedule_records() {
        assert_eq!(Pace::Rate(4.0).due(0), Duration::ZERO);
        assert_eq!(Pace::Rate(4.0).due(10), Duration::from_millis(2500));
        let burst = Pace::Burst {
            size: 100,
            every: Duration::from_secs(5),
        };
        assert_eq!(burst.due(99), Duration::ZERO);
        assert_eq!(burst.due(100), Duration::from_secs(5));
        assert_eq!(burst.due(250), Duration::from_secs(10));
        assert_eq!(Pace::Max.due(1_000_000), Duration::ZERO);
    }
}
