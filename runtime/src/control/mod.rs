//! The control plane: stored modules, what each pipeline slot runs, and the changes the API
//! makes to running pipelines (deploy, roll back, pause, resume).
//!
//! Deployments persist in `<state>/deployments.json`, written before a change takes effect (a
//! change that cannot be written is refused, with memory left as it is on disk), so that after
//! a restart each pipeline runs what was deployed rather than what the configuration
//! file names. The file's modules are stored too (under their file name), and decide a slot only
//! until something is deployed into it.

pub mod fleet;
pub mod store;

use crate::config::PipelineConfig;
use crate::engine::{Engine, InstantiateError};
use crate::pipeline::Pipeline;
use crate::pipeline::chain::StageSpec;
use crate::tables::Tables;
use fleet::{FleetLog, Topic};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use store::{ModuleStore, ModuleVersion, StoreError};

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
    /// The fleet's topics could not be written or read.
    #[error(transparent)]
    Fleet(#[from] fleet::FleetError),
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
    /// In a fleet: its topics, where changes go; `None` for a member on its own.
    fleet: OnceLock<Arc<FleetLog>>,
    /// In a fleet: chunks of module bytes read but not yet made a version, by hash.
    chunks: Mutex<HashMap<String, Vec<Option<Vec<u8>>>>>,
    /// Who this process is, once its API listens.
    member: OnceLock<Member>,
}

/// Who this process is among a fleet's members.
#[derive(Debug, Clone)]
pub struct Member {
    /// Its id (see `sluice run`'s `member-id`).
    pub id: String,
    /// Where its API and dashboard are served.
    pub address: String,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_at: i64,
}

impl Default for Member {
    fn default() -> Self {
        Member {
            id: "local".into(),
            address: String::new(),
            started_at: fleet::now_ms(),
        }
    }
}

