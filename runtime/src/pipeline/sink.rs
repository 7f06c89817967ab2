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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

/// Writes one pipeline's outputs and dead letters; shared by its partition workers.
///
/// At-least-once, it has one producer. Exactly-once, it has two transactional producers, the
/// *slots*, which take batches in turn: workers write into the current slot's open transaction
/// ([`Sink::batch`]); every commit interval the source [switches](Sink::switch) the batches to
/// the other slot and commits the one they left ([`Sink::transaction`]) while the workers go on
/// writing. A commit mostly waits for the broker's acknowledgements, so with one producer the
/// workers would wait with it (see the README's exactly-once figures).
pub struct Sink {
    /// Each read-locked while a batch's records are handed over; write-locked to commit, abort
    /// or replace its producer, so that a transaction never ends in the middle of a batch.
    slots: Vec<RwLock<ThreadedProducer<AckContext>>>,
    /// The slot batches go to.
    current: AtomicUsize,
    outputs: Arc<Vec<String>>,
    dead_letter: Option<String>,
    /// For exactly-once: each slot's settings, to make its producer again after a fatal error.
    transactional: Vec<ClientConfig>,
    /// Per slot: whether its open transaction holds records that no input offset covers (an
    /// idle task's timers), so that it must commit even when no partition moved on.
    unanchored: [AtomicBool; 2],
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

/// How long `init_transactions` may block: a restarted broker loads its transaction log first.
const INIT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long any other transaction call may block: Sluice's `transaction.timeout.ms`, after
/// which the broker aborts the transaction anyway.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

impl Sink {
    /// A sink for `pipeline`'s output and dead-letter topics; for exactly-once, with two
    /// transactional producers whose ids are `transactional_id` followed by `-0` and `-1`.
    pub fn new(
        kafka: &KafkaConfig,
        pipeline: &PipelineConfig,
        transactional_id: Option<&str>,
    ) -> Result<Sink, SinkError> {
        let client_id = format!("sluice-{}", pipeline.name);
        let config = |transactional_id: Option<&str>| {
            let role = Role::PipelineProducer {
                pipeline,
                transactional_id,
            };
            client_config(kafka, role, &client_id)
        };
        let (slots, transactional) = match transactional_id {
            None => {
                let producer = config(None)
                    .create_with_context(AckContext)
                    .map_err(SinkError::Client)?;
                (vec![RwLock::new(producer)], vec![])
            }
            Some(base) => {
                let (mut slots, mut configs) = (vec![], vec![]);
                for slot in 0..2 {
                    let id = format!("{base}-{slot}");
                    let config = config(Some(&id));
                    let producer = start_transactions(&config).map_err(|source| match source {
                        KafkaError::ClientCreation(_) => SinkError::Client(source),
                        _ => SinkError::Transactions { id, source },
                    })?;
                    slots.push(RwLock::new(producer));
                    configs.push(config);
                }
                (slots, configs)
            }
        };
        Ok(Sink {
            slots,
            current: AtomicUsize::new(0),
            outputs: Arc::new(pipeline.outputs.clone()),
            dead_letter: pipeline.dead_letter.clone(),
            transactional,
            unanchored: Default::default(),
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
        !self.transactional.is_empty()
    }

    /// Hands a batch's records over to the current slot; its open transaction cannot end until
    /// the returned guard is dropped.
    pub fn batch(&self) -> SinkBatch<'_> {
        loop {
            let slot = self.current.load(Ordering::Acquire);
            let producer = self.slots[slot].read().unwrap_or_else(|e| e.into_inner());
            // Batches go only into the current slot: a slot switched away from while this
            // waited is being committed, and its offsets must cover exactly its batches.
            if self.current.load(Ordering::Acquire) == slot {
                return SinkBatch {
                    sink: self,
                    slot,
                    producer,
                };
            }
        }
    }

    /// Exactly-once: sends further batches to the other slot; returns the slot they left,
    /// whose transaction is now to be committed.
    pub fn switch(&self) -> usize {
        let left = self.current.load(Ordering::Acquire);
        self.current.store(1 - left, Ordering::Release);
        left
    }

    /// Exactly-once: waits until no batch is being handed over to `slot` and holds further
    /// ones off, to end its open transaction.
    pub fn transaction(&self, slot: usize) -> Transaction<'_> {
        Transaction {
            sink: self,
            slot,
            producer: self.slots[slot].write().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// Exactly-once: aborts both slots' open transactions and opens new ones; `fatal` names
    /// the slot whose producer cannot go on and is made again.
    pub fn abort_all(&self, fatal: Option<usize>) -> Result<(), KafkaError> {
        (0..self.slots.len()).try_for_each(|slot| self.transaction(slot).abort(fatal == Some(slot)))
    }
}

/// Creates a transactional producer, fences older ones with its id, and opens a transaction.
fn start_transactions(config: &ClientConfig) -> Result<ThreadedProducer<AckContext>, KafkaError> {
    let producer: ThreadedProducer<AckContext> = config.create_with_context(AckContext)?;
    producer.init_transactions(INIT_TIMEOUT)?;
    producer.begin_transaction()?;
    Ok(producer)
}

/// A batch being handed to the sink.
pub struct SinkBatch<'a> {
    sink: &'a Sink,
    slot: usize,
    producer: RwLockReadGuard<'a, ThreadedProducer<AckContext>>,
}

impl SinkBatch<'_> {
    /// The slot the batch goes to (always 0 at-least-once).
    pub fn slot(&self) -> usize {
        self.slot
    }

