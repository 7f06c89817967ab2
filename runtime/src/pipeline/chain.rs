//! A chain of transforms: each stage's outputs are the next stage's inputs.
//!
//! The chain remembers which original record every output derives from, so that offsets are
//! committed and failures dead-lettered per original record. A record fails as a whole: if any
//! stage fails it, or one of its outputs, none of its outputs is written.

use crate::engine::state::{Changes, SharedTask, lock};
use crate::engine::{
    Engine, FailureKind, InputBatch, InputBatchBuilder, Instance, InstantiateError, Module,
    OutputRef, Processed,
};
use crate::tables::Tables;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, LazyLock, Mutex};

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
pub struct ChainResult<'a> {
    input: &'a InputBatch,
    /// The last stage's outputs; `None` for an empty chain, which writes its input as it is.
    last: Option<Processed>,
    /// Per output: the original record it derives from.
    origin: Vec<u32>,
    /// Per output: index of its topic in the pipeline's outputs.
    route: Vec<u16>,
    /// Per output: false if its original record failed (outputs of timers are always kept).
    keep: Vec<bool>,
    /// Failed original records, in input order, one each.
    pub failures: Vec<ChainFailure>,
}

impl ChainResult<'_> {
    /// The outputs to write, with their original record and output topic index.
    pub fn outputs(&self) -> impl Iterator<Item = (usize, usize, OutputRef<'_>)> {
        let count = self.origin.len();
        (0..count).filter(|&i| self.keep[i]).map(|i| {
            let output = match &self.last {
                Some(processed) => processed.output(i),
                None => OutputRef::passthrough(self.input, i),
            };
            (self.origin[i] as usize, self.route[i] as usize, output)
        })
    }
}

/// Gives a stateful slot (by index) its task's state: opened, and restored from its changelog.
pub type OpenTask<'a> = &'a mut dyn FnMut(usize) -> Result<SharedTask, InstantiateError>;

/// One instance of every stage, owned by a partition worker.
pub struct Chain {
    stages: Vec<(Arc<StageSpec>, Instance)>,
    /// The generation of [`Deployed`] these stages are.
    generation: u64,
    outputs: Arc<Vec<String>>,
}

impl Chain {
    /// Instantiates every stage of what `deployed` holds, granting each the pipeline's `tables`
    /// and each stateful one the state `open_task` gives its slot.
    pub fn new(
        engine: &Engine,
        deployed: &Deployed,
        outputs: Arc<Vec<String>>,
        tables: &Tables,
        open_task: OpenTask<'_>,
    ) -> Result<Self, InstantiateError> {
        let (generation, specs) = deployed.current();
        let stages = (specs.iter().enumerate())
            .map(|(slot, spec)| {
                let task = spec
                    .module
                    .is_stateful()
                    .then(|| open_task(slot))
                    .transpose()?;
                Ok((spec.clone(), instantiate(engine, spec, tables, task)?))
            })
            .collect::<Result<_, InstantiateError>>()?;
        Ok(Chain {
            stages,
            generation,
            outputs,
        })
    }

