//! A partition worker: runs one partition's batches through its own chain instances, writes
//! outputs and dead letters, and marks an input offset committable only once everything derived
//! from it is acknowledged.
//!
//! Batches are written in order and up to [`MAX_IN_FLIGHT`] of them await acknowledgement at
//! once, so that the producer's round trip overlaps the next batch's transform.

use super::PipelineSpec;
use super::chain::{Chain, ChainFailure, ChainResult};
use super::kafka::{AckContext, Acks};
use super::metrics::{PipelineMetrics, Status};
use crate::config::OnError;
use crate::engine::{InputBatch, InputBatchBuilder, InputRef};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, ThreadedProducer};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

/// Batches written but not yet fully acknowledged, per partition. They hold only offsets and
/// counters (the producer holds the records). With 8, workers waited on the producer's 10 ms
/// linger: 32 gave 1.3x the records per second on `make bench-peers`.
const MAX_IN_FLIGHT: usize = 32;
/// How long a drain waits for outstanding acknowledgements before giving up on them (they are
/// then not committed, and are replayed after a restart).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// What the poll loop sends a worker.
pub enum Command {
    /// Run this batch.
    Batch(InputBatchBuilder),
    /// Finish every batch, wait for acknowledgements, publish the final committable offset, then
    /// reply and exit.
    Drain(SyncSender<()>),
}

/// The poll loop's handle on a worker.
pub struct WorkerHandle {
    /// Where batches go; bounded, so a slow worker slows consumption.
    pub commands: SyncSender<Command>,
    /// The next offset to commit, once known (-1 before).
    pub committable: Arc<AtomicI64>,
    /// What the poll loop last stored with the consumer.
    pub stored: i64,
    thread: std::thread::JoinHandle<()>,
}

impl WorkerHandle {
    /// Asks the worker to drain, waits until it has (or `timeout` passes), and returns the
    /// final committable offset.
    pub fn drain(self, timeout: Duration) -> i64 {
        let (reply, done) = std::sync::mpsc::sync_channel(1);
        if self.commands.send(Command::Drain(reply)).is_ok() && done.recv_timeout(timeout).is_ok() {
            let _ = self.thread.join();
        }
        self.committable.load(Relaxed)
    }
}

/// Starts a worker for `topic`/`partition`.
pub fn spawn(
    spec: Arc<PipelineSpec>,
    chain: Chain,
    topic: &str,
    partition: i32,
) -> std::io::Result<WorkerHandle> {
    let (commands, receiver) = std::sync::mpsc::sync_channel(2);
    let committable = Arc::new(AtomicI64::new(-1));
    let worker = Worker {
        spec,
        chain,
        topic: topic.to_string(),
        partition,
        committable: committable.clone(),
        in_flight: VecDeque::new(),
        halted: false,
    };
    let thread = std::thread::Builder::new()
        .name(format!("sluice-{topic}-{partition}"))
        .spawn(move || worker.run(receiver))?;
    Ok(WorkerHandle {
        commands,
        committable,
        stored: -1,
        thread,
    })
}

struct Worker {
    spec: Arc<PipelineSpec>,
    chain: Chain,
    topic: String,
    partition: i32,
    committable: Arc<AtomicI64>,
    /// Per written batch: the offset after its last record, and its acknowledgements.
    in_flight: VecDeque<(i64, Arc<Acks>)>,
    /// After an unrecoverable error: batches are ignored and nothing more is committed.
    halted: bool,
}

impl Worker {
    fn run(mut self, commands: Receiver<Command>) {
        loop {
            match commands.recv_timeout(Duration::from_millis(20)) {
                Ok(Command::Batch(batch)) => {
                    if self.halted {
                        continue;
                    }
                    if let Err(error) = self.handle(batch.batch()) {
                        self.halt(error);
                    }
                    self.settle(false);
                    while self.in_flight.len() > MAX_IN_FLIGHT && !self.halted {
                        self.in_flight
                            .front()
                            .map(|(_, acks)| acks.wait(Duration::from_millis(100)));
                        self.settle(false);
                    }
                }
                Ok(Command::Drain(reply)) => {
                    self.settle(true);
                    let _ = reply.send(());
                    return;
                }
                Err(RecvTimeoutError::Timeout) => self.settle(false),
                Err(RecvTimeoutError::Disconnected) => {
                    self.settle(true);
                    return;
                }
            }
        }
    }

    fn metrics(&self) -> &PipelineMetrics {
        &self.spec.shared.metrics
    }

    /// Stops this partition's progress: nothing after the last acknowledged batch is committed,
    /// so a restart replays from there.
    fn halt(&mut self, error: String) {
        tracing::error!(pipeline = %self.spec.shared.name, topic = %self.topic, partition = self.partition, %error, "pipeline stopping");
        self.metrics().set_status(Status::Failed(error));
        self.spec.failed.store(true, Relaxed);
        self.halted = true;
        self.in_flight.clear();
    }

    /// Publishes the offsets of batches whose every delivery is in, oldest first.
    fn settle(&mut self, wait: bool) {
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while let Some((next_offset, acks)) = self.in_flight.front() {
            if !acks.is_done() {
                let left = deadline.saturating_duration_since(Instant::now());
                if !wait || !acks.wait(left) {
                    if wait {
                        tracing::warn!(pipeline = %self.spec.shared.name, topic = %self.topic, partition = self.partition,
                            "acknowledgements still outstanding after {DRAIN_TIMEOUT:?}; leaving them uncommitted");
                    }
                    return;
                }
            }
            if let Some(error) = acks.error() {
                self.halt(error);
                return;
            }
            tracing::debug!(topic = %self.topic, partition = self.partition, next_offset, "batch acknowledged");
            self.committable.store(*next_offset, Relaxed);
            self.in_flight.pop_front();
        }
    }

