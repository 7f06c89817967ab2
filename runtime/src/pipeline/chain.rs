//! A chain of transforms: each stage's outputs are the next stage's inputs.
//!
//! The chain remembers which original record every output derives from, so that offsets are
//! committed and failures dead-lettered per original record. A record fails as a whole: if any
//! stage fails it, or one of its outputs, none of its outputs is written.

use crate::engine::{
    Engine, FailureKind, InputBatch, InputBatchBuilder, InputRef, Instance, InstantiateError,
    Module, OutputRef, Processed,
};
use crate::tables::Tables;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// What a pipeline slot runs: a loaded module and its configuration.
#[derive(Debug, Clone)]
pub struct StageSpec {
    /// The module's name in the module store.
    pub name: String,
    /// Its version under that name (1, 2, ...); 0 for a module loaded straight from a file.
    pub version: u32,
    /// The compiled module.
    pub module: Module,
    /// Configuration for its `init`.
    pub config: Vec<(String, String)>,
}

/// The stages of a chain, in order.
pub type Stages = Arc<Vec<Arc<StageSpec>>>;

/// A pipeline's chain as deployed. A deploy replaces it whole and bumps the generation; each
/// partition worker notices at its next batch boundary and switches (see [`Chain::update`]).
#[derive(Debug)]
pub struct Deployed {
    generation: AtomicU64,
    stages: Mutex<Stages>,
}

impl Deployed {
    /// The first generation: `stages`.
    pub fn new(stages: Vec<Arc<StageSpec>>) -> Self {
        Deployed {
            generation: AtomicU64::new(1),
            stages: Mutex::new(Arc::new(stages)),
        }
    }

    /// The current generation, cheap enough to check before every batch.
    pub fn generation(&self) -> u64 {
        self.generation.load(Relaxed)
    }

    /// The current stages and their generation.
    pub fn current(&self) -> (u64, Stages) {
        let stages = self.stages.lock().unwrap();
        (self.generation(), stages.clone())
    }

    /// Deploys `stages`.
    pub fn replace(&self, stages: Vec<Arc<StageSpec>>) {
        let mut current = self.stages.lock().unwrap();
        *current = Arc::new(stages);
        self.generation.fetch_add(1, Relaxed);
    }
}

/// A record that failed somewhere in the chain.
#[derive(Debug, Clone)]
pub struct ChainFailure {
    /// Index of the original record in the input batch.
    pub input: usize,
    /// The stage (0-based) that failed it.
    pub stage: usize,
    /// How it failed.
    pub kind: FailureKind,
    /// What went wrong.
    pub message: String,
}

/// The outcome of a batch through the whole chain.
pub struct ChainResult {
    processed: Processed,
    /// Per output of `processed`: the original record it derives from.
    origin: Vec<u32>,
    /// Per output of `processed`: index of its topic in the pipeline's outputs.
    route: Vec<u16>,
    /// Per output of `processed`: false if its original record failed.
    keep: Vec<bool>,
    /// Failed original records, in input order, one each.
    pub failures: Vec<ChainFailure>,
}

impl ChainResult {
    /// The outputs to write, with their original record and output topic index.
    pub fn outputs(&self) -> impl Iterator<Item = (usize, usize, OutputRef<'_>)> {
        self.processed
            .outputs()
            .enumerate()
            .filter(|(i, _)| self.keep[*i])
            .map(|(i, o)| (self.origin[i] as usize, self.route[i] as usize, o))
    }
}

/// One instance of every stage, owned by a partition worker.
pub struct Chain {
    stages: Vec<(Arc<StageSpec>, Instance)>,
    /// The generation of [`Deployed`] these stages are.
    generation: u64,
    outputs: Arc<Vec<String>>,
    scratch: InputBatchBuilder,
}

impl Chain {
    /// Instantiates every stage of what `deployed` holds, granting each the pipeline's `tables`.
    pub fn new(
        engine: &Engine,
        deployed: &Deployed,
        outputs: Arc<Vec<String>>,
        tables: &Tables,
    ) -> Result<Self, InstantiateError> {
        let (generation, specs) = deployed.current();
        let stages = specs
            .iter()
            .map(|spec| {
                Ok((
                    spec.clone(),
                    engine.instantiate(&spec.module, &spec.name, &spec.config, tables)?,
                ))
            })
            .collect::<Result<_, InstantiateError>>()?;
        Ok(Chain {
            stages,
            generation,
            outputs,
            scratch: InputBatchBuilder::new("", 0),
        })
    }

