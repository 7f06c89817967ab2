//! The control plane: stored modules, what each pipeline slot runs, and the changes the API
//! makes to running pipelines (deploy, roll back, pause, resume).
//!
//! Deployments persist in `<state>/deployments.json`, written before a change takes effect (a
//! change that cannot be written is refused, with memory left as it is on disk), so that after
//! a restart each pipeline runs what was deployed rather than what the configuration
//! file names. The file's modules are stored too (under their file name), and decide a slot only
//! until something is deployed into it.

pub mod store;

use crate::config::PipelineConfig;
use crate::engine::{Engine, InstantiateError};
use crate::pipeline::Pipeline;
use crate::pipeline::chain::StageSpec;
use crate::tables::Tables;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, OnceLock};
use store::{ModuleStore, StoreError};

/// What one transform slot runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotDeployment {
    /// Module name in the store.
    pub module: String,
    /// Its version.
    pub version: u32,
    /// Configuration for its `init`.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SlotState {
    #[serde(flatten)]
    current: SlotDeployment,
    /// What ran before, most recent last: what a rollback returns to.
    #[serde(default)]
    history: Vec<SlotDeployment>,
    /// What the configuration file named for the slot when the runtime last started: a file
    /// edited since then wins over an earlier deploy.
    file: SlotDeployment,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct PipelineState {
    #[serde(default)]
    paused: bool,
    slots: Vec<SlotState>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Deployments {
    pipelines: BTreeMap<String, PipelineState>,
}

impl Deployments {
    /// A copy of `pipeline`'s deployments, to change and then [`ControlPlane::commit`].
    fn of(&self, pipeline: &str) -> PipelineState {
        self.pipelines.get(pipeline).cloned().unwrap_or_default()
    }
}

/// Why a control-plane change was refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No pipeline has that name.
    #[error("no pipeline is called `{0}`")]
    UnknownPipeline(String),
    /// The pipeline has fewer slots.
    #[error(
        "pipeline `{pipeline}` has {count} transform slot(s), numbered from 0: there is no slot {index}"
    )]
    UnknownSlot {
        /// The pipeline.
        pipeline: String,
        /// Its number of slots.
        count: usize,
        /// The slot asked for.
        index: usize,
    },
    /// The module store refused or could not find the module.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The module's `init` failed with the slot's configuration; nothing changed.
    #[error("{module} version {version} did not start, so the running version stays: {error}")]
    InitFailed {
        /// The module.
        module: String,
        /// Its version.
        version: u32,
        /// Why.
        error: InstantiateError,
    },
    /// A rollback with nothing before.
    #[error("slot {index} of pipeline `{pipeline}` has no earlier version to roll back to")]
    NothingToRollBack {
        /// The pipeline.
        pipeline: String,
        /// The slot.
        index: usize,
    },
}

/// Modules, deployments, and the running pipelines they apply to.
pub struct ControlPlane {
    /// The stored modules.
    pub store: ModuleStore,
    engine: Engine,
    deployments: Mutex<Deployments>,
    path: PathBuf,
    pipelines: OnceLock<Vec<Arc<Pipeline>>>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("path", &self.path)
            .finish()
    }
}

