//! The sink: writes a partition's outputs and dead letters to Kafka, and keeps the ledger of
//! batches written but not yet acknowledged, from which the partition's committable offset
//! follows: an input offset may be committed only once everything derived from it is
//! acknowledged.

use crate::config::{KafkaConfig, PipelineConfig};
use crate::engine::{InputRef, OutputRef};
use crate::kafka::{Role, client_config};
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext, TopicPartitionList};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

/// Writes one pipeline's outputs and dead letters; shared by its partition workers. With
/// exactly-once, its producer is transactional: workers write batches inside the open
/// transaction ([`Sink::batch`]), and the source commits or aborts it between batches
/// ([`Sink::transaction`]).
pub struct Sink {
    /// Read-locked while a batch's records are handed over; write-locked to commit, abort or
    /// replace the producer, so that a transaction never ends in the middle of a batch.
    producer: RwLock<ThreadedProducer<AckContext>>,
    outputs: Arc<Vec<String>>,
    dead_letter: Option<String>,
    /// For exactly-once: the settings to make the producer again after a fatal error.
    transactional: Option<ClientConfig>,
}

/// Why a sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The producer could not be created.
    #[error("cannot create the producer")]
    Client(#[source] KafkaError),
    /// The broker refused transactions.
    #[error(
        "exactly-once: the broker refused transactional.id `{id}`: it needs Kafka 2.5 or later with transactions enabled (a transaction state log it can write) and, with ACLs, WRITE and DESCRIBE on the transactional id and the consumer group"
    )]
    Transactions {
        /// The transactional id.
        id: String,
        /// What the broker said.
        #[source]
        source: KafkaError,
    },
}

/// How long a transaction call may block.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);

impl Sink {
    /// A sink for `pipeline`'s output and dead-letter topics; transactional, with
    /// `transactional_id`, for exactly-once.
    pub fn new(
        kafka: &KafkaConfig,
        pipeline: &PipelineConfig,
        transactional_id: Option<&str>,
    ) -> Result<Sink, SinkError> {
        let client_id = format!("sluice-{}", pipeline.name);
        let role = Role::PipelineProducer {
            pipeline,
            transactional_id,
        };
        let config = client_config(kafka, role, &client_id);
        let producer = match transactional_id {
            None => config
                .create_with_context(AckContext)
                .map_err(SinkError::Client)?,
            Some(id) => start_transactions(&config).map_err(|source| match source {
                KafkaError::ClientCreation(_) => SinkError::Client(source),
                _ => SinkError::Transactions {
                    id: id.to_string(),
                    source,
                },
            })?,
        };
        Ok(Sink {
            producer: RwLock::new(producer),
            outputs: Arc::new(pipeline.outputs.clone()),
            dead_letter: pipeline.dead_letter.clone(),
            transactional: transactional_id.map(|_| config),
        })
    }

    /// The output topics; transforms route to them by index.
    pub fn outputs(&self) -> &Arc<Vec<String>> {
        &self.outputs
    }

    /// Whether failed records have a dead-letter topic to go to.
    pub fn has_dead_letter(&self) -> bool {
        self.dead_letter.is_some()
    }

    /// Whether writes go into transactions (exactly-once).
    pub fn is_transactional(&self) -> bool {
        self.transactional.is_some()
    }

    /// Hands a batch's records over; the open transaction cannot end until it is dropped.
    pub fn batch(&self) -> SinkBatch<'_> {
        SinkBatch {
            sink: self,
            producer: self.producer.read().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// Waits until no batch is being handed over and holds further ones off, to end the open
    /// transaction.
    pub fn transaction(&self) -> Transaction<'_> {
        Transaction {
            sink: self,
            producer: self.producer.write().unwrap_or_else(|e| e.into_inner()),
        }
    }
}

/// Creates a transactional producer, fences older ones with its id, and opens a transaction.
fn start_transactions(config: &ClientConfig) -> Result<ThreadedProducer<AckContext>, KafkaError> {
    let producer: ThreadedProducer<AckContext> = config.create_with_context(AckContext)?;
    producer.init_transactions(TRANSACTION_TIMEOUT)?;
    producer.begin_transaction()?;
    Ok(producer)
}

/// A batch being handed to the sink.
pub struct SinkBatch<'a> {
    sink: &'a Sink,
    producer: RwLockReadGuard<'a, ThreadedProducer<AckContext>>,
}

