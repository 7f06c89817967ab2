//! Materialises a lookup table from its topic: reads every partition from the earliest offset,
//! reports ready once it has caught up with the end offsets it saw at start, then keeps the table
//! current until stopped.

use crate::config::{KafkaConfig, TableConfig};
use crate::tables::Table;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// A running loader.
pub struct TableLoader {
    /// The table it fills.
    pub table: Arc<Table>,
    ready: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TableLoader {
    /// Starts loading `config`'s topic into a fresh table.
    pub fn start(
        kafka: &KafkaConfig,
        config: &TableConfig,
        pipeline: &str,
    ) -> anyhow::Result<TableLoader> {
        let table = Arc::new(Table::new(
            &config.name,
            config.max_mb as usize * 1024 * 1024,
        ));
        let mut client = ClientConfig::new();
        for (k, v) in kafka.common.iter().chain(&kafka.consumer) {
            client.set(k, &v.0);
        }
        // No group: the loader assigns every partition itself and commits nothing.
        client
            .set(
                "group.id",
                format!("sluice-{pipeline}-table-{}", config.name),
            )
            .set("enable.auto.commit", "false");
        let consumer: BaseConsumer = client
            .create()
            .map_err(|e| anyhow::anyhow!("table `{}`: Kafka client: {e}", config.name))?;
        let (ready, stop) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let run = Run {
            consumer,
            table: table.clone(),
            topic: config.topic.clone(),
            ready: ready.clone(),
            stop: stop.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("sluice-table-{}", config.name))
            .spawn(move || run.run())?;
        Ok(TableLoader {
            table,
            ready,
            stop,
            thread: Some(thread),
        })
    }

    /// Waits until the table has caught up with its topic, or failed, or `timeout` passed.
    pub fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while !self.ready.load(Relaxed) {
            if let Some(error) = self.table.failure() {
                anyhow::bail!(error);
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "table `{}`: not loaded within {} s",
                    self.table.name,
                    timeout.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for TableLoader {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Run {
    consumer: BaseConsumer,
    table: Arc<Table>,
    topic: String,
    ready: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Run {
    fn run(self) {
        let name = self.table.name.clone();
        let ends = match self.assign() {
            Ok(ends) => ends,
            Err(error) => return self.table.fail(format!("table `{name}`: {error}")),
        };
        let mut last_check = Instant::now() - Duration::from_secs(1);
        while !self.stop.load(Relaxed) {
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => {
                    // Records without a key cannot be looked up.
                    if let Some(key) = message.key()
                        && self.table.apply(key, message.payload()).is_err()
                    {
                        tracing::error!(table = %name, error = ?self.table.failure(), "table stopped");
                        return;
                    }
                }
                Some(Err(error)) => tracing::warn!(table = %name, %error, "table consumer error"),
                None => {}
            }
            if !self.ready.load(Relaxed) && last_check.elapsed() >= Duration::from_millis(50) {
                last_check = Instant::now();
                if self.caught_up(&ends) {
                    tracing::info!(table = %name, entries = self.table.len(), bytes = self.table.bytes(), "table loaded");
                    self.ready.store(true, Relaxed);
                }
            }
        }
    }

    /// Assigns every partition from the beginning; returns each one's end offset now.
    fn assign(&self) -> Result<Vec<(i32, i64)>, String> {
        let metadata = self
            .consumer
            .fetch_metadata(Some(&self.topic), Duration::from_secs(30))
            .map_err(|e| format!("cannot read metadata of `{}`: {e}", self.topic))?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == self.topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(format!("topic `{}` does not exist", self.topic));
        }
        let mut list = TopicPartitionList::new();
        let mut ends = Vec::new();
        for p in partitions {
            list.add_partition_offset(&self.topic, p, Offset::Beginning)
                .map_err(|e| e.to_string())?;
            let (low, high) = self
                .consumer
                .fetch_watermarks(&self.topic, p, Duration::from_secs(30))
                .map_err(|e| format!("cannot read the end of `{}` [{p}]: {e}", self.topic))?;
            if high > low {
                ends.push((p, high));
            }
        }
        self.consumer.assign(&list).map_err(|e| e.to_string())?;
        Ok(ends)
    }

    /// Whether every partition's position has reached the end offset seen at start.
    fn caught_up(&self, ends: &[(i32, i64)]) -> bool {
        let Ok(positions) = self.consumer.position() else {
            return false;
        };
        ends.iter().all(|(p, end)| {
            match positions
                .find_partition(&self.topic, *p)
                .map(|e| e.offset())
            {
                Some(Offset::Offset(at)) => at >= *end,
                _ => false,
            }
        })
    }
}