impl ControlPlane {
    /// Opens the state directory `dir` (creating it); modules over `max_module_bytes` are refused.
    pub fn open(dir: &Path, engine: Engine, max_module_bytes: usize) -> Result<Self, StoreError> {
        let store = ModuleStore::open(dir, engine.clone(), max_module_bytes)?;
        let path = dir.join("deployments.json");
        let deployments = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::Io(format!("{} is damaged: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Deployments::default(),
            Err(e) => return Err(StoreError::Io(format!("{}: {e}", path.display()))),
        };
        Ok(ControlPlane {
            store,
            engine,
            deployments: Mutex::new(deployments),
            path,
            pipelines: OnceLock::new(),
        })
    }

    /// The stages pipeline `index` starts with: what was deployed into its slots, or the
    /// configuration file's modules for a pipeline never deployed to (or whose number of
    /// slots changed in the file). Each is started once to check its `init`.
    pub fn stages_for(
        &self,
        index: usize,
        pipeline: &PipelineConfig,
        tables: &Tables,
    ) -> anyhow::Result<Vec<Arc<StageSpec>>> {
        let mut from_file = Vec::new();
        for transform in crate::pipeline::read_transforms(index, pipeline)? {
            let (stored, _) = self
                .store
                .add(&transform.name, &transform.bytes)
                .map_err(|e| anyhow::anyhow!("{}: {e}", transform.at))?;
            let config = transform.config.into_iter().collect();
            from_file.push(SlotDeployment {
                module: transform.name,
                version: stored.version,
                config,
            });
        }
        let mut deployments = self.deployments.lock().unwrap();
        let mut state = deployments.of(&pipeline.name);
        if state.slots.len() != from_file.len() {
            if !state.slots.is_empty() {
                tracing::warn!(pipeline = %pipeline.name, deployed = state.slots.len(), file = from_file.len(),
                    "the configuration file changed the number of transforms: starting from the file's");
            }
            state.slots.clear();
        }
        // The latest intent wins: a deploy over a file left as it was, or the file if it was
        // edited since.
        for (slot, file) in from_file.into_iter().enumerate() {
            match state.slots.get_mut(slot) {
                None => state.slots.push(SlotState {
                    current: file.clone(),
                    history: Vec::new(),
                    file,
                }),
                Some(s) if s.file == file => {
                    if s.current != file {
                        tracing::info!(pipeline = %pipeline.name, slot, module = %s.current.module,
                            version = s.current.version, "running the deployed version, not the file's");
                    }
                }
                Some(s) => {
                    tracing::info!(pipeline = %pipeline.name, slot, module = %file.module, version = file.version,
                        "the configuration file changed this slot since the last deploy: running the file's");
                    if s.current != file {
                        let replaced = std::mem::replace(&mut s.current, file.clone());
                        s.history.push(replaced);
                    }
                    s.file = file;
                }
            }
        }
        let slots: Vec<SlotDeployment> = state.slots.iter().map(|s| s.current.clone()).collect();
        self.commit(&mut deployments, &pipeline.name, state)?;
        drop(deployments);
        slots
            .iter()
            .enumerate()
            .map(|(t, slot)| {
                self.stage(slot, tables).map_err(|e| {
                    anyhow::anyhow!("pipeline[{index}] ({}).transform[{t}]: {e}", pipeline.name)
                })
            })
            .collect()
    }

    /// Hands over the running pipelines, and pauses those that were paused when the runtime
    /// last stopped.
    pub fn attach(&self, pipelines: Vec<Arc<Pipeline>>) {
        let deployments = self.deployments.lock().unwrap();
        for p in &pipelines {
            if deployments.pipelines.get(&p.name).is_some_and(|s| s.paused) {
                p.paused.store(true, Relaxed);
            }
        }
        let _ = self.pipelines.set(pipelines);
    }

    /// The engine that runs the stored modules.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The running pipelines, in configuration order.
    pub fn pipelines(&self) -> &[Arc<Pipeline>] {
        self.pipelines.get().map_or(&[], Vec::as_slice)
    }

    /// The running pipeline called `name`.
    pub fn pipeline(&self, name: &str) -> Result<&Arc<Pipeline>, ControlError> {
        self.pipelines()
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| ControlError::UnknownPipeline(name.to_string()))
    }

    /// Whether slot `index` of `pipeline` has an earlier version to roll back to.
    pub fn can_roll_back(&self, pipeline: &str, index: usize) -> bool {
        let deployments = self.deployments.lock().unwrap();
        deployments
            .pipelines
            .get(pipeline)
            .and_then(|p| p.slots.get(index))
            .is_some_and(|s| !s.history.is_empty())
    }