    /// Switches to what `deployed` holds if a deploy happened since; returns whether it did.
    /// Only changed slots get new instances, each initialised before the old one is dropped; if
    /// one cannot start, the chain keeps running what it ran and the error is returned (once per
    /// deploy, not per batch).
    pub fn update(
        &mut self,
        engine: &Engine,
        deployed: &Deployed,
        tables: &Tables,
    ) -> Result<bool, InstantiateError> {
        if deployed.generation() == self.generation {
            return Ok(false);
        }
        let (generation, specs) = deployed.current();
        self.generation = generation;
        let mut fresh = Vec::with_capacity(specs.len());
        for (index, spec) in specs.iter().enumerate() {
            match self.stages.get(index) {
                Some((running, _)) if Arc::ptr_eq(running, spec) => fresh.push(None),
                _ => fresh.push(Some(engine.instantiate(
                    &spec.module,
                    &spec.name,
                    &spec.config,
                    tables,
                )?)),
            }
        }
        let mut old: Vec<_> = std::mem::take(&mut self.stages)
            .into_iter()
            .map(Some)
            .collect();
        self.stages = (specs.iter().zip(fresh).enumerate())
            .map(|(index, (spec, new))| {
                (
                    spec.clone(),
                    new.unwrap_or_else(|| old[index].take().expect("kept slot").1),
                )
            })
            .collect();
        Ok(true)
    }

    /// How many times a trap made one of its instances start afresh.
    pub fn restarts(&self) -> u64 {
        self.stages
            .iter()
            .map(|(_, instance)| instance.restarts())
            .sum()
    }

    /// The stage at `index`.
    pub fn stage(&self, index: usize) -> &StageSpec {
        &self.stages[index].0
    }

    /// Runs `batch` through every stage.
    pub fn run(&mut self, batch: &InputBatch) -> Result<ChainResult, InstantiateError> {
        let inputs = batch.records.len();
        let mut failures = Failures {
            failed: vec![false; inputs],
            list: Vec::new(),
        };
        // Per record of the current stage's input: its original record and route.
        let mut origin: Vec<u32> = (0..inputs as u32).collect();
        let mut route: Vec<u16> = vec![0; inputs];
        let mut processed = Processed::passthrough(batch);
        let stage_count = self.stages.len();
        for s in 0..stage_count {
            let input = if s == 0 { batch } else { self.scratch.batch() };
            processed = self.stages[s].1.process(input)?;
            for f in processed.failures() {
                failures.add(origin[f.input] as usize, s, f.kind, f.message.clone());
            }
            let (mut next_origin, mut next_route) = (
                Vec::with_capacity(origin.len()),
                Vec::with_capacity(origin.len()),
            );
            for o in processed.outputs() {
                let from = origin[o.input()];
                let to = match o.topic() {
                    None => route[o.input()],
                    Some(topic) => match self.outputs.iter().position(|t| t.as_bytes() == topic) {
                        Some(i) => i as u16,
                        None => {
                            let message = format!(
                                "routed an output to `{}`, which is not one of the pipeline's outputs ({})",
                                String::from_utf8_lossy(topic),
                                self.outputs.join(", ")
                            );
                            failures.add(from as usize, s, FailureKind::Rejected, message);
                            0
                        }
                    },
                };
                next_origin.push(from);
                next_route.push(to);
            }
            origin = next_origin;
            route = next_route;
            if s + 1 < stage_count {
                // The next stage sees the outputs of records that have not failed, each with the
                // offset of the record it derives from.
                self.scratch.reset(&batch.topic, batch.partition);
                let (mut kept_origin, mut kept_route) = (Vec::new(), Vec::new());
                for (i, o) in processed.outputs().enumerate() {
                    if failures.failed[origin[i] as usize] {
                        continue;
                    }
                    let offset = InputRef::new(batch, origin[i] as usize).offset();
                    self.scratch
                        .push(offset, o.timestamp(), o.key(), o.value(), o.headers());
                    kept_origin.push(origin[i]);
                    kept_route.push(route[i]);
                }
                origin = kept_origin;
                route = kept_route;
            }
        }
        let keep = origin
            .iter()
            .map(|&o| !failures.failed[o as usize])
            .collect();
        let mut failures = failures.list;
        failures.sort_by_key(|f| f.input);
        Ok(ChainResult {
            processed,
            origin,
            route,
            keep,
            failures,
        })
    }
}

/// The first failure of each original record.
struct Failures {
    failed: Vec<bool>,
    list: Vec<ChainFailure>,
}

impl Failures {
    fn add(&mut self, input: usize, stage: usize, kind: FailureKind, message: String) {
        if !self.failed[input] {
            self.failed[input] = true;
            self.list.push(ChainFailure {
                input,
                stage,
                kind,
                message,
            });
        }
    }
}