    /// Switches to what `deployed` holds if a deploy happened since; returns whether it did.
    /// Only changed slots get new instances, each initialised before the old one is dropped; if
    /// one cannot start, the chain keeps running what it ran and the error is returned (once per
    /// deploy, not per batch). A stateful slot keeps its state across versions.
    pub fn update(
        &mut self,
        engine: &Engine,
        deployed: &Deployed,
        tables: &Tables,
        open_task: OpenTask<'_>,
    ) -> Result<bool, InstantiateError> {
        if deployed.generation() == self.generation {
            return Ok(false);
        }
        let (generation, specs) = deployed.current();
        self.generation = generation;
        let mut fresh = Vec::with_capacity(specs.len());
        for (slot, spec) in specs.iter().enumerate() {
            let running = self.stages.get(slot);
            if running.is_some_and(|(running, _)| Arc::ptr_eq(running, spec)) {
                fresh.push(None);
                continue;
            }
            let task = match running.and_then(|(_, instance)| instance.task()) {
                _ if !spec.module.is_stateful() => None,
                Some(task) => Some(task.clone()),
                None => Some(open_task(slot)?),
            };
            fresh.push(Some(instantiate(engine, spec, tables, task)?));
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

    /// Whether a slot is stateful.
    pub fn is_stateful(&self) -> bool {
        self.stages
            .iter()
            .any(|(_, instance)| instance.task().is_some())
    }

    /// The changes to each stateful slot's state since the last call, for its changelog.
    pub fn take_changelog(&mut self) -> Vec<(usize, Changes)> {
        (self.stages.iter().enumerate())
            .filter_map(|(slot, (_, instance))| {
                let changes = lock(instance.task()?).take_changelog();
                (!changes.is_empty()).then_some((slot, changes))
            })
            .collect()
    }

    /// Why a stateful slot's state can no longer be trusted (its store failed), if one can't.
    pub fn state_failure(&self) -> Option<String> {
        (self.stages.iter()).find_map(|(spec, instance)| {
            let failure = lock(instance.task()?).failure()?;
            Some(format!("the state of transform `{}`: {failure}", spec.name))
        })
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

    /// Runs `batch` through every stage. Each stage's outputs are handed to the next stage as
    /// its input, bytes and all, without copying.
    pub fn run<'a>(&mut self, batch: &'a InputBatch) -> Result<ChainResult<'a>, InstantiateError> {
        let inputs = batch.len();
        let mut failures = Failures {
            failed: vec![false; inputs],
            list: Vec::new(),
        };
        // Per record of the current stage's input: its original record, its route, and
        // whether it came from a timer (kept whatever happens to its original record).
        let mut origin: Vec<u32> = (0..inputs as u32).collect();
        let mut route: Vec<u16> = vec![0; inputs];
        let mut timer: Vec<bool> = vec![false; inputs];
        let mut next_input: Option<InputBatch> = None;
        let mut last = None;
        let stage_count = self.stages.len();
        for s in 0..stage_count {
            let processed = self.stages[s]
                .1
                .process(next_input.as_ref().unwrap_or(batch))?;
            for f in processed.failures() {
                failures.add(origin[f.input] as usize, s, f.kind, f.message.clone());
            }
            let (mut next_origin, mut next_route, mut next_timer) = (
                Vec::with_capacity(origin.len()),
                Vec::with_capacity(origin.len()),
                Vec::with_capacity(origin.len()),
            );
            for (index, o) in processed.outputs().enumerate() {
                let from = origin[o.input()];
                next_timer.push(timer[o.input()] || processed.is_timer_output(index));
                let to = self
                    .route(o.topic(), route[o.input()])
                    .unwrap_or_else(|message| {
                        failures.add(from as usize, s, FailureKind::Rejected, message);
                        0
                    });
                next_origin.push(from);
                next_route.push(to);
            }
            origin = next_origin;
            route = next_route;
            timer = next_timer;
            if s + 1 == stage_count {
                last = Some(processed);
                break;
            }
            // The next stage sees the outputs of records that have not failed, each with the
            // offset of the record it derives from.
            let kept: Vec<bool> = (origin.iter().zip(&timer))
                .map(|(&o, &timer)| timer || !failures.failed[o as usize])
                .collect();
            next_input = Some(processed.into_input(&batch.topic, batch.partition, |i| {
                kept[i].then(|| batch.offsets[origin[i] as usize])
            }));
            (origin, route, timer) = (
                kept_only(&origin, &kept),
                kept_only(&route, &kept),
                kept_only(&timer, &kept),
            );
        }
        let keep = (origin.iter().zip(&timer))
            .map(|(&o, &timer)| timer || !failures.failed[o as usize])
            .collect();
        let mut failures = failures.list;
        failures.sort_by_key(|f| f.input);
        Ok(ChainResult {
            input: batch,
            last,
            origin,
            route,
            keep,
            failures,
        })
    }
    /// Where an output goes: the output topic it names, or else `inherited`, its input's.
    fn route(&self, topic: Option<&[u8]>, inherited: u16) -> Result<u16, String> {
        let Some(topic) = topic else {
            return Ok(inherited);
        };
        match self.outputs.iter().position(|t| t.as_bytes() == topic) {
            Some(i) => Ok(i as u16),
            None => Err(format!(
                "routed an output to `{}`, which is not one of the pipeline's outputs ({})",
                String::from_utf8_lossy(topic),
                self.outputs.join(", ")
            )),
        }
    }

    /// An idle task (`idle_timeout_ms`): every stateful stage's stream time moves on by `by`
    /// milliseconds and the timers that makes due fire; their outputs go through the later
    /// stages as records of `topic`/`partition` at `offset` (the partition's last). They derive
    /// from no input record, so one that a later stage fails is logged and left out.
    pub fn idle(
        &mut self,
        by: i64,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<ChainResult<'static>, InstantiateError> {
        static NO_INPUT: LazyLock<InputBatchBuilder> =
            LazyLock::new(|| InputBatchBuilder::new("", 0));
        // The outputs so far, each with its route and whether it is kept.
        let mut carried: Option<(Processed, Vec<u16>, Vec<bool>)> = None;
        for s in 0..self.stages.len() {
            let mut route = Vec::new();
            let mut processed = match carried.take() {
                Some((earlier, routes, keep)) if keep.contains(&true) => {
                    let inherited: Vec<u16> = (routes.iter().zip(&keep))
                        .filter_map(|(route, keep)| keep.then_some(*route))
                        .collect();
                    let input = earlier.into_input(topic, partition, |i| keep[i].then_some(offset));
                    let processed = self.stages[s].1.process(&input)?;
                    for f in processed.failures() {
                        idle_output_failed(&self.stages[s].0, &f.message);
                    }
                    route = (processed.outputs())
                        .map(|o| self.route(o.topic(), inherited[o.input()]))
                        .collect();
                    processed
                }
                _ => Processed::empty(),
            };
            let fired = self.stages[s].1.advance_idle(by)?;
            route.extend(fired.outputs().map(|o| self.route(o.topic(), 0)));
            processed.append(fired, 0);
            let keep = route.iter().map(Result::is_ok).collect();
            let route = (route.into_iter())
                .map(|r| {
                    r.unwrap_or_else(|message| {
                        idle_output_failed(&self.stages[s].0, &message);
                        0
                    })
                })
                .collect();
            carried = Some((processed, route, keep));
        }
        let (last, route, keep) =
            carried.unwrap_or_else(|| (Processed::empty(), Vec::new(), Vec::new()));
        let count = route.len();
        Ok(ChainResult {
            input: NO_INPUT.batch(),
            last: Some(last),
            origin: vec![0; count],
            route,
            keep,
            failures: Vec::new(),
        })
    }
}

fn idle_output_failed(stage: &StageSpec, message: &str) {
    tracing::warn!(module = %stage.name, error = %message, event = "idle_timer_output_failed",
        "an output of a timer fired by the idle timeout failed; it is dropped");
}

fn instantiate(
    engine: &Engine,
    spec: &StageSpec,
    tables: &Tables,
    task: Option<SharedTask>,
) -> Result<Instance, InstantiateError> {
    engine.instantiate_with_task(&spec.module, &spec.name, &spec.config, tables, task)
}

/// The items of `items` whose `kept` is true.
fn kept_only<T: Copy>(items: &[T], kept: &[bool]) -> Vec<T> {
    (items.iter().zip(kept))
        .filter(|(_, kept)| **kept)
        .map(|(item, _)| *item)
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::tests::guest_bytes;
    use crate::engine::{InputBatchBuilder, Limits};

    fn stage(engine: &Engine, config: &[(&str, &str)]) -> Arc<StageSpec> {
        guest_stage(engine, "test_guest", config)
    }

    /// Version 1 of guest `name` with `config`.
    fn guest_stage(engine: &Engine, name: &str, config: &[(&str, &str)]) -> Arc<StageSpec> {
        Arc::new(StageSpec {
            name: name.into(),
            version: 1,
            module: engine.load(&guest_bytes(name)).unwrap(),
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
    }

    fn chain(engine: &Engine, stages: Vec<Arc<StageSpec>>) -> Chain {
        let outputs = Arc::new(vec!["a".to_string(), "b".to_string()]);
        let mut in_memory = |_| Ok(crate::engine::state::in_memory_task());
        Chain::new(
            engine,
            &Deployed::new(stages),
            outputs,
            &Tables::default(),
            &mut in_memory,
        )
        .unwrap()
    }

    fn batch(values: &[&str]) -> InputBatchBuilder {
        let mut b = InputBatchBuilder::new("in", 3);
        for (i, v) in values.iter().enumerate() {
            b.push(100 + i as i64, None, None, Some(v.as_bytes()), []);
        }
        b
    }

    /// (original record, output topic index, value) of every output to write.
    fn written(result: &ChainResult<'_>) -> Vec<(usize, usize, String)> {
        result
            .outputs()
            .map(|(origin, route, o)| {
                let value = String::from_utf8(o.value().unwrap().to_vec()).unwrap();
                (origin, route, value)
            })
            .collect()
    }

    #[test]
    fn failures_are_attributed_to_their_original_record_and_stage_and_drop_its_outputs() {
        let engine = Engine::new(Limits::default()).unwrap();
        let mut chain = chain(
            &engine,
            vec![
                stage(&engine, &[("fail_on", "bad")]),
                stage(&engine, &[("route_field", "to")]),
            ],
        );
        let input = batch(&[
            r#"{"to":"b","n":0}"#,
            r#"{"to":"a","bad":1}"#,
            r#"{"to":"nowhere"}"#,
            r#"{"to":"a","n":3}"#,
        ]);
        let result = chain.run(input.batch()).unwrap();
        assert_eq!(
            written(&result),
            vec![
                (0, 1, r#"{"to":"b","n":0}"#.to_string()),
                (3, 0, r#"{"to":"a","n":3}"#.to_string()),
            ]
        );
        let failures: Vec<(usize, usize, FailureKind)> = result
            .failures
            .iter()
            .map(|f| (f.input, f.stage, f.kind))
            .collect();
        assert_eq!(
            failures,
            vec![(1, 0, FailureKind::Rejected), (2, 1, FailureKind::Rejected)]
        );
        assert!(result.failures[1].message.contains("`nowhere`"));
    }

    #[test]
    fn outputs_of_timers_are_written_even_when_the_batchs_last_record_fails() {
        let engine = Engine::new(Limits::default()).unwrap();
        let config = [("value", "n"), ("window", "10s"), ("aggregations", "sum")];
        let windows = guest_stage(&engine, "windowed_aggregate", &config);
        let mut chain = chain(&engine, vec![windows]);
        // The second record closes the first one's window; the third is late for it and fails,
        // and the closed window's result, attributed to the batch's last record, still comes.
        let mut input = InputBatchBuilder::new("in", 0);
        for (offset, (time, n)) in [(1_000, 1), (20_000, 2), (2_000, 4)].iter().enumerate() {
            let value = format!(r#"{{"n":{n}}}"#);
            input.push(offset as i64, Some(*time), None, Some(value.as_bytes()), []);
        }
        let result = chain.run(input.batch()).unwrap();
        let failures: Vec<(usize, FailureKind)> =
            result.failures.iter().map(|f| (f.input, f.kind)).collect();
        assert_eq!(failures, vec![(2, FailureKind::Late)]);
        assert_eq!(
            written(&result),
            vec![(
                2,
                0,
                r#"{"key":null,"window_start":0,"window_end":10000,"sum":1}"#.to_string()
            )]
        );
    }

    #[test]
    fn an_idle_chain_closes_windows_by_the_clock_and_later_stages_see_their_results() {
        let engine = Engine::new(Limits::default()).unwrap();
        let config = [
            ("key", "k"),
            ("value", "n"),
            ("window", "10s"),
            ("aggregations", "sum"),
        ];
        let windows = guest_stage(&engine, "windowed_aggregate", &config);
        let rejects_b = stage(&engine, &[("fail_on", r#""key":"b""#)]);
        let mut chain = chain(&engine, vec![windows, rejects_b]);
        let mut input = InputBatchBuilder::new("in", 0);
        for (offset, (time, key)) in [(1_000, "a"), (2_000, "b")].iter().enumerate() {
            let value = format!(r#"{{"k":"{key}","n":{}}}"#, offset + 1);
            input.push(offset as i64, Some(*time), None, Some(value.as_bytes()), []);
        }
        assert!(written(&chain.run(input.batch()).unwrap()).is_empty());
        // Stream time 2 s + 7.999 s: the window [0, 10 s) is still open.
        assert!(written(&chain.idle(7_999, "in", 0, 1).unwrap()).is_empty());
        // One more millisecond closes it; the second stage fails b's result, which is dropped.
        assert_eq!(
            written(&chain.idle(1, "in", 0, 1).unwrap()),
            vec![(
                0,
                0,
                r#"{"key":"a","window_start":0,"window_end":10000,"sum":1}"#.to_string()
            )]
        );
        assert!(written(&chain.idle(60_000, "in", 0, 1).unwrap()).is_empty());
    }

    #[test]
    fn an_empty_chain_writes_its_input_as_it_is() {
        let engine = Engine::new(Limits::default()).unwrap();
        let mut chain = chain(&engine, Vec::new());
        let input = batch(&["x", "y"]);
        let result = chain.run(input.batch()).unwrap();
        assert_eq!(
            written(&result),
            vec![(0, 0, "x".to_string()), (1, 0, "y".to_string())]
        );
        assert!(result.failures.is_empty());
    }
}