    /// Deploys version `version` of `module` into slot `index` of `pipeline`, with `config`
    /// (by default, the slot's current configuration). Every partition switches at its next
    /// batch boundary. Refused, with nothing changed, if the module does not start.
    pub fn deploy(
        &self,
        pipeline: &str,
        index: usize,
        module: &str,
        version: u32,
        config: Option<BTreeMap<String, String>>,
    ) -> Result<(), ControlError> {
        let mut deployments = self.deployments.lock().unwrap();
        let (shared, mut state) = self.slot(&deployments, pipeline, index)?;
        let slot = &mut state.slots[index];
        let config = config.unwrap_or_else(|| slot.current.config.clone());
        let next = SlotDeployment {
            module: module.to_string(),
            version,
            config,
        };
        let stage = self.stage(&next, &shared.tables)?;
        let previous = std::mem::replace(&mut slot.current, next);
        slot.history.push(previous);
        self.apply(&mut deployments, state, shared, index, stage)
    }

    /// Returns slot `index` of `pipeline` to what ran before the last deploy.
    pub fn roll_back(&self, pipeline: &str, index: usize) -> Result<(), ControlError> {
        let mut deployments = self.deployments.lock().unwrap();
        let (shared, mut state) = self.slot(&deployments, pipeline, index)?;
        let slot = &mut state.slots[index];
        let previous = slot
            .history
            .pop()
            .ok_or_else(|| ControlError::NothingToRollBack {
                pipeline: pipeline.to_string(),
                index,
            })?;
        let stage = self.stage(&previous, &shared.tables)?;
        slot.current = previous;
        self.apply(&mut deployments, state, shared, index, stage)
    }

    /// Pauses (stops consuming, keeps the group membership) or resumes `pipeline`.
    pub fn set_paused(&self, pipeline: &str, paused: bool) -> Result<(), ControlError> {
        let shared = self.pipeline(pipeline)?;
        let mut deployments = self.deployments.lock().unwrap();
        let mut state = deployments.of(pipeline);
        state.paused = paused;
        self.commit(&mut deployments, pipeline, state)?;
        shared.paused.store(paused, Relaxed);
        Ok(())
    }

    /// The running pipeline `pipeline` and a copy of its deployments to change, checked to have
    /// slot `index`.
    fn slot(
        &self,
        deployments: &Deployments,
        pipeline: &str,
        index: usize,
    ) -> Result<(&Arc<Pipeline>, PipelineState), ControlError> {
        let shared = self.pipeline(pipeline)?;
        let state = deployments.of(pipeline);
        if index >= state.slots.len() {
            return Err(ControlError::UnknownSlot {
                pipeline: pipeline.to_string(),
                count: state.slots.len(),
                index,
            });
        }
        Ok((shared, state))
    }

    /// Persists `state` as `pipeline`'s deployments, then swaps `stage` into the running chain.
    fn apply(
        &self,
        deployments: &mut Deployments,
        state: PipelineState,
        shared: &Pipeline,
        index: usize,
        stage: Arc<StageSpec>,
    ) -> Result<(), ControlError> {
        self.commit(deployments, &shared.name, state)?;
        let (_, stages) = shared.deployed.current();
        let mut stages = stages.to_vec();
        stages[index] = stage;
        shared.deployed.replace(stages);
        tracing::info!(pipeline = %shared.name, slot = index, module = %stages_label(&shared.deployed), "deployed");
        Ok(())
    }

    /// Loads `slot`'s module and checks that it starts with its configuration.
    fn stage(
        &self,
        slot: &SlotDeployment,
        tables: &Tables,
    ) -> Result<Arc<StageSpec>, ControlError> {
        let (_, module) = self.store.get(&slot.module, slot.version)?;
        let config: Vec<(String, String)> = slot
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        self.engine
            .instantiate(&module, &slot.module, &config, tables)
            .map_err(|error| ControlError::InitFailed {
                module: slot.module.clone(),
                version: slot.version,
                error,
            })?;
        Ok(Arc::new(StageSpec {
            name: slot.module.clone(),
            version: slot.version,
            module,
            config,
        }))
    }