/// What a fleet's record of a module version holds beside its key.
#[derive(Debug, Serialize, Deserialize)]
struct FleetModule {
    uploaded_at: String,
    exports: Vec<String>,
    chunks: usize,
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
            fleet: OnceLock::new(),
            chunks: Mutex::new(HashMap::new()),
            member: OnceLock::new(),
        })
    }

    /// A member of a fleet: modules and deployments are the fleet's topics' (read to their
    /// end before this returns), `dir` only caches module bytes.
    pub fn join_fleet(
        dir: &Path,
        engine: Engine,
        max_module_bytes: usize,
        kafka: &crate::config::KafkaConfig,
        fleet: &crate::config::FleetConfig,
    ) -> anyhow::Result<Arc<Self>> {
        let log = FleetLog::connect(kafka, fleet)?;
        let control = Arc::new(ControlPlane {
            store: ModuleStore::cache(dir, engine.clone(), max_module_bytes)?,
            engine,
            deployments: Mutex::new(Deployments::default()),
            path: dir.join("deployments.json"),
            pipelines: OnceLock::new(),
            fleet: OnceLock::new(),
            chunks: Mutex::new(HashMap::new()),
            member: OnceLock::new(),
        });
        let _ = control.fleet.set(log.clone());
        let applier = Arc::downgrade(&control);
        log.follow(kafka, move |topic, key, value| {
            if let Some(control) = applier.upgrade() {
                control.apply_fleet_record(topic, key, value);
            }
        })?;
        tracing::info!(fleet = %log.name(), "joined the fleet: modules and deployments are kept in its Kafka topics");
        Ok(control)
    }

    /// In a fleet, waits until this member has applied every change made so far.
    fn sync(&self) -> Result<(), ControlError> {
        if let Some(fleet) = self.fleet() {
            fleet.sync()?;
        }
        Ok(())
    }

    /// The fleet this member belongs to, if any.
    pub fn fleet(&self) -> Option<&FleetLog> {
        self.fleet.get().map(|f| &**f)
    }

    /// Names this process, for its heartbeats and the fleet view; set once.
    pub fn set_member(&self, member: Member) {
        let _ = self.member.set(member);
    }

    /// Who this process is (`local`, until [`Self::set_member`]).
    pub fn member(&self) -> &Member {
        self.member.get_or_init(Member::default)
    }

    /// In a fleet, says in its status topic that this member has left.
    pub fn leave_fleet(&self) {
        if let (Some(fleet), Some(member)) = (self.fleet(), self.member.get()) {
            fleet.leave(&member.id);
        }
    }

    /// Stores `bytes` as the next version of module `name` (see [`ModuleStore::add`]); in a
    /// fleet, by writing them to its modules topic, so that every member gets the version.
    pub fn add_module(
        &self,
        name: &str,
        bytes: &[u8],
    ) -> Result<(ModuleVersion, bool), ControlError> {
        let Some(fleet) = self.fleet() else {
            return Ok(self.store.add(name, bytes)?);
        };
        fleet.sync()?;
        let (sha256, exports, existing) = self.store.check(name, bytes)?;
        if let Some(existing) = existing {
            return Ok((existing, false));
        }
        let chunks: Vec<&[u8]> = bytes.chunks(fleet::CHUNK_BYTES).collect();
        for (index, chunk) in chunks.iter().enumerate() {
            fleet.write(
                Topic::Modules,
                &fleet::chunk_key(&sha256, index, chunks.len()),
                chunk,
            )?;
        }
        let record = FleetModule {
            uploaded_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            exports,
            chunks: chunks.len(),
        };
        let value = serde_json::to_vec(&record).expect("serialises");
        fleet.publish(Topic::Modules, &fleet::module_key(name, &sha256), &value)?;
        let versions = self.store.versions(name)?;
        let version = versions.into_iter().find(|v| v.sha256 == sha256);
        Ok((
            version.ok_or_else(|| {
                StoreError::Io(format!(
                    "the fleet did not take module `{name}`: see the members' logs"
                ))
            })?,
            true,
        ))
    }

    /// Applies one record of the fleet's topics (see [`fleet`]).
    fn apply_fleet_record(&self, topic: Topic, key: &str, value: Option<&[u8]>) {
        let Some(value) = value else {
            return;
        };
        let parts: Vec<&str> = key.split('/').collect();
        match (topic, parts.as_slice()) {
            (Topic::Modules, ["chunk", sha256, index, count]) => {
                let (Ok(index), Ok(count)) = (index.parse::<usize>(), count.parse::<usize>())
                else {
                    return fleet_record_refused(key, "a malformed chunk key");
                };
                if index >= count {
                    return fleet_record_refused(key, "a malformed chunk key");
                }
                let mut chunks = self.chunks.lock().unwrap();
                let slots = chunks.entry(sha256.to_string()).or_default();
                slots.resize(count, None);
                slots[index] = Some(value.to_vec());
            }
            (Topic::Modules, ["module", name, sha256]) => {
                let Ok(record) = serde_json::from_slice::<FleetModule>(value) else {
                    return fleet_record_refused(key, "not a module record");
                };
                let chunks = self.chunks.lock().unwrap().remove(*sha256);
                let bytes = match (chunks, self.store.cached_bytes(sha256)) {
                    (_, Some(cached)) => cached,
                    (Some(chunks), None)
                        if chunks.len() == record.chunks && chunks.iter().all(Option::is_some) =>
                    {
                        chunks.into_iter().flatten().flatten().collect()
                    }
                    _ => return fleet_record_refused(key, "its bytes are missing from the topic"),
                };
                if crate::engine::hex_sha256(&bytes) != *sha256 {
                    return fleet_record_refused(
                        key,
                        "its bytes do not match their sha256: refused",
                    );
                }
                match self
                    .store
                    .insert(name, &bytes, &record.uploaded_at, record.exports)
                {
                    Ok(version) => {
                        tracing::info!(fleet_module = %name, version = version.version, %sha256, "module version from the fleet")
                    }
                    Err(error) => fleet_record_refused(key, &error.to_string()),
                }
            }
            (Topic::Deployments, ["pipeline", name]) => {
                let Ok(state) = serde_json::from_slice::<PipelineState>(value) else {
                    return fleet_record_refused(key, "not a pipeline's deployments");
                };
                self.deployments
                    .lock()
                    .unwrap()
                    .pipelines
                    .insert(name.to_string(), state.clone());
                if let Ok(pipeline) = self.pipeline(name) {
                    self.run(pipeline, &state);
                }
            }
            _ => fleet_record_refused(key, "an unknown key"),
        }
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
                .add_module(&transform.name, &transform.bytes)
                .map_err(|e| anyhow::anyhow!("{}: {e}", transform.at))?;
            let config = transform.config.into_iter().collect();
            from_file.push(SlotDeployment {
                module: transform.name,
                version: stored.version,
                config,
            });
        }
        let deployments = self.deployments.lock().unwrap();
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
        let unchanged = (deployments.pipelines.get(&pipeline.name))
            .is_some_and(|s| serde_json::to_value(s).ok() == serde_json::to_value(&state).ok());
        if !unchanged {
            self.change(deployments, &pipeline.name, state)?;
        }
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
        let _ = self.pipelines.set(pipelines);
        // What was deployed since their stages were chosen (by another member of a fleet), and
        // whether they were paused when the runtime last stopped.
        let deployments = self.deployments.lock().unwrap().pipelines.clone();
        for p in self.pipelines() {
            if let Some(state) = deployments.get(&p.name) {
                self.run(p, state);
            }
        }
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
        self.sync()?;
        let deployments = self.deployments.lock().unwrap();
        let (shared, mut state) = self.slot(&deployments, pipeline, index)?;
        let slot = &mut state.slots[index];
        // A configuration is the module's: another module starts from its own defaults.
        let config = config.unwrap_or_else(|| {
            if slot.current.module == module {
                slot.current.config.clone()
            } else {
                BTreeMap::new()
            }
        });
        let next = SlotDeployment {
            module: module.to_string(),
            version,
            config,
        };
        self.stage(&next, &shared.tables)?;
        let previous = std::mem::replace(&mut slot.current, next);
        slot.history.push(previous);
        self.change(deployments, pipeline, state)
    }

    /// Returns slot `index` of `pipeline` to what ran before the last deploy.
    pub fn roll_back(&self, pipeline: &str, index: usize) -> Result<(), ControlError> {
        self.sync()?;
        let deployments = self.deployments.lock().unwrap();
        let (shared, mut state) = self.slot(&deployments, pipeline, index)?;
        let slot = &mut state.slots[index];
        let previous = slot
            .history
            .pop()
            .ok_or_else(|| ControlError::NothingToRollBack {
                pipeline: pipeline.to_string(),
                index,
            })?;
        self.stage(&previous, &shared.tables)?;
        slot.current = previous;
        self.change(deployments, pipeline, state)
    }

    /// Pauses (stops consuming, keeps the group membership) or resumes `pipeline`.
    pub fn set_paused(&self, pipeline: &str, paused: bool) -> Result<(), ControlError> {
        self.pipeline(pipeline)?;
        self.sync()?;
        let deployments = self.deployments.lock().unwrap();
        let mut state = deployments.of(pipeline);
        state.paused = paused;
        self.change(deployments, pipeline, state)
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

    /// Makes `state` `pipeline`'s deployments. On its own, this member saves it (refusing the
    /// change if it cannot) and runs it; in a fleet, it writes it to the fleet's topic and
    /// every member, this one included, runs it from there.
    fn change(
        &self,
        mut deployments: MutexGuard<'_, Deployments>,
        pipeline: &str,
        state: PipelineState,
    ) -> Result<(), ControlError> {
        if let Some(fleet) = self.fleet() {
            drop(deployments);
            let value = serde_json::to_vec(&state).expect("deployments serialise");
            fleet.publish(Topic::Deployments, &fleet::pipeline_key(pipeline), &value)?;
            return Ok(());
        }
        self.commit(&mut deployments, pipeline, state.clone())?;
        drop(deployments);
        if let Ok(shared) = self.pipeline(pipeline) {
            self.run(shared, &state);
        }
        Ok(())
    }

    /// Makes the running `shared` what `state` says: paused or not, and each slot's module,
    /// switched to at every partition's next batch boundary. A slot whose module does not
    /// start here keeps what it runs, with a log line.
    fn run(&self, shared: &Pipeline, state: &PipelineState) {
        shared.paused.store(state.paused, Relaxed);
        let (_, running) = shared.deployed.current();
        if running.len() != state.slots.len() {
            tracing::error!(pipeline = %shared.name, running = running.len(), deployed = state.slots.len(),
                "the deployment has another number of transforms than this member's configuration; ignored");
            return;
        }
        let mut changed = false;
        let stages: Vec<Arc<StageSpec>> = (running.iter().zip(&state.slots))
            .enumerate()
            .map(|(index, (stage, slot))| {
                let wanted = &slot.current;
                let same = stage.name == wanted.module
                    && stage.version == wanted.version
                    && stage.config.iter().cloned().collect::<BTreeMap<_, _>>() == wanted.config;
                if same {
                    return stage.clone();
                }
                match self.stage(wanted, &shared.tables) {
                    Ok(next) => {
                        changed = true;
                        next
                    }
                    Err(error) => {
                        tracing::error!(pipeline = %shared.name, slot = index, module = %wanted.module,
                            version = wanted.version, %error, event = "deploy_failed",
                            "cannot run the deployed module; this slot keeps what it runs");
                        stage.clone()
                    }
                }
            })
            .collect();
        if changed {
            shared.deployed.replace(stages);
            tracing::info!(pipeline = %shared.name, module = %stages_label(&shared.deployed), "deployed");
        }
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

/// A fleet record this member does not apply, with why.
fn fleet_record_refused(key: &str, why: &str) {
    tracing::error!(
        event = "fleet_record_refused",
        key,
        why,
        "a record of the fleet's topics is refused"
    );
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
mod tests_support {
    use super::*;
    use crate::config::Config;
    use crate::engine::Limits;
    use crate::engine::tests::guest_bytes;

    /// A control plane over `dir` with one pipeline `p` whose only slot runs the test guest.
    pub fn control_plane(dir: &Path) -> (ControlPlane, Arc<Pipeline>) {
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
}

#[cfg(test)]
mod tests {
    use super::tests_support::control_plane;
    use super::*;
    use crate::engine::tests::guest_bytes;

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

    #[test]
    fn a_deploy_without_config_keeps_the_slots_for_its_module_only() {
        let dir = tempfile::tempdir().unwrap();
        let (control, pipeline) = control_plane(dir.path());
        let config = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            (pairs.iter())
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let running = || pipeline.deployed.current().1[0].config.clone();
        control
            .deploy("p", 0, "test_guest", 1, Some(config(&[("fail_on", "x")])))
            .unwrap();
        // A new version of the same module (other bytes: a custom section appended) keeps the
        // slot's configuration.
        let mut other = guest_bytes("test_guest");
        other.extend([0, 5, 4, b't', b'e', b's', b't']);
        let (v2, _) = control.store.add("test_guest", &other).unwrap();
        control
            .deploy("p", 0, "test_guest", v2.version, None)
            .unwrap();
        assert_eq!(running(), vec![("fail_on".to_string(), "x".to_string())]);
        // Another module starts from its own defaults: `fail_on` would be refused by it.
        control
            .store
            .add("tz", &guest_bytes("tz_normaliser"))
            .unwrap();
        control.deploy("p", 0, "tz", 1, None).unwrap();
        assert_eq!(running(), vec![]);
        // Unless the configuration is given.
        let refused = control.deploy("p", 0, "test_guest", 1, Some(config(&[("nope", "1")])));
        assert!(
            matches!(refused, Err(ControlError::InitFailed { .. })),
            "{refused:?}"
        );
    }
}

#[cfg(test)]
mod fleet_tests {
    use super::tests_support::control_plane;
    use super::*;
    use crate::engine::tests::guest_bytes;

    /// The records a member writes for module `name` with `bytes`, split into chunks of `size`.
    fn module_records(name: &str, bytes: &[u8], size: usize) -> Vec<(Topic, String, Vec<u8>)> {
        let sha = crate::engine::hex_sha256(bytes);
        let chunks: Vec<&[u8]> = bytes.chunks(size).collect();
        let mut records: Vec<(Topic, String, Vec<u8>)> = (chunks.iter().enumerate())
            .map(|(i, c)| {
                (
                    Topic::Modules,
                    fleet::chunk_key(&sha, i, chunks.len()),
                    c.to_vec(),
                )
            })
            .collect();
        let record = FleetModule {
            uploaded_at: "2026-12-05T00:00:00Z".into(),
            exports: vec![crate::engine::EXPORT.into()],
            chunks: chunks.len(),
        };
        records.push((
            Topic::Modules,
            fleet::module_key(name, &sha),
            serde_json::to_vec(&record).unwrap(),
        ));
        records
    }

    fn deployment(module: &str, version: u32) -> (Topic, String, Vec<u8>) {
        let slot = SlotDeployment {
            module: module.into(),
            version,
            config: BTreeMap::new(),
        };
        let state = PipelineState {
            paused: false,
            slots: vec![SlotState {
                current: slot.clone(),
                history: Vec::new(),
                file: slot,
            }],
        };
        (
            Topic::Deployments,
            fleet::pipeline_key("p"),
            serde_json::to_vec(&state).unwrap(),
        )
    }

    fn apply(control: &ControlPlane, records: &[(Topic, String, Vec<u8>)]) {
        for (topic, key, value) in records {
            control.apply_fleet_record(*topic, key, Some(value));
        }
    }

    #[test]
    fn versions_follow_the_logs_order_and_a_replay_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (control, pipeline) = control_plane(dir.path());
        let (pii, tz) = (guest_bytes("pii_stripper"), guest_bytes("tz_normaliser"));
        let mut log = module_records("m", &pii, 100_000);
        log.extend(module_records("m", &tz, 1 << 20));
        log.push(deployment("m", 2));
        apply(&control, &log);
        let versions = control.store.versions("m").unwrap();
        let shas: Vec<&str> = versions.iter().map(|v| v.sha256.as_str()).collect();
        assert_eq!(
            shas,
            [
                crate::engine::hex_sha256(&pii),
                crate::engine::hex_sha256(&tz)
            ]
        );
        assert_eq!(pipeline.deployed.current().1[0].name, "m");
        assert_eq!(pipeline.deployed.current().1[0].version, 2);
        let generation = pipeline.deployed.generation();

        // The whole log again (a member reading it from the beginning once more).
        apply(&control, &log);
        assert_eq!(control.store.versions("m").unwrap().len(), 2);
        assert_eq!(
            pipeline.deployed.generation(),
            generation,
            "nothing switched"
        );
    }

    #[test]
    fn a_deployment_of_an_unknown_version_or_of_refused_bytes_leaves_the_slot_running() {
        let dir = tempfile::tempdir().unwrap();
        let (control, pipeline) = control_plane(dir.path());
        apply(&control, &[deployment("m", 7)]);
        assert_eq!(pipeline.deployed.current().1[0].name, "test_guest");

        // Bytes that do not hash to their key, and a module record whose chunks are missing.
        let mut tampered = module_records("m", &guest_bytes("pii_stripper"), 1 << 20);
        tampered[0].2[100] ^= 1;
        apply(&control, &tampered);
        let mut missing = module_records("n", &guest_bytes("tz_normaliser"), 100_000);
        missing.remove(1);
        apply(&control, &missing);
        assert!(control.store.versions("m").is_err() && control.store.versions("n").is_err());
        apply(&control, &[deployment("m", 1)]);
        assert_eq!(pipeline.deployed.current().1[0].name, "test_guest");

        // The genuine bytes come later: the next deployment record switches.
        apply(
            &control,
            &module_records("m", &guest_bytes("pii_stripper"), 1 << 20),
        );
        apply(&control, &[deployment("m", 1)]);
        assert_eq!(pipeline.deployed.current().1[0].name, "m");
    }
}
