//! One long-lived instance of a transform, rebuilt after a trap.

use super::batch::{self, InputBatch, OutputBatch, OutputRef};
use super::bindings::Transformer;
use super::columnar_bindings::exports::sluice::transform::columnar::Guest as Columnar;
use super::host::{HostState, MemoryLimitExceeded};
use super::state::{DueTimer, SharedTask, in_memory_task, lock};
use super::stateful_bindings::exports::sluice::transform::stateful::{
    FiredTimer, Guest as Stateful,
};
use super::{Engine, Module, budget_ticks};
use crate::tables::Tables;
use std::fmt;
use wasmtime::Store;

/// How a record failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The transform returned an error for it.
    Rejected,
    /// The transform panicked.
    Panic,
    /// The batch ran past its CPU budget.
    CpuBudget,
    /// The transform grew its memory past the cap.
    MemoryLimit,
    /// Another trap (stack overflow, out-of-bounds access, ...).
    Trap,
    /// The transform returned outputs that break the contract.
    Malformed,
    /// The record alone is larger than a batch may be (`batch_max_bytes`), so it was never
    /// given to the transform.
    TooLarge,
    /// A stateful transform rejected it as late: every window it belongs to had closed. The
    /// contract's convention: the error's message starts with `late:`.
    Late,
}

impl FailureKind {
    /// A short name for headers, metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Rejected => "rejected",
            FailureKind::Panic => "panic",
            FailureKind::CpuBudget => "cpu_budget",
            FailureKind::MemoryLimit => "memory_limit",
            FailureKind::Trap => "trap",
            FailureKind::Malformed => "malformed",
            FailureKind::TooLarge => "too_large",
            FailureKind::Late => "late",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A record that produced no outputs because it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Index of the record in the input batch.
    pub input: usize,
    /// How it failed.
    pub kind: FailureKind,
    /// What went wrong, for a person to read.
    pub message: String,
}

/// A guest trap, classified, with its message.
#[derive(Debug, Clone)]
struct Trap {
    kind: FailureKind,
    message: String,
}

/// Why an instance could not be created.
#[derive(Debug, thiserror::Error)]
pub enum InstantiateError {
    /// `init` refused the configuration with this message.
    #[error("the transform refused its configuration: {0}")]
    Init(String),
    /// A stateful transform's state could not be opened or restored.
    #[error("cannot open the transform's state: {0}")]
    State(String),
    /// Instantiation or `init` trapped.
    #[error("the transform failed while starting ({kind}): {message}")]
    Trap {
        /// How it failed.
        kind: FailureKind,
        /// What went wrong.
        message: String,
    },
}

/// The outcome of one batch: outputs, and the records that failed.
pub struct Processed {
    output: OutputBatch,
    failures: Vec<Failure>,
    /// Outputs from here on came from timers that fired after the batch: they belong to no
    /// record of it, so a failed record does not take them with it.
    timer_outputs: usize,
}

impl Processed {
    /// The outputs, in the order to write them; outputs of failed records are already removed.
    pub fn outputs(&self) -> impl Iterator<Item = OutputRef<'_>> {
        (0..self.output.len()).map(|i| OutputRef::new(&self.output, i))
    }

    /// Output `index`, in the order of [`Processed::outputs`].
    pub fn output(&self, index: usize) -> OutputRef<'_> {
        OutputRef::new(&self.output, index)
    }

    /// The records that failed, in input order.
    pub fn failures(&self) -> &[Failure] {
        &self.failures
    }

    /// Whether output `index` came from a timer rather than from a record of the batch.
    pub fn is_timer_output(&self, index: usize) -> bool {
        index >= self.timer_outputs
    }

    /// No outputs.
    pub fn empty() -> Self {
        Processed {
            output: OutputBatch::empty(),
            failures: Vec::new(),
            timer_outputs: 0,
        }
    }

    /// Adds `later`'s outputs after these, as derived from input `input`.
    pub fn append(&mut self, later: Processed, input: u32) {
        batch::append(&mut self.output, later.output, input);
    }

    /// The outputs as the next stage's input, their bytes handed over rather than copied:
    /// output `i` becomes a record at offset `offset_of(i)`, or is left out where that is
    /// `None`.
    pub fn into_input(
        self,
        topic: &str,
        partition: i32,
        offset_of: impl FnMut(usize) -> Option<i64>,
    ) -> InputBatch {
        batch::into_input(self.output, topic, partition, offset_of)
    }
}