    /// Makes `state` `pipeline`'s deployments: on disk first, then in memory, so that a failed
    /// write changes neither.
    fn commit(
        &self,
        deployments: &mut Deployments,
        pipeline: &str,
        state: PipelineState,
    ) -> Result<(), StoreError> {
        let mut next = Deployments {
            pipelines: deployments.pipelines.clone(),
        };
        next.pipelines.insert(pipeline.to_string(), state);
        let bytes = serde_json::to_vec_pretty(&next).expect("deployments serialise");
        store::write_atomically(&self.path, &bytes)?;
        *deployments = next;
        Ok(())
    }
}

/// `name@version` of each stage, for logs.
fn stages_label(deployed: &crate::pipeline::chain::Deployed) -> String {
    let (_, stages) = deployed.current();
    stages
        .iter()
        .map(|s| format!("{}@{}", s.name, s.version))
        .collect::<Vec<_>>()
        .join(" -> ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::engine::Limits;
    use crate::engine::tests::guest_bytes;

    /// A control plane over `dir` with one pipeline `p` whose only slot runs the test guest.
    fn control_plane(dir: &Path) -> (ControlPlane, Arc<Pipeline>) {
        let guest = dir.join("test_guest.wasm");
        std::fs::write(&guest, guest_bytes("test_guest")).unwrap();
        let text = format!(
            "[[pipeline]]\nname = \"p\"\ninputs = [\"a\"]\noutputs = [\"b\"]\n\
             [[pipeline.transform]]\nmodule = {guest:?}\n"
        );
        let config = Config::parse(&text).unwrap();
        let engine = Engine::new(Limits::default()).unwrap();
        let control = ControlPlane::open(&dir.join("state"), engine, 64 << 20).unwrap();
        let stages = control
            .stages_for(0, &config.pipeline[0], &Tables::default())
            .unwrap();
        let pipeline = Arc::new(Pipeline::new(
            &config.pipeline[0],
            Tables::default(),
            stages,
        ));
        control.attach(vec![pipeline.clone()]);
        (control, pipeline)
    }

    #[test]
    fn a_change_that_cannot_be_saved_is_not_made() {
        let dir = tempfile::tempdir().unwrap();
        let (control, pipeline) = control_plane(dir.path());
        control
            .store
            .add("test_guest", &guest_bytes("pii_stripper"))
            .unwrap();
        // The state directory replaced by a file: every write under it fails, even as root.
        let state = dir.path().join("state");
        std::fs::rename(&state, dir.path().join("moved")).unwrap();
        std::fs::write(&state, "").unwrap();

        let unwritable = |e: ControlError| {
            assert!(
                matches!(&e, ControlError::Store(StoreError::Unwritable { path, .. })
                    if *path == state.join("deployments.json")),
                "{e}"
            );
        };
        unwritable(control.deploy("p", 0, "test_guest", 2, None).unwrap_err());
        unwritable(control.set_paused("p", true).unwrap_err());
        assert_eq!(pipeline.deployed.current().1[0].version, 1);
        assert!(!pipeline.paused.load(Relaxed));
        assert!(!control.can_roll_back("p", 0));

        // Writable again: the deploy goes through, and a rollback returns to version 1.
        std::fs::remove_file(&state).unwrap();
        std::fs::rename(dir.path().join("moved"), &state).unwrap();
        control.deploy("p", 0, "test_guest", 2, None).unwrap();
        assert_eq!(pipeline.deployed.current().1[0].version, 2);
        control.roll_back("p", 0).unwrap();
        assert_eq!(pipeline.deployed.current().1[0].version, 1);
        assert!(!control.can_roll_back("p", 0));
    }
}
