//! The sink: writes a partition's outputs and dead letters to Kafka, and keeps the ledger of
//! batches written but not yet acknowledged, from which the partition's committable offset
//! follows: an input offset may be committed only once everything derived from it is
//! acknowledged.

use crate::config::{KafkaConfig, PipelineConfig};
use crate::engine::{InputRef, OutputRef};
use crate::kafka::{Role, client_config};
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Writes one pipeline's outputs and dead letters; shared by its partition workers.
pub struct Sink {
    producer: ThreadedProducer<AckContext>,
    outputs: Arc<Vec<String>>,
    dead_letter: Option<String>,
}

impl Sink {
    /// A sink for `pipeline`'s output and dead-letter topics.
    pub fn new(kafka: &KafkaConfig, pipeline: &PipelineConfig) -> Result<Sink, KafkaError> {
        let client_id = format!("sluice-{}", pipeline.name);
        let producer = client_config(kafka, Role::PipelineProducer(pipeline), &client_id)
            .create_with_context(AckContext)?;
        Ok(Sink {
            producer,
            outputs: Arc::new(pipeline.outputs.clone()),
            dead_letter: pipeline.dead_letter.clone(),
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

    /// Writes `output` to the output topic at index `route`.
    pub fn output(&self, route: usize, output: &OutputRef<'_>, acks: &Arc<Acks>) {
        send(
            &self.producer,
            &self.outputs[route],
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
        let Some(topic) = &self.dead_letter else {
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