/// An instance of a transform, initialised with its configuration and called with batches.
pub struct Instance {
    engine: Engine,
    module: Module,
    label: String,
    config: Vec<(String, String)>,
    tables: Tables,
    store: Store<HostState>,
    bindings: Transformer,
    /// The `columnar` export in the current instance, called instead of `transform.process`.
    columnar: Option<Columnar>,
    restarts: u64,
    /// A stateful transform's state: it outlives instances discarded after a trap.
    task: Option<SharedTask>,
    /// A stateful transform's `stateful` export in the current instance.
    stateful: Option<Stateful>,
    /// Says when replaying a trapped batch one record at a time should stop (a try whose time
    /// ran out or whose client left); the records not replayed fail.
    stop_replaying: Option<Box<dyn Fn() -> bool + Send + Sync>>,
}

/// Timers handed to a stateful transform per `on-timers` call.
const TIMERS_PER_CALL: usize = 1024;

impl Instance {
    pub(super) fn new(
        engine: Engine,
        module: Module,
        label: String,
        config: Vec<(String, String)>,
        tables: Tables,
        task: Option<SharedTask>,
    ) -> Result<Self, InstantiateError> {
        // A stateful transform without a task of its own (`sluice try`) keeps it in memory.
        let task = module
            .is_stateful()
            .then(|| task.unwrap_or_else(in_memory_task));
        let Started {
            store,
            bindings,
            columnar,
            stateful,
        } = start(&engine, &module, &label, &config, &tables, task.as_ref())?;
        Ok(Instance {
            engine,
            module,
            label,
            config,
            tables,
            store,
            bindings,
            columnar,
            restarts: 0,
            task,
            stateful,
            stop_replaying: None,
        })
    }

    /// The module this instance runs.
    pub fn module(&self) -> &Module {
        &self.module
    }

    /// How many times a trap made this instance start afresh.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// Runs the transform over `batch`.
    ///
    /// A record the transform rejects is a [`Failure`] and its neighbours are unaffected. A trap
    /// discards the instance's state: a fresh instance then runs the batch one record at a time,
    /// so that only the records that trap on their own fail. `Err` only when no fresh instance
    /// can be started, which leaves this one unusable.
    ///
    /// A stateful transform's timers that the batch made due fire after it: their outputs come
    /// last, as derived from the batch's last record.
    pub fn process(&mut self, batch: &InputBatch) -> Result<Processed, InstantiateError> {
        let inputs = batch.len();
        let mut processed = match self.call(batch) {
            Ok(output) => into_processed(output, inputs),
            Err(trap) => {
                self.restart()?;
                if inputs == 1 {
                    failed_batch(&trap, 1)
                } else {
                    self.isolate(batch, &trap)?
                }
            }
        };
        processed.timer_outputs = processed.output.len();
        if inputs > 0 {
            self.fire_timers(&mut processed.output, inputs as u32 - 1)?;
        }
        Ok(processed)
    }

    /// Bounds the work of a batch that traps: once `stop` says so, the records not yet
    /// replayed one at a time fail without running (each replay may take the CPU budget).
    pub fn stop_replaying_when(&mut self, stop: impl Fn() -> bool + Send + Sync + 'static) {
        self.stop_replaying = Some(Box::new(stop));
    }

    /// A stateful transform's state.
    pub fn task(&self) -> Option<&SharedTask> {
        self.task.as_ref()
    }

    /// The end of the input (`sluice try`): stream time moves to the end of time, so every
    /// timer fires, e.g. every window closes. Their outputs, all as derived from input 0.
    pub fn finish(&mut self) -> Result<Processed, InstantiateError> {
        self.advance(|_| i64::MAX)
    }

    /// An idle task (`idle_timeout_ms`): stream time moves on by `by` milliseconds, if the task
    /// has one, and the timers that makes due fire. Their outputs, all as derived from input 0.
    pub fn advance_idle(&mut self, by: i64) -> Result<Processed, InstantiateError> {
        self.advance(|now| now.saturating_add(by))
    }

    fn advance(&mut self, to: impl FnOnce(i64) -> i64) -> Result<Processed, InstantiateError> {
        let mut advanced = Processed::empty();
        if let Some(task) = &self.task {
            {
                let mut task = lock(task);
                if let Some(now) = task.stream_time() {
                    task.advance(to(now));
                    task.commit();
                }
            }
            self.fire_timers(&mut advanced.output, 0)?;
        }
        Ok(advanced)
    }

