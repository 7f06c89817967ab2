//! Materialises a lookup table from its topic: reads every partition from the earliest offset,
//! reports ready once it has caught up with the end offsets it saw at start, then keeps the table
//! current until stopped.

use crate::config::{KafkaConfig, TableConfig};
use crate::kafka::TopicReader;
use crate::tables::Table;
use rdkafka::Offset;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Why a table could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TableLoadError {
    /// Its topic cannot be read.
    #[error("table `{table}`")]
    Reader {
        /// The table.
        table: String,
        /// Why.
        #[source]
        source: Box<crate::kafka::ReadError>,
    },
    /// Loading failed on the way (the topic vanished, the table outgrew `max_mb`).
    #[error("{0}")]
    Failed(String),
    /// It did not catch up with its topic in time.
    #[error("table `{table}`: not loaded within {seconds} s")]
    Timeout {
        /// The table.
        table: String,
        /// How long it was given.
        seconds: u64,
    },
    /// Its thread could not be started.
    #[error("cannot start a thread")]
    Thread(#[from] std::io::Error),
}

/// A running loader.
pub struct TableLoader {
    /// The table it fills.
    pub table: Arc<Table>,
    ready: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TableLoader {
    /// Starts loading `config`'s topic into `table`, which is empty.
    pub fn start(
        kafka: &KafkaConfig,
        config: &TableConfig,
        pipeline: &str,
        table: Arc<Table>,
    ) -> Result<TableLoader, TableLoadError> {
        let group = format!("sluice-{pipeline}-table-{}", config.name);
        let reader = TopicReader::new(
            kafka,
            &group,
            &group,
            &config.topic,
            Duration::from_secs(30),
        )
        .map_err(|source| TableLoadError::Reader {
            table: config.name.clone(),
            source: Box::new(source),
        })?;
        let (ready, stop) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let run = Run {
            reader,
            table: table.clone(),
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
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), TableLoadError> {
        let deadline = Instant::now() + timeout;
        while !self.ready.load(Relaxed) {
            if let Some(error) = self.table.failure() {
                return Err(TableLoadError::Failed(error));
            }
            if Instant::now() > deadline {
                return Err(TableLoadError::Timeout {
                    table: self.table.name.clone(),
                    seconds: timeout.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(5));
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
    reader: TopicReader,
    table: Arc<Table>,
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
            let mut at_end = false;
            match self.reader.consumer().poll(Duration::from_millis(100)) {
                Some(Ok(message)) => {
                    // Records without a key cannot be looked up.
                    if let Some(key) = message.key()
                        && self.table.apply(key, message.payload()).is_err()
                    {
                        tracing::error!(table = %name, error = ?self.table.failure(), "table stopped");
                        return;
                    }
                }
                // The end of a partition is no error: the table keeps following it.
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => at_end = true,
                Some(Err(error)) => tracing::warn!(table = %name, %error, "table consumer error"),
                None => {}
            }
            // Checked at once when a partition ends: the pipeline waits for this to start.
            if !self.ready.load(Relaxed)
                && (at_end || last_check.elapsed() >= Duration::from_millis(50))
            {
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
        let watermarks = self.reader.watermarks().map_err(|e| e.to_string())?;
        self.reader
            .assign(watermarks.iter().map(|w| (w.partition, Offset::Beginning)))
            .map_err(|e| e.to_string())?;
        Ok(watermarks
            .iter()
            .filter(|w| w.high > w.low)
            .map(|w| (w.partition, w.high))
            .collect())
    }

    /// Whether every partition's position has reached the end offset seen at start.
    fn caught_up(&self, ends: &[(i32, i64)]) -> bool {
        let Ok(positions) = self.reader.consumer().position() else {
            return false;
        };
        ends.iter().all(|(p, end)| {
            match positions
                .find_partition(self.reader.topic(), *p)
                .map(|e| e.offset())
            {
                Some(Offset::Offset(at)) => at >= *end,
                _ => false,
            }
        })
    }
}
