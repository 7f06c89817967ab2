//! The control plane: stored modules, the pipelines (their settings and what each slot of
//! their chain runs), and the changes the API makes to them (define, delete, deploy, roll back,
//! pause, resume).
//!
//! Pipelines are data. On its own, a member keeps them in `<state>/deployments.json`, written
//! before a change takes effect (a change that cannot be written is refused, with memory left
//! as it is on disk); in a fleet, they are records of its deployments topic. What wins is the
//! latest change, whoever made it: the API, the page, `sluice apply`, or the configuration file
//! of `sluice run`. The file counts as a change only when it says something other than when it
//! was last applied, so that a restart with the same file keeps what was changed since through
//! the API. Each pipeline shows its latest change ([`Change`]).

pub mod fleet;
pub mod running;
pub mod store;

use crate::config::{ConfigError, LimitsConfig, PipelineConfig, Scalar, TransformConfig};
use crate::engine::{Engine, InstantiateError};
use crate::pipeline::Pipeline;
use crate::pipeline::chain::StageSpec;
use crate::tables::Tables;
use fleet::{FleetLog, Topic};
use running::{Entry, Job, RunSettings};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, mpsc};
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

/// How many earlier deployments a slot keeps to roll back to: enough for any rollback a person
/// makes, few enough that the state stays small however often a slot is deployed into.
const HISTORY: usize = 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SlotState {
    #[serde(flatten)]
    current: SlotDeployment,
    /// What ran before, most recent last: what a rollback returns to; the latest [`HISTORY`].
    #[serde(default)]
    history: Vec<SlotDeployment>,
}

impl SlotState {
    /// Runs `next`, remembering what ran to roll back to.
    fn replace(&mut self, next: SlotDeployment) {
        let previous = std::mem::replace(&mut self.current, next);
        self.history.push(previous);
        if self.history.len() > HISTORY {
            self.history.remove(0);
        }
    }
}

/// A pipeline's latest change: who made it, when, and what it was. The API shows it, so that
/// what wins (the latest change) can be seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Change {
    /// `api` (the API, the page and the CLI's clients of it), or `file <path>` (`sluice run`'s
    /// configuration file).
    pub by: String,
    /// When, RFC 3339.
    pub at: String,
    /// What: `created`, `updated`, `deployed tz_normaliser@2 into slot 0`, `paused`...
    pub what: String,
}

impl Change {
    fn now(by: &str, what: impl Into<String>) -> Option<Change> {
        Some(Change {
            by: by.to_string(),
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            what: what.into(),
        })
    }
}