    /// Fires the timers due at the task's stream time, adding their outputs to `output` as
    /// derived from input `input`. A timer the transform rejects is logged and its outputs
    /// dropped; timers whose call traps are dropped, since they would trap again.
    fn fire_timers(
        &mut self,
        output: &mut OutputBatch,
        input: u32,
    ) -> Result<(), InstantiateError> {
        let Some(task) = self.task.clone() else {
            return Ok(());
        };
        // One round: a timer a handler sets again at or before stream time fires after the
        // next batch, not in an endless loop now.
        let mut last: Option<DueTimer> = None;
        loop {
            let due = lock(&task).take_due_timers(last.as_ref(), TIMERS_PER_CALL);
            let Some(newest) = due.last() else {
                return Ok(());
            };
            let previous = last.replace(newest.clone());
            let fired: Vec<FiredTimer> = due
                .into_iter()
                .map(|t| FiredTimer {
                    key: t.key,
                    at: t.at,
                })
                .collect();
            match self.call_on_timers(&fired) {
                Ok(out) => {
                    lock(&task).commit();
                    let handled = into_processed(batch::from_records(out), fired.len());
                    for failure in handled.failures() {
                        let timer = &fired[failure.input];
                        tracing::warn!(module = %self.label, event = "timer_failed", kind = %failure.kind,
                            key = %String::from_utf8_lossy(&timer.key), at = timer.at, error = %failure.message,
                            "a timer failed; its outputs are dropped");
                    }
                    batch::append(output, handled.output, input);
                }
                Err(trap) => {
                    lock(&task).rollback();
                    self.restart()?;
                    let mut task = lock(&task);
                    let dropped = task.take_due_timers(previous.as_ref(), fired.len());
                    task.commit();
                    tracing::error!(module = %self.label, event = "timers_dropped", kind = %trap.kind,
                        error = %trap.message, timers = dropped.len(),
                        "handling timers trapped; they are dropped");
                }
            }
        }
    }

    fn call_on_timers(
        &mut self,
        fired: &[FiredTimer],
    ) -> Result<super::bindings::sluice::transform::types::OutputBatch, Trap> {
        let stateful = self.stateful.as_ref().expect("a stateful transform");
        self.store
            .set_epoch_deadline(budget_ticks(self.engine.limits().cpu_budget));
        let result = stateful.call_on_timers(&mut self.store, fired);
        result.map_err(|e| classify(e, &self.store, &self.engine))
    }

    fn isolate(
        &mut self,
        batch: &InputBatch,
        first_trap: &Trap,
    ) -> Result<Processed, InstantiateError> {
        tracing::warn!(module = %self.label, kind = %first_trap.kind, error = %first_trap.message,
            records = batch.len(), "transform trapped; replaying the batch one record at a time");
        let mut merged = Processed {
            output: OutputBatch::empty(),
            failures: Vec::new(),
            timer_outputs: 0,
        };
        for index in 0..batch.len() {
            if self.stop_replaying.as_ref().is_some_and(|stop| stop()) {
                merged.failures.push(Failure {
                    input: index,
                    kind: FailureKind::CpuBudget,
                    message: "not run: the work allowed for this call ran out".into(),
                });
                continue;
            }
            match self.call(&batch::single(batch, index)) {
                Ok(output) => {
                    let one = into_processed(output, 1);
                    merged.failures.extend(
                        one.failures
                            .into_iter()
                            .map(|f| Failure { input: index, ..f }),
                    );
                    batch::append(&mut merged.output, one.output, index as u32);
                }
                Err(trap) => {
                    merged.failures.push(Failure {
                        input: index,
                        kind: trap.kind,
                        message: trap.message,
                    });
                    self.restart()?;
                }
            }
        }
        Ok(merged)
    }

    /// Calls `process`; a stateful transform's writes are kept if it returns (with the
    /// records' timestamps as event times, unless it reports its own) and dropped if it traps.
    fn call(&mut self, batch: &InputBatch) -> Result<OutputBatch, Trap> {
        self.store
            .set_epoch_deadline(budget_ticks(self.engine.limits().cpu_budget));
        let result = match &self.columnar {
            Some(columnar) => columnar.call_process(&mut self.store, batch),
            None => self
                .bindings
                .sluice_transform_transform()
                .call_process(&mut self.store, &batch::to_records(batch))
                .map(batch::from_records),
        };
        if let Some(task) = &self.task {
            let mut task = lock(task);
            if result.is_ok() {
                for i in 0..batch.len() {
                    if let Some(timestamp) = batch::InputRef::new(batch, i).timestamp() {
                        task.observe_timestamp(timestamp);
                    }
                }
                task.commit();
            } else {
                task.rollback();
            }
        }
        result.map_err(|e| classify(e, &self.store, &self.engine))
    }

    fn restart(&mut self) -> Result<(), InstantiateError> {
        let started = start(
            &self.engine,
            &self.module,
            &self.label,
            &self.config,
            &self.tables,
            self.task.as_ref(),
        )?;
        self.store = started.store;
        self.bindings = started.bindings;
        self.columnar = started.columnar;
        self.stateful = started.stateful;
        self.restarts += 1;
        Ok(())
    }
}

