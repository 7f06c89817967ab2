//! Exactly-once: the committer, a thread per pipeline that commits the sink's slots (see
//! [`Sink`](super::sink::Sink)) off the poll thread, so that neither polling nor the workers
//! wait for a commit. Commits run one at a time, in the order the source asks for them, which
//! is the order the slots were switched in: a partition's offsets are committed in order.

use super::sink::TransactionError;
use super::worker::{Progress, WorkerShared};
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};

/// A partition whose offsets a commit may carry.
pub struct PartitionProgress {
    /// The partition's topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// What its worker has handed to each slot.
    pub progress: Arc<Progress>,
    /// The offset last committed for it (-1 for none since it was assigned).
    pub committed: i64,
}

/// Commit `slot`'s open transaction with the offsets its batches cover.
struct Request {
    slot: usize,
    /// The consumer group's metadata, for KIP-447 fencing; `None` if the consumer has none.
    group: Option<ConsumerGroupMetadata>,
    partitions: Vec<PartitionProgress>,
}

/// What a commit did: the offsets it committed (none when no partition had moved on, in
/// which case nothing was committed), or why it failed.
pub type Committed = Result<Vec<(String, i32, i64)>, TransactionError>;

/// The source's handle on the committer thread.
pub struct Committer {
    requests: Option<SyncSender<Request>>,
    replies: Receiver<Committed>,
    /// The slot whose commit was asked for and whose outcome was not yet taken.
    in_flight: Option<usize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Committer {
    /// Starts the committer of `workers`' sink.
    pub fn start(workers: Arc<WorkerShared>) -> std::io::Result<Committer> {
        let (requests, incoming) = std::sync::mpsc::sync_channel::<Request>(1);
        let (reply, replies) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name(format!("sluice-commit-{}", workers.pipeline.name))
            .spawn(move || {
                for request in incoming {
                    if reply.send(commit(&workers, request)).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Committer {
            requests: Some(requests),
            replies,
            in_flight: None,
            thread: Some(thread),
        })
    }

    /// Whether a commit is under way.
    pub fn is_busy(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Asks for `slot` to be committed, with the offsets of `partitions`; one commit at a time.
    pub fn commit(
        &mut self,
        slot: usize,
        group: Option<ConsumerGroupMetadata>,
        partitions: Vec<PartitionProgress>,
    ) {
        assert!(self.in_flight.is_none(), "one commit at a time");
        let request = Request {
            slot,
            group,
            partitions,
        };
        // A committer that is gone shows as a failed commit when its outcome is taken.
        if let Some(requests) = &self.requests {
            let _ = requests.send(request);
        }
        self.in_flight = Some(slot);
    }

    /// The slot and outcome of the commit under way, if it has finished.
    pub fn finished(&mut self) -> Option<(usize, Committed)> {
        let slot = self.in_flight?;
        let committed = match self.replies.try_recv() {
            Ok(committed) => committed,
            Err(TryRecvError::Empty) => return None,
            Err(TryRecvError::Disconnected) => Err(gone()),
        };
        self.in_flight = None;
        Some((slot, committed))
    }

    /// Waits for the commit under way, if any; its slot and outcome.
    pub fn wait(&mut self) -> Option<(usize, Committed)> {
        let slot = self.in_flight.take()?;
        Some((slot, self.replies.recv().unwrap_or_else(|_| Err(gone()))))
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.requests.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The committer thread is gone (it panicked): its slot's transaction is aborted.
fn gone() -> TransactionError {
    TransactionError::Abortable(KafkaError::Canceled)
}

/// Commits the request's slot: waits for the batches being handed over to it, then commits
/// its transaction with the offset after each partition's last batch in it.
fn commit(workers: &WorkerShared, request: Request) -> Committed {
    let mut transaction = workers.sink.transaction(request.slot);
    let unanchored = transaction.take_unanchored();
    let committed = covered(request.slot, request.partitions);
    if committed.is_empty() {
        if unanchored {
            transaction.commit(None)?;
        }
        return Ok(committed);
    }
    let Some(group) = request.group else {
        return Err(TransactionError::Abortable(KafkaError::Subscription(
            "no consumer group metadata".into(),
        )));
    };
    let mut offsets = TopicPartitionList::new();
    for (topic, partition, next) in &committed {
        let _ = offsets.add_partition_offset(topic, *partition, Offset::Offset(*next));
    }
    transaction.commit(Some((&offsets, &group)))?;
    Ok(committed)
}

/// The offsets `slot`'s open transaction covers: for each partition with a batch in it since
/// the last commit, the offset after its last one. Older values in the slot are from
/// transactions committed before.
fn covered(slot: usize, partitions: Vec<PartitionProgress>) -> Vec<(String, i32, i64)> {
    partitions
        .into_iter()
        .filter_map(|p| {
            let produced = p.progress.produced_in(slot);
            (produced > p.committed).then_some((p.topic, p.partition, produced))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(partition: i32, produced: [i64; 2], committed: i64) -> PartitionProgress {
        let progress = Progress::new();
        progress.set_produced(0, produced[0]);
        progress.set_produced(1, produced[1]);
        PartitionProgress {
            topic: "in".into(),
            partition,
            progress,
            committed,
        }
    }

    #[test]
    fn a_slot_commits_only_the_partitions_it_moved_on() {
        let partitions = || {
            vec![
                // Batches in both slots: slot 0 has up to 40, slot 1 took the later ones.
                partition(0, [40, 55], 30),
                // Slot 0's value is from its previous, committed transaction.
                partition(1, [10, 25], 20),
                // Nothing since the last commit.
                partition(2, [7, 7], 7),
                // New since its assignment; nothing committed yet.
                partition(3, [-1, 3], -1),
            ]
        };
        assert_eq!(covered(0, partitions()), vec![("in".into(), 0, 40)]);
        assert_eq!(
            covered(1, partitions()),
            vec![
                ("in".into(), 0, 55),
                ("in".into(), 1, 25),
                ("in".into(), 3, 3)
            ]
        );
    }
}