/// Who a change made through the API is by.
pub const BY_API: &str = "api";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct PipelineState {
    #[serde(default)]
    paused: bool,
    slots: Vec<SlotState>,
    /// Its settings, `transform` empty (`slots` are its chain). Absent from the deployments of
    /// Sluice versions before pipelines were data: such a pipeline runs once a file or the API
    /// defines it.
    #[serde(default)]
    settings: Option<PipelineConfig>,
    /// The pipeline as the configuration file said when it last set it, its `.wasm` files
    /// as the module versions they were stored as: the file sets it again only once it says
    /// something else.
    #[serde(default)]
    file: Option<PipelineConfig>,
    /// Its latest change.
    #[serde(default)]
    last_change: Option<Change>,
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
    /// A pipeline definition that cannot run: a setting out of range, a module that is not
    /// stored or does not start with its configuration.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
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
    /// The pipelines this member runs, in the order they were first defined (the file's
    /// first).
    running: Mutex<Vec<Arc<Entry>>>,
    /// Where changes that start or stop pipelines go, once [`Self::start_pipelines`] ran.
    starter: OnceLock<mpsc::Sender<Job>>,
    /// Limits the pipelines' settings are checked against.
    limits: OnceLock<LimitsConfig>,
    /// Set by [`Self::stop_all`]: nothing starts any more.
    stopping: AtomicBool,
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
        Ok(Self::new(store, engine, deployments, path))
    }

    fn new(store: ModuleStore, engine: Engine, deployments: Deployments, path: PathBuf) -> Self {
        ControlPlane {
            store,
            engine,
            deployments: Mutex::new(deployments),
            path,
            running: Mutex::new(Vec::new()),
            starter: OnceLock::new(),
            limits: OnceLock::new(),
            stopping: AtomicBool::new(false),
            fleet: OnceLock::new(),
            chunks: Mutex::new(HashMap::new()),
            member: OnceLock::new(),
        }
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
        let control = Arc::new(Self::new(
            ModuleStore::cache(dir, engine.clone(), max_module_bytes)?,
            engine,
            Deployments::default(),
            dir.join("deployments.json"),
        ));
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
            let added = self.store.add(name, bytes)?;
            self.forget_unused_modules();
            return Ok(added);
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
                Some(chunk),
            )?;
        }
        let record = FleetModule {
            uploaded_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            exports,
            chunks: chunks.len(),
        };
        let value = serde_json::to_vec(&record).expect("serialises");
        fleet.publish(
            Topic::Modules,
            &fleet::module_key(name, &sha256),
            Some(&value),
        )?;
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
        let parts: Vec<&str> = key.split('/').collect();
        if let (Topic::Deployments, ["pipeline", name], None) = (topic, parts.as_slice(), value) {
            self.deployments.lock().unwrap().pipelines.remove(*name);
            return self.apply(name);
        }
        let Some(value) = value else {
            return;
        };
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
                    .insert(name.to_string(), state);
                self.apply(name);
            }
            _ => fleet_record_refused(key, "an unknown key"),
        }
    }

    /// Applies the pipelines of `sluice run`'s configuration file (`source` names it): each
    /// one whose definition differs from what the file said when it last set the pipeline is
    /// defined as the file says; one the file still says the same of keeps its latest change.
    /// `.wasm` files are stored first, as the file's name without `.wasm`.
    pub fn apply_file(&self, pipelines: &[PipelineConfig], source: &str) -> anyhow::Result<()> {
        for (index, pipeline) in pipelines.iter().enumerate() {
            let at = format!("pipeline[{index}] ({})", pipeline.name);
            let mut resolved = pipeline.clone();
            for (t, transform) in resolved.transform.iter_mut().enumerate() {
                if !transform.is_file() {
                    continue;
                }
                let file = format!("{at}.transform[{t}].module `{}`", transform.module);
                let bytes = std::fs::read(&transform.module)
                    .map_err(|e| anyhow::anyhow!("{file}: cannot read it: {e}"))?;
                let name = (Path::new(&transform.module).file_stem())
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let (stored, _) =
                    (self.add_module(&name, &bytes)).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
                transform.module = format!("{name}@{}", stored.version);
            }
            let current = self.deployments.lock().unwrap().of(&pipeline.name);
            if current.settings.is_some() && current.file.as_ref() == Some(&resolved) {
                if let Some(change) = current.last_change.filter(|c| c.by != source) {
                    tracing::info!(pipeline = %pipeline.name, by = %change.by, at = %change.at, what = %change.what,
                        "the file says what it said when it last set this pipeline: its latest change stays");
                }
                continue;
            }
            self.define(resolved.clone(), source, Some(resolved))
                .map_err(|e| anyhow::anyhow!("{source}: {e}"))?;
        }
        Ok(())
    }

    /// Creates or replaces a pipeline (`definition.name`) as `definition` says; every module
    /// must be stored (`NAME`, its latest version, or `NAME@VERSION`) and start with its
    /// configuration. A slot that keeps its module keeps its rollback history. Returns whether
    /// the pipeline is new.
    pub fn put_pipeline(&self, definition: PipelineConfig) -> Result<bool, ControlError> {
        self.define(definition, BY_API, None)
    }

    fn define(
        &self,
        definition: PipelineConfig,
        by: &str,
        file: Option<PipelineConfig>,
    ) -> Result<bool, ControlError> {
        let place = format!("pipeline `{}`", definition.name);
        definition.check("pipeline", self.limits.get_or_init(LimitsConfig::default))?;
        self.sync()?;
        let tables = crate::pipeline::declared_tables(&definition);
        let mut chain = Vec::new();
        for (t, transform) in definition.transform.iter().enumerate() {
            let at = format!("{place}.transform[{t}].module");
            let slot = self
                .slot_for(transform)
                .map_err(|problem| ConfigError::Invalid {
                    at: at.clone(),
                    problem,
                })?;
            if let Err(error) = self.stage(&slot, &tables) {
                let problem = match error {
                    ControlError::InitFailed { error, .. } => format!(
                        "{}@{} does not start with this configuration: {error}",
                        slot.module, slot.version
                    ),
                    other => other.to_string(),
                };
                return Err(ConfigError::Invalid { at, problem }.into());
            }
            chain.push(slot);
        }
        let deployments = self.deployments.lock().unwrap();
        let mut state = deployments.of(&definition.name);
        let created = state.settings.is_none();
        let slots = (chain.into_iter().enumerate())
            .map(|(index, next)| match state.slots.get(index) {
                Some(old) if old.current == next => old.clone(),
                Some(old) if old.current.module == next.module => {
                    let mut slot = old.clone();
                    slot.replace(next);
                    slot
                }
                _ => SlotState {
                    current: next,
                    history: Vec::new(),
                },
            })
            .collect();
        state.slots = slots;
        state.settings = Some(definition.settings());
        if file.is_some() {
            state.file = file;
        }
        state.last_change = Change::now(by, if created { "created" } else { "updated" });
        self.change(deployments, &definition.name, Some(state))?;
        Ok(created)
    }

    /// The slot a transform of a definition names: its module must be stored.
    fn slot_for(&self, transform: &TransformConfig) -> Result<SlotDeployment, String> {
        if transform.is_file() {
            return Err(format!(
                "`{}` is a file: store it first (`POST /api/v1/modules`, `sluice modules upload`, or `sluice apply`, which does both) and name the module",
                transform.module
            ));
        }
        let (module, version) = transform.stored()?;
        let versions = self.store.versions(module).map_err(|e| e.to_string())?;
        let version = match version {
            Some(v) if versions.iter().any(|stored| stored.version == v) => v,
            Some(v) => {
                return Err(format!(
                    "module `{module}` has no version {v} (it has 1 to {})",
                    versions.len()
                ));
            }
            None => versions.last().map_or(0, |v| v.version),
        };
        Ok(SlotDeployment {
            module: module.to_string(),
            version,
            config: (transform.config.iter())
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect(),
        })
    }

    /// Deletes pipeline `name`: it drains, commits and stops. Its consumer group keeps its
    /// offsets, so that a pipeline defined again under the name goes on where it stopped.
    pub fn delete_pipeline(&self, name: &str) -> Result<(), ControlError> {
        self.sync()?;
        let deployments = self.deployments.lock().unwrap();
        if (deployments.pipelines.get(name)).is_none_or(|s| s.settings.is_none()) {
            return Err(ControlError::UnknownPipeline(name.to_string()));
        }
        self.change(deployments, name, None)
    }

    /// Pipeline `name` as defined (its chain as stored module versions), and its latest change.
    pub fn definition(&self, name: &str) -> Option<(PipelineConfig, Option<Change>)> {
        let deployments = self.deployments.lock().unwrap();
        let state = deployments.pipelines.get(name)?;
        let mut definition = state.settings.clone()?;
        definition.transform = (state.slots.iter())
            .map(|slot| TransformConfig {
                module: format!("{}@{}", slot.current.module, slot.current.version),
                config: (slot.current.config.iter())
                    .map(|(k, v)| (k.clone(), Scalar(v.clone())))
                    .collect(),
            })
            .collect();
        Some((definition, state.last_change.clone()))
    }

    /// Sets the limits that pipeline definitions are checked against (the defaults until then).
    pub fn set_limits(&self, limits: LimitsConfig) {
        let _ = self.limits.set(limits);
    }

    /// Starts running every defined pipeline (`first`'s names first, in that order) and, from
    /// now on, follows their changes. Without `run` (unit tests), pipelines are made ready to
    /// show and change but not started.
    pub fn start_pipelines(
        &self,
        run: Option<RunSettings>,
        first: &[String],
    ) -> anyhow::Result<()> {
        let (jobs, receiver) = mpsc::channel();
        if self.starter.set(jobs).is_err() {
            anyhow::bail!("the pipelines are started already");
        }
        match run {
            Some(run) => running::start_thread(receiver, run, self.engine.clone())?,
            // Nothing starts: the jobs stay in the channel, never carried out.
            None => std::mem::forget(receiver),
        }
        let mut names: Vec<String> = (self.deployments.lock().unwrap().pipelines.iter())
            .filter(|(_, state)| state.settings.is_some())
            .map(|(name, _)| name.clone())
            .collect();
        names.sort_by_key(|name| first.iter().position(|f| f == name).unwrap_or(usize::MAX));
        for name in names {
            self.apply(&name);
        }
        Ok(())
    }

    /// Makes what this member runs of pipeline `name` what its deployments say: a chain or a
    /// pause swapped in place, other settings by stopping it and starting it anew, a new
    /// pipeline started, a deleted one stopped. Nothing runs before [`Self::start_pipelines`].
    fn apply(&self, name: &str) {
        let Some(starter) = self.starter.get() else {
            return;
        };
        if self.stopping.load(Relaxed) {
            return;
        }
        let state = (self.deployments.lock().unwrap().pipelines.get(name))
            .filter(|s| s.settings.is_some())
            .cloned();
        let mut running = self.running.lock().unwrap();
        let at = running.iter().position(|e| e.pipeline.name == name);
        let job = match (state, at) {
            (None, None) => return,
            (None, Some(at)) => Job::Retire(running.remove(at)),
            (Some(state), Some(at)) if swappable(&running[at], &state) => {
                self.run(&running[at].pipeline, &state);
                drop(running);
                return self.forget_unused_modules();
            }
            (Some(state), at) => {
                let new = Arc::new(self.prepare(&state));
                let old = match at {
                    Some(at) => Some(std::mem::replace(&mut running[at], new.clone())),
                    None => {
                        running.push(new.clone());
                        None
                    }
                };
                Job::Replace { old, new }
            }
        };
        drop(running);
        let _ = starter.send(job);
        self.forget_unused_modules();
    }

    /// Keeps compiled in memory only the modules some slot runs or is to run.
    fn forget_unused_modules(&self) {
        let mut in_use: std::collections::HashSet<String> = (self.running.lock().unwrap().iter())
            .flat_map(|e| {
                let (_, stages) = e.pipeline.deployed.current();
                stages
                    .iter()
                    .map(|s| s.module.sha256.clone())
                    .collect::<Vec<_>>()
            })
            .collect();
        let deployments = self.deployments.lock().unwrap();
        for slot in deployments.pipelines.values().flat_map(|p| &p.slots) {
            if let Ok(versions) = self.store.versions(&slot.current.module)
                && let Some(v) = versions.iter().find(|v| v.version == slot.current.version)
            {
                in_use.insert(v.sha256.clone());
            }
        }
        drop(deployments);
        self.store.retain_compiled(&in_use);
    }

    /// A not yet started pipeline as `state` defines it; failed if a slot's module does not
    /// start.
    fn prepare(&self, state: &PipelineState) -> Entry {
        let settings = state.settings.clone().expect("a defined pipeline");
        let tables = crate::pipeline::declared_tables(&settings);
        let mut stages = Vec::new();
        let mut error = None;
        for (index, slot) in state.slots.iter().enumerate() {
            match self.stage(&slot.current, &tables) {
                Ok(stage) => stages.push(stage),
                Err(e) => {
                    error = Some(format!("slot {index}: {e}"));
                    stages.clear();
                    break;
                }
            }
        }
        let pipeline = Arc::new(Pipeline::new(&settings, tables, stages));
        pipeline.paused.store(state.paused, Relaxed);
        if let Some(error) = error {
            tracing::error!(pipeline = %settings.name, %error, event = "pipeline_start_failed", "the pipeline cannot start");
            pipeline.fail(error);
        }
        Entry::new(pipeline, settings)
    }

    /// Asks every pipeline to drain, commit and stop; none starts after this.
    pub fn stop_all(&self) {
        self.stopping.store(true, Relaxed);
        for entry in self.running.lock().unwrap().iter() {
            entry.stop();
        }
    }

    /// Whether every pipeline's threads have ended (after [`Self::stop_all`]).
    pub fn all_stopped(&self) -> bool {
        (self.running.lock().unwrap().iter()).all(|e| e.handle_finished())
    }

    /// Whether there are pipelines and every one has stopped for good (failed).
    pub fn all_done(&self) -> bool {
        let running = self.running.lock().unwrap();
        !running.is_empty() && running.iter().all(|e| e.is_done())
    }

    /// Waits for every pipeline's threads; returns the errors of those that failed.
    pub fn join_all(&self) -> Vec<(String, String)> {
        let running = self.running.lock().unwrap().clone();
        let mut failed = Vec::new();
        for entry in running {
            entry.join();
            if let crate::pipeline::metrics::Status::Failed(error) = entry.pipeline.metrics.status()
            {
                failed.push((entry.pipeline.name.clone(), error));
            }
        }
        failed
    }

    /// The engine that runs the stored modules.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The pipelines, in the order they were first defined.
    pub fn pipelines(&self) -> Vec<Arc<Pipeline>> {
        (self.running.lock().unwrap().iter())
            .map(|e| e.pipeline.clone())
            .collect()
    }

    /// The pipeline called `name`.
    pub fn pipeline(&self, name: &str) -> Result<Arc<Pipeline>, ControlError> {
        (self.running.lock().unwrap().iter())
            .find(|e| e.pipeline.name == name)
            .map(|e| e.pipeline.clone())
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
        state.last_change = Change::now(
            BY_API,
            format!("deployed {module}@{version} into slot {index}"),
        );
        slot.replace(next);
        self.change(deployments, pipeline, Some(state))
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
        state.last_change = Change::now(
            BY_API,
            format!(
                "rolled slot {index} back to {}@{}",
                previous.module, previous.version
            ),
        );
        slot.current = previous;
        self.change(deployments, pipeline, Some(state))
    }

    /// Pauses (stops consuming, keeps the group membership) or resumes `pipeline`.
    pub fn set_paused(&self, pipeline: &str, paused: bool) -> Result<(), ControlError> {
        self.pipeline(pipeline)?;
        self.sync()?;
        let deployments = self.deployments.lock().unwrap();
        let mut state = deployments.of(pipeline);
        state.paused = paused;
        state.last_change = Change::now(BY_API, if paused { "paused" } else { "resumed" });
        self.change(deployments, pipeline, Some(state))
    }

    /// The running pipeline `pipeline` and a copy of its deployments to change, checked to have
    /// slot `index`.
    fn slot(
        &self,
        deployments: &Deployments,
        pipeline: &str,
        index: usize,
    ) -> Result<(Arc<Pipeline>, PipelineState), ControlError> {
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

    /// Makes `state` `pipeline`'s deployments (`None` deletes the pipeline). On its own, this
    /// member saves it (refusing the change if it cannot) and runs it; in a fleet, it writes it
    /// to the fleet's topic and every member, this one included, runs it from there.
    fn change(
        &self,
        mut deployments: MutexGuard<'_, Deployments>,
        pipeline: &str,
        state: Option<PipelineState>,
    ) -> Result<(), ControlError> {
        if let Some(fleet) = self.fleet() {
            drop(deployments);
            let value = state.map(|s| serde_json::to_vec(&s).expect("deployments serialise"));
            let key = fleet::pipeline_key(pipeline);
            fleet.publish(Topic::Deployments, &key, value.as_deref())?;
            return Ok(());
        }
        self.commit(&mut deployments, pipeline, state)?;
        drop(deployments);
        self.apply(pipeline);
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

    /// Makes `state` `pipeline`'s deployments (`None`: deletes them): on disk first, then in
    /// memory, so that a failed write changes neither.
    fn commit(
        &self,
        deployments: &mut Deployments,
        pipeline: &str,
        state: Option<PipelineState>,
    ) -> Result<(), StoreError> {
        let mut next = Deployments {
            pipelines: deployments.pipelines.clone(),
        };
        match state {
            Some(state) => next.pipelines.insert(pipeline.to_string(), state),
            None => next.pipelines.remove(pipeline),
        };
        let bytes = serde_json::to_vec_pretty(&next).expect("deployments serialise");
        store::write_atomically(&self.path, &bytes)?;
        *deployments = next;
        Ok(())
    }
}

/// Whether `entry` can become what `state` says in place: same settings, as many slots, not
/// failed (a failed pipeline defined again starts anew).
fn swappable(entry: &Entry, state: &PipelineState) -> bool {
    state.settings.as_ref() == Some(&entry.settings)
        && !entry.pipeline.has_failed()
        && entry.pipeline.deployed.current().1.len() == state.slots.len()
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

    /// The definition of pipeline `p`, from `a` to `b` through `module`.
    pub fn definition(module: &str) -> PipelineConfig {
        let text = format!(
            "[[pipeline]]\nname = \"p\"\ninputs = [\"a\"]\noutputs = [\"b\"]\n\
             [[pipeline.transform]]\nmodule = {module:?}\n"
        );
        Config::parse(&text).unwrap().pipeline.remove(0)
    }

    /// A control plane over `dir` with one pipeline `p` whose only slot runs the test guest,
    /// ready to change but not started (no Kafka).
    pub fn control_plane(dir: &Path) -> (ControlPlane, Arc<Pipeline>) {
        let engine = Engine::new(Limits::default()).unwrap();
        let control = ControlPlane::open(&dir.join("state"), engine, 64 << 20).unwrap();
        control
            .store
            .add("test_guest", &guest_bytes("test_guest"))
            .unwrap();
        control.put_pipeline(definition("test_guest")).unwrap();
        control.start_pipelines(None, &[]).unwrap();
        let pipeline = control.pipeline("p").unwrap();
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
    fn only_the_modules_slots_run_stay_compiled_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let (control, _) = control_plane(dir.path());
        let mut bytes = guest_bytes("test_guest");
        for n in 0..10u8 {
            bytes.extend([0, 2, 1, b'a' + n]);
            control.add_module("test_guest", &bytes).unwrap();
        }
        assert_eq!(control.store.versions("test_guest").unwrap().len(), 11);
        // The running version and the latest others, not all 11.
        let held = 1 + store::RECENTLY_USED;
        assert_eq!(control.store.compiled_count(), held);
        control.deploy("p", 0, "test_guest", 4, None).unwrap();
        assert_eq!(control.store.compiled_count(), held);
        // A version not kept compiled is compiled again when wanted.
        control.roll_back("p", 0).unwrap();
        assert_eq!(
            control.pipeline("p").unwrap().deployed.current().1[0].version,
            1
        );
    }

    #[test]
    fn a_slot_remembers_its_latest_deployments_only() {
        let dir = tempfile::tempdir().unwrap();
        let (control, _) = control_plane(dir.path());
        for _ in 0..(HISTORY + 30) {
            control.deploy("p", 0, "test_guest", 1, None).unwrap();
        }
        let saved = std::fs::read_to_string(dir.path().join("state/deployments.json")).unwrap();
        let state: Deployments = serde_json::from_str(&saved).unwrap();
        assert_eq!(state.pipelines["p"].slots[0].history.len(), HISTORY);
        for _ in 0..HISTORY {
            control.roll_back("p", 0).unwrap();
        }
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
            slots: vec![SlotState {
                current: slot,
                history: Vec::new(),
            }],
            settings: Some(super::tests_support::definition("test_guest").settings()),
            ..PipelineState::default()
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