impl SinkBatch<'_> {
    /// Writes `output` to the output topic at index `route`.
    pub fn output(&self, route: usize, output: &OutputRef<'_>, acks: &Arc<Acks>) {
        send(
            &self.producer,
            &self.sink.outputs[route],
            output.key(),
            output.value(),
            output.headers(),
            output.timestamp(),
            acks,
        );
    }

    /// Writes `record` as it was read to the dead-letter topic, with `context` (what failed
    /// and where) appended to its headers. Without a dead-letter topic, does nothing.
    pub fn dead_letter(&self, record: &InputRef<'_>, context: &[(&str, &str)], acks: &Arc<Acks>) {
        let Some(topic) = &self.sink.dead_letter else {
            return;
        };
        let headers = record
            .headers()
            .chain(context.iter().map(|(k, v)| (*k, Some(v.as_bytes()))));
        send(
            &self.producer,
            topic,
            record.key(),
            record.value(),
            headers,
            record.timestamp(),
            acks,
        );
    }
}

/// Why a transaction did not commit.
#[derive(Debug, thiserror::Error)]
pub enum TransactionError {
    /// The transaction must be aborted; the producer can go on.
    #[error("the transaction must be aborted")]
    Abortable(#[source] KafkaError),
    /// The producer cannot go on (fenced by a newer one with its id, or broken): it must be
    /// made again.
    #[error("the transactional producer failed")]
    Fatal(#[source] KafkaError),
}

impl TransactionError {
    fn of(error: KafkaError) -> Self {
        match &error {
            KafkaError::Transaction(e) if e.is_fatal() => TransactionError::Fatal(error),
            _ => TransactionError::Abortable(error),
        }
    }
}

/// The open transaction, with no batch being handed over.
pub struct Transaction<'a> {
    sink: &'a Sink,
    producer: RwLockWriteGuard<'a, ThreadedProducer<AckContext>>,
}

impl Transaction<'_> {
    /// Commits every record written since the last commit together with `offsets` as the
    /// consumer group's positions, then opens the next transaction.
    pub fn commit(
        &mut self,
        offsets: &TopicPartitionList,
        group: &ConsumerGroupMetadata,
    ) -> Result<(), TransactionError> {
        let retrying = |call: &dyn Fn() -> Result<(), KafkaError>| {
            let mut tries = 0;
            loop {
                match call() {
                    Err(KafkaError::Transaction(e)) if e.is_retriable() && tries < 3 => tries += 1,
                    other => return other.map_err(TransactionError::of),
                }
            }
        };
        // Flushing apart from the commit only to time it: it is most of a commit's time
        // (`make bench`; see the README's exactly-once figures).
        let started = Instant::now();
        self.producer
            .flush(TRANSACTION_TIMEOUT)
            .map_err(TransactionError::of)?;
        let flushed = Instant::now();
        if offsets.count() > 0 {
            retrying(&|| {
                self.producer
                    .send_offsets_to_transaction(offsets, group, TRANSACTION_TIMEOUT)
            })?;
        }
        let offsets_sent = Instant::now();
        retrying(&|| self.producer.commit_transaction(TRANSACTION_TIMEOUT))?;
        tracing::debug!(
            flush_us = (flushed - started).as_micros() as u64,
            offsets_us = (offsets_sent - flushed).as_micros() as u64,
            end_us = offsets_sent.elapsed().as_micros() as u64,
            "transaction commit phases"
        );
        self.producer
            .begin_transaction()
            .map_err(TransactionError::of)
    }

    /// Aborts the open transaction (its records are never seen by read_committed readers)
    /// and opens the next; with `fatal`, the producer is made again first, which fences the
    /// old one.
    pub fn abort(&mut self, fatal: bool) -> Result<(), KafkaError> {
        if fatal {
            let config = self.sink.transactional.as_ref().expect("transactional");
            *self.producer = start_transactions(config)?;
            return Ok(());
        }
        self.producer.abort_transaction(TRANSACTION_TIMEOUT)?;
        self.producer.begin_transaction()
    }
}

/// Hands one record to the producer, waiting while its queue is full. A record the producer
/// refuses outright fails `acks`, which halts the partition before its offset is committed.
fn send<'a>(
    producer: &ThreadedProducer<AckContext>,
    topic: &str,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: impl Iterator<Item = (&'a str, Option<&'a [u8]>)>,
    timestamp: Option<i64>,
    acks: &Arc<Acks>,
) {
    let mut record = BaseRecord::<[u8], [u8], Arc<Acks>>::with_opaque_to(topic, acks.clone());
    record.key = key;
    record.payload = value;
    record.timestamp = timestamp;
    let mut owned: Option<OwnedHeaders> = None;
    for (name, value) in headers {
        owned = Some(
            owned
                .unwrap_or_default()
                .insert(Header { key: name, value }),
        );
    }
    record.headers = owned;
    acks.expect();
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                record = returned;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((error, _)) => {
                acks.fail(format!("cannot write to `{topic}`: {error}"));
                return;
            }
        }
    }
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