    fn handle(&mut self, batch: &InputBatch) -> Result<(), String> {
        let Some(last) = batch.records.last() else {
            return Ok(());
        };
        let next_offset = last.offset + 1;
        let metrics = self.spec.shared.metrics.clone();
        metrics
            .consumed
            .add(&batch.topic, batch.records.len() as u64);
        self.switch_if_deployed();
        let started = Instant::now();
        let restarts = self.chain.restarts();
        let result = self
            .chain
            .run(batch)
            .map_err(|e| format!("cannot restart a trapped transform: {e}"))?;
        metrics.observe_batch(started.elapsed());
        metrics
            .instance_restarts
            .fetch_add(self.chain.restarts() - restarts, Relaxed);

        let acks = Acks::new();
        if !result.failures.is_empty() {
            metrics
                .failed
                .add(&batch.topic, result.failures.len() as u64);
            self.handle_failures(batch, &result.failures, &acks)?;
        }
        let outputs = self.write_outputs(&result, &acks);
        tracing::debug!(topic = %self.topic, partition = self.partition, first = batch.records[0].offset,
            last = last.offset, records = batch.records.len(), outputs, "batch written");
        acks.seal();
        self.in_flight.push_back((next_offset, acks));
        Ok(())
    }

    /// Switches to a newly deployed chain at this batch boundary, timing the pause it causes.
    fn switch_if_deployed(&mut self) {
        let shared = &self.spec.shared;
        let started = Instant::now();
        match self
            .chain
            .update(&self.spec.engine, &shared.deployed, &shared.tables)
        {
            Ok(false) => {}
            Ok(true) => {
                let pause = started.elapsed();
                shared.metrics.observe_swap(pause);
                tracing::info!(pipeline = %shared.name, topic = %self.topic, partition = self.partition,
                    pause_us = pause.as_micros() as u64, "switched to the deployed transforms");
            }
            Err(error) => {
                tracing::error!(pipeline = %shared.name, topic = %self.topic, partition = self.partition, %error,
                    "cannot start the deployed transforms; this partition keeps running the previous ones");
            }
        }
    }

    /// Writes the batch's outputs, counting them per output topic; returns how many.
    fn write_outputs(&self, result: &ChainResult, acks: &Arc<Acks>) -> u64 {
        let outputs = &self.spec.shared.outputs;
        let mut written = vec![0u64; outputs.len()];
        for (_, route, output) in result.outputs() {
            send(
                &self.spec.producer,
                &outputs[route],
                output.key(),
                output.value(),
                output.headers(),
                output.timestamp(),
                acks,
            );
            written[route] += 1;
        }
        for (route, n) in written.iter().enumerate() {
            self.spec.shared.metrics.produced.add_at(route, *n);
        }
        written.iter().sum()
    }

    fn handle_failures(
        &self,
        batch: &InputBatch,
        failures: &[ChainFailure],
        acks: &Arc<Acks>,
    ) -> Result<(), String> {
        for failure in failures {
            let record = InputRef::new(batch, failure.input);
            let stage = self.chain.stage(failure.stage);
            match (&self.spec.shared.dead_letter, self.spec.on_error) {
                (Some(dead_letter), _) => {
                    let (partition, offset, stage_index, version) = (
                        self.partition.to_string(),
                        record.offset().to_string(),
                        failure.stage.to_string(),
                        stage.version.to_string(),
                    );
                    let context = [
                        ("sluice.error.message", failure.message.as_str()),
                        ("sluice.error.kind", failure.kind.as_str()),
                        ("sluice.pipeline", self.spec.shared.name.as_str()),
                        ("sluice.source.topic", self.topic.as_str()),
                        ("sluice.source.partition", partition.as_str()),
                        ("sluice.source.offset", offset.as_str()),
                        ("sluice.transform.stage", stage_index.as_str()),
                        ("sluice.transform.module", stage.name.as_str()),
                        ("sluice.transform.version", version.as_str()),
                        ("sluice.transform.sha256", stage.module.sha256.as_str()),
                    ];
                    let headers = record
                        .headers()
                        .chain(context.iter().map(|(k, v)| (*k, Some(v.as_bytes()))));
                    send(
                        &self.spec.producer,
                        dead_letter,
                        record.key(),
                        record.value(),
                        headers,
                        record.timestamp(),
                        acks,
                    );
                    self.metrics().dead_lettered.fetch_add(1, Relaxed);
                }
                (None, OnError::Skip) => {
                    tracing::warn!(pipeline = %self.spec.shared.name, topic = %self.topic, partition = self.partition,
                        offset = record.offset(), stage = failure.stage, module = %stage.name, kind = %failure.kind,
                        error = %failure.message, "skipping failed record");
                    self.metrics().skipped.fetch_add(1, Relaxed);
                }
                (None, OnError::Stop) => {
                    return Err(format!(
                        "record {}/{}@{} failed in transform {} ({}): {}; the pipeline has no dead_letter and on_error = \"stop\"",
                        self.topic,
                        self.partition,
                        record.offset(),
                        failure.stage,
                        stage.name,
                        failure.message
                    ));
                }
            }
        }
        Ok(())
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
