//! The pipelines this member runs, kept in step with their definitions: a change of a
//! pipeline's chain is swapped into it in place; a change of its settings (topics, batching,
//! guarantee, tables), a new pipeline, or a failed one defined again is stopped (drained and
//! committed) and started anew by one starter thread, in the order the changes came.

use crate::config::{Config, PipelineConfig};
use crate::pipeline::metrics::Status;
use crate::pipeline::{self, Pipeline, RunningPipeline};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What starting pipelines needs beside their definitions, known once `sluice run` has read its
/// configuration.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// Kafka properties, limits and shutdown timeout (its pipelines are applied separately).
    pub config: Config,
    /// Where stateful transforms keep their stores.
    pub state_dir: PathBuf,
    /// This member's stable id (see [`crate::cli::run::member_id`]).
    pub member: String,
}

/// One pipeline this member runs, or is about to.
pub struct Entry {
    /// What the API shows and deploys change.
    pub pipeline: Arc<Pipeline>,
    /// The settings it was started with; other settings start another entry.
    pub settings: PipelineConfig,
    stop: Arc<AtomicBool>,
    handle: Mutex<Option<RunningPipeline>>,
}

impl Entry {
    /// An entry for `pipeline`, not started.
    pub fn new(pipeline: Arc<Pipeline>, settings: PipelineConfig) -> Self {
        Entry {
            pipeline,
            settings,
            stop: Arc::new(AtomicBool::new(false)),
            handle: Mutex::new(None),
        }
    }

    /// Whether it has stopped for good: its threads ended, or it never started because of an
    /// error.
    pub fn is_done(&self) -> bool {
        match &*self.handle.lock().unwrap() {
            Some(handle) => handle.is_finished(),
            None => matches!(self.pipeline.metrics.status(), Status::Failed(_)),
        }
    }

    /// Starts it, unless it was told to stop before; an error is its status.
    pub fn start(&self, run: &RunSettings, engine: &crate::engine::Engine) {
        if self.stop.load(Relaxed) || self.pipeline.has_failed() {
            return;
        }
        let started = pipeline::start(
            &run.config,
            &self.settings,
            engine,
            &run.state_dir,
            &run.member,
            self.pipeline.clone(),
            self.stop.clone(),
        );
        match started {
            Ok(handle) => {
                tracing::info!(pipeline = %self.pipeline.name, "pipeline started");
                *self.handle.lock().unwrap() = Some(handle);
            }
            Err(error) => {
                let error = pipeline::error_chain(&error);
                tracing::error!(pipeline = %self.pipeline.name, %error, event = "pipeline_start_failed",
                    "the pipeline did not start; define it again (or fix what the error names) to retry");
                self.pipeline.fail(error);
            }
        }
    }

    /// Asks it to drain, commit and stop.
    pub fn stop(&self) {
        self.stop.store(true, Relaxed);
    }

    /// Stops it and waits, at most `timeout`, until it has; logs a drain that takes longer.
    pub fn stop_and_wait(&self, timeout: Duration) {
        self.stop();
        let deadline = Instant::now() + timeout;
        while !self.handle_finished() {
            if Instant::now() > deadline {
                tracing::error!(pipeline = %self.pipeline.name, event = "pipeline_stop_timed_out",
                    "the pipeline did not stop in time; starting what replaces it anyway");
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.join();
    }

    /// Whether its threads have ended, or never started.
    pub fn handle_finished(&self) -> bool {
        (self.handle.lock().unwrap().as_ref()).is_none_or(RunningPipeline::is_finished)
    }

    /// Waits for its threads to end.
    pub fn join(&self) {
        if let Some(handle) = self.handle.lock().unwrap().take() {
            handle.join();
        }
    }
}

/// A change for the starter thread.
pub enum Job {
    /// Stop `old` (if any), then start `new`.
    Replace {
        /// What ran before.
        old: Option<Arc<Entry>>,
        /// What runs next.
        new: Arc<Entry>,
    },
    /// Stop a deleted pipeline.
    Retire(Arc<Entry>),
}

/// Starts the thread that carries out `jobs` in order.
pub fn start_thread(
    jobs: mpsc::Receiver<Job>,
    run: RunSettings,
    engine: crate::engine::Engine,
) -> std::io::Result<()> {
    let grace = Duration::from_millis(run.config.shutdown_timeout_ms) + Duration::from_secs(5);
    std::thread::Builder::new()
        .name("sluice-pipelines".into())
        .spawn(move || {
            for job in jobs {
                match job {
                    Job::Replace { old, new } => {
                        if let Some(old) = old {
                            old.stop_and_wait(grace);
                            tracing::info!(pipeline = %old.pipeline.name, "stopped to start it with its new settings");
                        }
                        new.start(&run, &engine);
                    }
                    Job::Retire(entry) => {
                        entry.stop_and_wait(grace);
                        tracing::info!(pipeline = %entry.pipeline.name, "pipeline deleted and stopped");
                    }
                }
            }
        })?;
    Ok(())
}