/// A fresh instance, its `init` done.
struct Started {
    store: Store<HostState>,
    bindings: Transformer,
    columnar: Option<Columnar>,
    stateful: Option<Stateful>,
}

/// Creates a store and instance and runs `init`, all under the instance's limits.
fn start(
    engine: &Engine,
    module: &Module,
    label: &str,
    config: &[(String, String)],
    tables: &Tables,
    task: Option<&SharedTask>,
) -> Result<Started, InstantiateError> {
    let limits = engine.limits();
    let state = HostState::new(
        label.to_string(),
        limits.memory_bytes,
        tables.clone(),
        task.cloned(),
    );
    let mut store = Store::new(engine.wasmtime(), state);
    store.limiter(|state| state);
    store.epoch_deadline_trap();
    store.set_epoch_deadline(budget_ticks(limits.cpu_budget));
    let trap = |e, store: &Store<HostState>| {
        let Trap { kind, message } = classify(e, store, engine);
        InstantiateError::Trap { kind, message }
    };
    let instance = match module.pre.instance_pre().instantiate(&mut store) {
        Ok(instance) => instance,
        Err(e) => return Err(trap(e, &store)),
    };
    let bindings = Transformer::new(&mut store, &instance).map_err(|e| trap(e, &store))?;
    let stateful = (module.stateful.as_ref())
        .map(|indices| indices.load(&mut store, &instance))
        .transpose()
        .map_err(|e| trap(e, &store))?;
    let columnar = (module.columnar.as_ref())
        .map(|indices| indices.load(&mut store, &instance))
        .transpose()
        .map_err(|e| trap(e, &store))?;
    match bindings
        .sluice_transform_transform()
        .call_init(&mut store, config)
    {
        Ok(Ok(())) => Ok(Started {
            store,
            bindings,
            columnar,
            stateful,
        }),
        Ok(Err(message)) => Err(InstantiateError::Init(message)),
        Err(e) => Err(trap(e, &store)),
    }
}

fn classify(error: wasmtime::Error, store: &Store<HostState>, engine: &Engine) -> Trap {
    if let Some(limit) = error.downcast_ref::<MemoryLimitExceeded>() {
        return Trap {
            kind: FailureKind::MemoryLimit,
            message: limit.to_string(),
        };
    }
    let stderr = store.data().stderr_tail();
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => Trap {
            kind: FailureKind::CpuBudget,
            message: format!(
                "CPU budget exceeded: the transform ran for more than {} ms on one call",
                engine.limits().cpu_budget.as_millis()
            ),
        },
        Some(wasmtime::Trap::UnreachableCodeReached) if !stderr.is_empty() => {
            // Rust guests abort with `unreachable` after printing the panic message.
            let message = stderr
                .lines()
                .filter(|l| !l.trim().is_empty())
                .collect::<Vec<_>>()
                .join(" | ");
            Trap {
                kind: FailureKind::Panic,
                message: format!("transform panicked: {message}"),
            }
        }
        Some(trap) => Trap {
            kind: FailureKind::Trap,
            message: format!("transform trapped: {trap}"),
        },
        None => Trap {
            kind: FailureKind::Trap,
            message: format!("transform failed: {error:#}"),
        },
    }
}

fn into_processed(mut output: OutputBatch, inputs: usize) -> Processed {
    if let Err(why) = batch::validate(&output, inputs) {
        let trap = Trap {
            kind: FailureKind::Malformed,
            message: format!("transform returned a malformed batch: {why}"),
        };
        return failed_batch(&trap, inputs);
    }
    let mut failures: Vec<Failure> = std::mem::take(&mut output.errors)
        .into_iter()
        .map(|e| Failure {
            input: e.input as usize,
            kind: if e.message.starts_with("late:") {
                FailureKind::Late
            } else {
                FailureKind::Rejected
            },
            message: e.message,
        })
        .collect();
    failures.sort_by_key(|f| f.input);
    failures.dedup_by_key(|f| f.input);
    if !failures.is_empty() {
        // A failed record's outputs are never written.
        let failed: std::collections::HashSet<u32> =
            failures.iter().map(|f| f.input as u32).collect();
        output.retain(|_, input| !failed.contains(&input));
    }
    let timer_outputs = output.len();
    Processed {
        output,
        failures,
        timer_outputs,
    }
}

fn failed_batch(trap: &Trap, inputs: usize) -> Processed {
    Processed {
        output: OutputBatch::empty(),
        timer_outputs: 0,
        failures: (0..inputs)
            .map(|input| Failure {
                input,
                kind: trap.kind,
                message: trap.message.clone(),
            })
            .collect(),
    }
}