    /// Notes that this batch covers no input offset: its slot's transaction must commit anyway.
    pub fn unanchored(&self) {
        self.sink.unanchored[self.slot].store(true, Ordering::Release);
    }

    /// Writes `output` to the output topic at index `route`.
    pub fn output(&self, route: usize, output: &OutputRef<'_>, acks: &Arc<Acks>) {
        send(
            &self.producer,
            (&self.sink.outputs[route], None),
            output.key(),
            output.value(),
            output.headers(),
            output.timestamp(),
            acks,
        );
    }

    /// Writes a change of a stateful task's state to its changelog `topic`, partition
    /// `partition` (a delete as a tombstone).
    pub fn changelog(
        &self,
        topic: &str,
        partition: i32,
        key: &[u8],
        value: Option<&[u8]>,
        acks: &Arc<Acks>,
    ) {
        send(
            &self.producer,
            (topic, Some(partition)),
            Some(key),
            value,
            std::iter::empty(),
            None,
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
            (topic, None),
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

/// A slot's open transaction, with no batch being handed over.
pub struct Transaction<'a> {
    sink: &'a Sink,
    slot: usize,
    producer: RwLockWriteGuard<'a, ThreadedProducer<AckContext>>,
}

impl Transaction<'_> {
    /// Whether the open transaction holds records that no offset covers; forgets it.
    pub fn take_unanchored(&self) -> bool {
        self.sink.unanchored[self.slot].swap(false, Ordering::AcqRel)
    }

    /// Commits every record written since the last commit together with `offsets` (if any) as
    /// the consumer group's positions, then opens the next transaction.
    pub fn commit(
        &mut self,
        offsets: Option<(&TopicPartitionList, &ConsumerGroupMetadata)>,
    ) -> Result<(), TransactionError> {
        // A call that timed out may be resumed once (librdkafka's advice); after that the
        // transaction is aborted, rather than holding this slot for minutes.
        let retrying = |what: &str, call: &dyn Fn() -> Result<(), KafkaError>| {
            let mut resumed = false;
            loop {
                match call() {
                    Err(KafkaError::Transaction(e)) if e.is_retriable() && !resumed => {
                        tracing::warn!(event = "transaction_call_retried", call = what, error = %e,
                            "a transaction call did not finish in time; resuming it once");
                        resumed = true;
                    }
                    other => return other.map_err(TransactionError::of),
                }
            }
        };
        let started = Instant::now();
        self.wait_for_deliveries()?;
        let delivered = Instant::now();
        if let Some((offsets, group)) = offsets {
            retrying("send_offsets_to_transaction", &|| {
                self.producer
                    .send_offsets_to_transaction(offsets, group, CALL_TIMEOUT)
            })?;
        }
        let offsets_sent = Instant::now();
        retrying("commit_transaction", &|| {
            self.producer.commit_transaction(CALL_TIMEOUT)
        })?;
        tracing::debug!(
            deliveries_us = (delivered - started).as_micros() as u64,
            offsets_us = (offsets_sent - delivered).as_micros() as u64,
            end_us = offsets_sent.elapsed().as_micros() as u64,
            "transaction commit phases"
        );
        self.producer
            .begin_transaction()
            .map_err(TransactionError::of)
    }

    /// Waits until every record handed to the producer is delivered, which a commit must, so
    /// that the commit does not: rust-rdkafka's `commit_transaction` waits with `flush`, which
    /// polls in steps of 100 ms while the producer's own thread takes the delivery reports, so
    /// every commit took at least 100 ms (`make bench`).
    fn wait_for_deliveries(&self) -> Result<(), TransactionError> {
        let deadline = Instant::now() + CALL_TIMEOUT;
        while self.producer.in_flight_count() > 0 {
            if Instant::now() >= deadline {
                return Err(TransactionError::Abortable(KafkaError::Flush(
                    RDKafkaErrorCode::OperationTimedOut,
                )));
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        Ok(())
    }

    /// Aborts the open transaction (its records are never seen by read_committed readers)
    /// and opens the next; with `fatal`, or when the abort fails (the producer cannot go on, or
    /// a call that timed out is still in progress), the producer is made again instead, which
    /// fences the old one and makes the broker abort its transaction.
    fn abort(&mut self, fatal: bool) -> Result<(), KafkaError> {
        self.take_unanchored();
        if !fatal {
            let aborted = self
                .producer
                .abort_transaction(CALL_TIMEOUT)
                .and_then(|()| self.producer.begin_transaction());
            match aborted {
                Ok(()) => return Ok(()),
                Err(error) => {
                    tracing::warn!(event = "transactional_producer_replaced", %error,
                        "cannot abort the transaction; making the producer again");
                }
            }
        }
        *self.producer = start_transactions(&self.sink.transactional[self.slot])?;
        Ok(())
    }
}

/// Hands one record to the producer for `(topic, partition)` (no partition: the partitioner
/// picks), waiting while its queue is full. A record the producer refuses outright fails
/// `acks`, which halts the partition before its offset is committed.
fn send<'a>(
    producer: &ThreadedProducer<AckContext>,
    (topic, partition): (&str, Option<i32>),
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
    record.partition = partition;
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

impl ClientContext for AckContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        crate::kafka::client_log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        crate::kafka::client_error(&error, reason);
    }
}

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

    /// Waits until every batch's deliveries are in, at most until `deadline`; true if they are.
    pub fn wait_all(&self, deadline: Instant) -> bool {
        (self.batches.iter())
            .all(|(_, acks)| acks.wait(deadline.saturating_duration_since(Instant::now())))
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