/// One partition's batches written but not yet fully acknowledged, oldest first. They hold
/// only offsets and counters (the producer holds the records).
#[derive(Debug, Default)]
pub struct Ledger {
    batches: VecDeque<(i64, Arc<Acks>)>,
}

/// What [`Ledger::settle`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Settled {
    /// Every batch up to here is acknowledged: this offset (the one after the newest such
    /// batch's last record) may be committed. `None` when no batch was settled.
    pub committable: Option<i64>,
    /// A record of the oldest unsettled batch could not be written; nothing from it on may be
    /// committed.
    pub failed: Option<String>,
}

impl Ledger {
    /// Notes a batch whose records end just before `next_offset`, written with `acks`.
    pub fn push(&mut self, next_offset: i64, acks: Arc<Acks>) {
        self.batches.push_back((next_offset, acks));
    }

    /// Batches not yet settled.
    pub fn len(&self) -> usize {
        self.batches.len()
    }

    /// Whether every batch is settled.
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Forgets every batch (after a failure: none of them will be committed).
    pub fn clear(&mut self) {
        self.batches.clear();
    }

    /// Settles acknowledged batches, oldest first, waiting for outstanding ones until `wait`
    /// (if given). Batches acknowledged out of order wait for the older ones.
    pub fn settle(&mut self, wait: Option<Instant>) -> Settled {
        let mut settled = Settled::default();
        while let Some((next_offset, acks)) = self.batches.front() {
            if !acks.is_done() {
                let Some(deadline) = wait else { break };
                let left = deadline.saturating_duration_since(Instant::now());
                if !acks.wait(left) {
                    break;
                }
            }
            if let Some(error) = acks.error() {
                settled.failed = Some(error);
                break;
            }
            settled.committable = Some(*next_offset);
            self.batches.pop_front();
        }
        settled
    }

    /// Waits up to `timeout` for the oldest batch's acknowledgements.
    pub fn wait_oldest(&self, timeout: Duration) {
        if let Some((_, acks)) = self.batches.front() {
            acks.wait(timeout);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn batch(records: usize) -> Arc<Acks> {
        let acks = Acks::new();
        (0..records).for_each(|_| acks.expect());
        acks.seal();
        acks
    }

    #[test]
    fn offsets_become_committable_in_order_only_once_acknowledged() {
        let mut ledger = Ledger::default();
        let (first, second, third) = (batch(2), batch(1), batch(1));
        ledger.push(10, first.clone());
        ledger.push(15, second.clone());
        ledger.push(20, third.clone());
        let nothing = Settled::default();
        assert_eq!(ledger.settle(None), nothing);
        // The newer batches are acknowledged first: they wait for the oldest.
        second.release();
        third.release();
        assert_eq!(ledger.settle(None), nothing);
        first.release();
        assert_eq!(ledger.settle(None), nothing, "one record left");
        first.release();
        assert_eq!(ledger.settle(None).committable, Some(20));
        assert!(ledger.is_empty());
        assert_eq!(ledger.settle(None), nothing);
    }

    #[test]
    fn a_failed_delivery_stops_what_may_be_committed_at_its_batch() {
        let mut ledger = Ledger::default();
        let (good, bad, after) = (batch(1), batch(1), batch(1));
        ledger.push(3, good.clone());
        ledger.push(6, bad.clone());
        ledger.push(9, after.clone());
        good.release();
        after.release();
        bad.fail("cannot write to `out`: broken".into());
        // The batch before the failed one may still be committed; nothing after it.
        assert_eq!(
            ledger.settle(None),
            Settled {
                committable: Some(3),
                failed: Some("cannot write to `out`: broken".into())
            }
        );
        assert_eq!(ledger.len(), 2);
    }

    #[test]
    fn settling_waits_for_outstanding_acknowledgements_until_the_deadline() {
        let mut ledger = Ledger::default();
        let slow = batch(1);
        ledger.push(4, slow.clone());
        let started = Instant::now();
        let deadline = started + Duration::from_millis(50);
        assert_eq!(ledger.settle(Some(deadline)), Settled::default());
        assert!(started.elapsed() >= Duration::from_millis(50));
        let acker = std::thread::spawn(move || slow.release());
        let settled = ledger.settle(Some(Instant::now() + Duration::from_secs(30)));
        assert_eq!(settled.committable, Some(4));
        acker.join().unwrap();
    }
}
