//! One long-lived instance of a transform, rebuilt after a trap.

use super::batch::{self, OutputRef};
use super::bindings::Transformer;
use super::bindings::sluice::transform::types::{InputBatch, OutputBatch};
use super::host::{HostState, MemoryLimitExceeded};
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
}

impl Processed {
    /// The outputs, in the order to write them; outputs of failed records are already removed.
    pub fn outputs(&self) -> impl Iterator<Item = OutputRef<'_>> {
        (0..self.output.records.len()).map(|i| OutputRef::new(&self.output, i))
    }

    /// Output `index`, in the order of [`Processed::outputs`].
    pub fn output(&self, index: usize) -> OutputRef<'_> {
        OutputRef::new(&self.output, index)
    }

    /// The records that failed, in input order.
    pub fn failures(&self) -> &[Failure] {
        &self.failures
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
    restarts: u64,
}

impl Instance {
    pub(super) fn new(
        engine: Engine,
        module: Module,
        label: String,
        config: Vec<(String, String)>,
        tables: Tables,
    ) -> Result<Self, InstantiateError> {
        let (store, bindings) = start(&engine, &module, &label, &config, &tables)?;
        Ok(Instance {
            engine,
            module,
            label,
            config,
            tables,
            store,
            bindings,
            restarts: 0,
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
    pub fn process(&mut self, batch: &InputBatch) -> Result<Processed, InstantiateError> {
        let inputs = batch.records.len();
        match self.call(batch) {
            Ok(output) => Ok(into_processed(output, inputs)),
            Err(trap) => {
                self.restart()?;
                if inputs == 1 {
                    return Ok(failed_batch(&trap, 1));
                }
                self.isolate(batch, &trap)
            }
        }
    }

    fn isolate(
        &mut self,
        batch: &InputBatch,
        first_trap: &Trap,
    ) -> Result<Processed, InstantiateError> {
        tracing::warn!(module = %self.label, kind = %first_trap.kind, error = %first_trap.message,
            records = batch.records.len(), "transform trapped; replaying the batch one record at a time");
        let mut merged = Processed {
            output: OutputBatch {
                data: Vec::new(),
                headers: Vec::new(),
                records: Vec::new(),
                errors: Vec::new(),
            },
            failures: Vec::new(),
        };
        for index in 0..batch.records.len() {
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

    fn call(&mut self, batch: &InputBatch) -> Result<OutputBatch, Trap> {
        self.store
            .set_epoch_deadline(budget_ticks(self.engine.limits().cpu_budget));
        let result = self
            .bindings
            .sluice_transform_transform()
            .call_process(&mut self.store, batch);
        result.map_err(|e| classify(e, &self.store, &self.engine))
    }

    fn restart(&mut self) -> Result<(), InstantiateError> {
        let (store, bindings) = start(
            &self.engine,
            &self.module,
            &self.label,
            &self.config,
            &self.tables,
        )?;
        self.store = store;
        self.bindings = bindings;
        self.restarts += 1;
        Ok(())
    }
}

/// Creates a store and instance and runs `init`, all under the instance's limits.
fn start(
    engine: &Engine,
    module: &Module,
    label: &str,
    config: &[(String, String)],
    tables: &Tables,
) -> Result<(Store<HostState>, Transformer), InstantiateError> {
    let limits = engine.limits();
    let state = HostState::new(label.to_string(), limits.memory_bytes, tables.clone());
    let mut store = Store::new(engine.wasmtime(), state);
    store.limiter(|state| state);
    store.epoch_deadline_trap();
    store.set_epoch_deadline(budget_ticks(limits.cpu_budget));
    let trap = |e, store: &Store<HostState>| {
        let Trap { kind, message } = classify(e, store, engine);
        InstantiateError::Trap { kind, message }
    };
    let bindings = match module.pre.instantiate(&mut store) {
        Ok(bindings) => bindings,
        Err(e) => return Err(trap(e, &store)),
    };
    match bindings
        .sluice_transform_transform()
        .call_init(&mut store, config)
    {
        Ok(Ok(())) => Ok((store, bindings)),
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
            kind: FailureKind::Rejected,
            message: e.message,
        })
        .collect();
    failures.sort_by_key(|f| f.input);
    failures.dedup_by_key(|f| f.input);
    if !failures.is_empty() {
        // A failed record's outputs are never written.
        let failed: std::collections::HashSet<u32> =
            failures.iter().map(|f| f.input as u32).collect();
        output.records.retain(|r| !failed.contains(&r.input));
    }
    Processed { output, failures }
}

fn failed_batch(trap: &Trap, inputs: usize) -> Processed {
    Processed {
        output: OutputBatch {
            data: Vec::new(),
            headers: Vec::new(),
            records: Vec::new(),
            errors: Vec::new(),
        },
        failures: (0..inputs)
            .map(|input| Failure {
                input,
                kind: trap.kind,
                message: trap.message.clone(),
            })
            .collect(),
    }
}
