//! The module store: transform components kept content-addressed on disk
//! (`<state>/modules/<sha256>.wasm`), with a version number per name (`<state>/modules.json`).
//!
//! A component is validated and compiled before it gets a version, so every stored version is
//! one the engine can run. Compiled modules are cached in memory by hash.

use crate::engine::{Engine, LoadError, Module};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One stored version of a module, as kept in `modules.json` and shown by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModuleVersion {
    /// 1 for the first version stored under a name, then 2, 3, ...
    pub version: u32,
    /// Hex SHA-256 of the component's bytes.
    pub sha256: String,
    /// Size of the component, in bytes.
    pub size: u64,
    /// When it was stored (RFC 3339, UTC).
    #[schema(format = DateTime)]
    pub uploaded_at: String,
    /// The component's exports.
    pub exports: Vec<String>,
}

/// Why the store refused or could not find a module.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A name that would not be safe in URLs, logs and metric labels.
    #[error(
        "module name `{0}`: use 1 to 64 letters, digits, `-`, `_` and `.`, starting with a letter or digit"
    )]
    BadName(String),
    /// Larger than the configured cap.
    #[error("the module is {size} bytes, more than the {max} bytes allowed (api.max_module_mb)")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The cap.
        max: usize,
    },
    /// Not a component the engine accepts.
    #[error(transparent)]
    Invalid(#[from] LoadError),
    /// No module has that name.
    #[error("no module is called `{0}`")]
    UnknownModule(String),
    /// The module has no such version.
    #[error("module `{name}` has no version {version} (latest: {latest})")]
    UnknownVersion {
        /// The module.
        name: String,
        /// The version asked for.
        version: u32,
        /// Its latest version.
        latest: u32,
    },
    /// The state directory could not be read (or created, at start-up).
    #[error("module store: {0}")]
    Io(String),
    /// A change could not be saved, so it was not made.
    #[error(
        "cannot write {path}: {error}; the state directory (state_dir) must be writable, and nothing was changed"
    )]
    Unwritable {
        /// The file that could not be written.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    modules: BTreeMap<String, Vec<ModuleVersion>>,
}

/// Stored modules, by name and version.
pub struct ModuleStore {
    blobs: PathBuf,
    /// Where the index is kept; `None` in a fleet, whose index is its modules topic.
    index_path: Option<PathBuf>,
    engine: Engine,
    max_bytes: usize,
    index: Mutex<Index>,
    compiled: Mutex<Compiled>,
}

impl std::fmt::Debug for ModuleStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleStore")
            .field("blobs", &self.blobs)
            .finish()
    }
}

impl ModuleStore {
    /// Opens (or creates) the store in `state_dir`; modules larger than `max_bytes` are refused.
    pub fn open(state_dir: &Path, engine: Engine, max_bytes: usize) -> Result<Self, StoreError> {
        let blobs = state_dir.join("modules");
        std::fs::create_dir_all(&blobs).map_err(|e| io_error(&blobs, e))?;
        let index_path = state_dir.join("modules.json");
        let index = match std::fs::read(&index_path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::Io(format!("{} is damaged: {e}", index_path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Index::default(),
            Err(e) => return Err(io_error(&index_path, e)),
        };
        Ok(ModuleStore {
            blobs,
            index_path: Some(index_path),
            engine,
            max_bytes,
            index: Mutex::new(index),
            compiled: Mutex::new(Compiled::default()),
        })
    }

    /// A store whose index lives elsewhere (a fleet's modules topic, applied with
    /// [`ModuleStore::insert`]): only module bytes are kept in `state_dir`, as a cache.
    pub fn cache(state_dir: &Path, engine: Engine, max_bytes: usize) -> Result<Self, StoreError> {
        let blobs = state_dir.join("modules");
        std::fs::create_dir_all(&blobs).map_err(|e| io_error(&blobs, e))?;
        Ok(ModuleStore {
            blobs,
            index_path: None,
            engine,
            max_bytes,
            index: Mutex::new(Index::default()),
            compiled: Mutex::new(Compiled::default()),
        })
    }

    /// Checks `bytes` as a module `name` (name, size, a component the engine runs) and
    /// compiles it; returns its hash, its exports, and the version it already has under
    /// `name`, if any.
    pub fn check(
        &self,
        name: &str,
        bytes: &[u8],
    ) -> Result<(String, Vec<String>, Option<ModuleVersion>), StoreError> {
        check_name(name)?;
        if bytes.len() > self.max_bytes {
            return Err(StoreError::TooLarge {
                size: bytes.len(),
                max: self.max_bytes,
            });
        }
        let sha256 = crate::engine::hex_sha256(bytes);
        if let Some(existing) = self.find(name, |v| v.sha256 == sha256) {
            return Ok((sha256, existing.exports.clone(), Some(existing)));
        }
        let module = self
            .compiled(&sha256)
            .map_or_else(|| self.engine.load(bytes), Ok)?;
        let exports = module.exports.clone();
        self.compiled.lock().unwrap().insert(&sha256, module);
        Ok((sha256, exports, None))
    }

    /// Applies a fleet's record of module `name` with `bytes` (already checked against
    /// `sha256` by the caller): the next version of `name` unless it has these bytes already.
    /// Versions are numbered in the order the records are applied, which is the topic's, so
    /// every member numbers them alike.
    pub fn insert(
        &self,
        name: &str,
        bytes: &[u8],
        uploaded_at: &str,
        exports: Vec<String>,
    ) -> Result<ModuleVersion, StoreError> {
        let sha256 = crate::engine::hex_sha256(bytes);
        if let Some(existing) = self.find(name, |v| v.sha256 == sha256) {
            return Ok(existing);
        }
        let blob = self.blob(&sha256);
        if !blob.exists() {
            write_atomically(&blob, bytes)?;
        }
        let mut index = self.index.lock().unwrap();
        let versions = index.modules.entry(name.to_string()).or_default();
        let version = ModuleVersion {
            version: versions.last().map_or(1, |v| v.version + 1),
            sha256,
            size: bytes.len() as u64,
            uploaded_at: uploaded_at.to_string(),
            exports,
        };
        versions.push(version.clone());
        Ok(version)
    }

    /// The largest module accepted, in bytes.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Validates, compiles and stores `bytes` as the next version of `name`. Bytes already
    /// stored under `name` are not stored twice: their version is returned with `false`.
    pub fn add(&self, name: &str, bytes: &[u8]) -> Result<(ModuleVersion, bool), StoreError> {
        let (sha256, exports, existing) = self.check(name, bytes)?;
        if let Some(existing) = existing {
            return Ok((existing, false));
        }
        let blob = self.blob(&sha256);
        if !blob.exists() {
            write_atomically(&blob, bytes)?;
        }
        let mut index = self.index.lock().unwrap();
        let versions = index.modules.get(name).map_or(&[][..], Vec::as_slice);
        // Another upload of the same bytes may have won the race while this one compiled.
        if let Some(existing) = versions.iter().find(|v| v.sha256 == sha256) {
            return Ok((existing.clone(), false));
        }
        let version = ModuleVersion {
            version: versions.last().map_or(1, |v| v.version + 1),
            sha256,
            size: bytes.len() as u64,
            uploaded_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            exports,
        };
        // Saved first, so that a failed write leaves the index in memory as it is on disk.
        let mut next = Index {
            modules: index.modules.clone(),
        };
        next.modules
            .entry(name.to_string())
            .or_default()
            .push(version.clone());
        let saved = serde_json::to_vec_pretty(&next).expect("index serialises");
        if let Some(path) = &self.index_path {
            write_atomically(path, &saved)?;
        }
        *index = next;
        Ok((version, true))
    }

    /// Every module with its versions, by name.
    pub fn list(&self) -> Vec<(String, Vec<ModuleVersion>)> {
        let index = self.index.lock().unwrap();
        index
            .modules
            .iter()
            .map(|(name, versions)| (name.clone(), versions.clone()))
            .collect()
    }

    /// The versions of `name`.
    pub fn versions(&self, name: &str) -> Result<Vec<ModuleVersion>, StoreError> {
        let index = self.index.lock().unwrap();
        index
            .modules
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::UnknownModule(name.to_string()))
    }

    /// Version `version` of `name`, compiled.
    pub fn get(&self, name: &str, version: u32) -> Result<(ModuleVersion, Module), StoreError> {
        let versions = self.versions(name)?;
        let found = versions
            .iter()
            .find(|v| v.version == version)
            .cloned()
            .ok_or_else(|| StoreError::UnknownVersion {
                name: name.to_string(),
                version,
                latest: versions.last().map_or(0, |v| v.version),
            })?;
        if let Some(module) = self.compiled(&found.sha256) {
            return Ok((found, module));
        }
        let blob = self.blob(&found.sha256);
        let bytes = std::fs::read(&blob).map_err(|e| io_error(&blob, e))?;
        if crate::engine::hex_sha256(&bytes) != found.sha256 {
            return Err(StoreError::Io(format!(
                "{} does not match its hash: the state directory was altered",
                blob.display()
            )));
        }
        let module = self.engine.load(&bytes)?;
        (self.compiled.lock().unwrap()).insert(&found.sha256, module.clone());
        Ok((found, module))
    }

    /// The bytes hashing to `sha256` if this member has them on disk intact.
    pub fn cached_bytes(&self, sha256: &str) -> Option<Vec<u8>> {
        let bytes = std::fs::read(self.blob(sha256)).ok()?;
        (crate::engine::hex_sha256(&bytes) == sha256).then_some(bytes)
    }

    fn find(&self, name: &str, matches: impl Fn(&ModuleVersion) -> bool) -> Option<ModuleVersion> {
        let index = self.index.lock().unwrap();
        index
            .modules
            .get(name)?
            .iter()
            .find(|v| matches(v))
            .cloned()
    }

    /// Drops the compiled modules whose hash `in_use` does not hold, but for the
    /// [`RECENTLY_USED`] used last: a version no slot runs is compiled again from its bytes
    /// when it is wanted, rather than kept in memory for ever.
    pub fn retain_compiled(&self, in_use: &std::collections::HashSet<String>) {
        self.compiled.lock().unwrap().retain(in_use);
    }

    /// How many compiled modules are held in memory.
    pub fn compiled_count(&self) -> usize {
        self.compiled.lock().unwrap().modules.len()
    }

    fn compiled(&self, sha256: &str) -> Option<Module> {
        self.compiled.lock().unwrap().get(sha256)
    }

    fn blob(&self, sha256: &str) -> PathBuf {
        self.blobs.join(format!("{sha256}.wasm"))
    }
}

/// How many compiled modules no slot runs stay in memory: the ones used last (just uploaded,
/// tried, or replaced by a deploy and so what a rollback returns to).
pub const RECENTLY_USED: usize = 4;

/// Compiled modules by hash, with when each was last used.
#[derive(Default)]
struct Compiled {
    modules: HashMap<String, (Module, u64)>,
    clock: u64,
}

impl Compiled {
    fn get(&mut self, sha256: &str) -> Option<Module> {
        self.clock += 1;
        let (module, used) = self.modules.get_mut(sha256)?;
        *used = self.clock;
        Some(module.clone())
    }

    fn insert(&mut self, sha256: &str, module: Module) {
        self.clock += 1;
        self.modules
            .insert(sha256.to_string(), (module, self.clock));
    }

    fn retain(&mut self, in_use: &std::collections::HashSet<String>) {
        let mut idle: Vec<(u64, String)> = (self.modules.iter())
            .filter(|(sha256, _)| !in_use.contains(*sha256))
            .map(|(sha256, (_, used))| (*used, sha256.clone()))
            .collect();
        idle.sort_unstable_by_key(|(used, _)| std::cmp::Reverse(*used));
        for (_, sha256) in idle.into_iter().skip(RECENTLY_USED) {
            self.modules.remove(&sha256);
        }
    }
}

/// Module names appear in URLs, file names of nothing, logs and metric labels.
pub(crate) fn check_name(name: &str) -> Result<(), StoreError> {
    let valid = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if valid {
        Ok(())
    } else {
        Err(StoreError::BadName(name.to_string()))
    }
}

fn io_error(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Io(format!("{}: {e}", path.display()))
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one: a
/// temporary file beside it (a name of its own, so that two runtimes sharing a state directory
/// never rename each other's half-written file), flushed to disk, renamed over `path`, and the
/// rename flushed too.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let write = || -> std::io::Result<()> {
        let mut temporary = tempfile::NamedTempFile::new_in(dir)?;
        temporary.write_all(bytes)?;
        temporary.as_file().sync_all()?;
        temporary.persist(path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|error| StoreError::Unwritable {
        path: path.to_path_buf(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Limits;

    fn guest(name: &str) -> Vec<u8> {
        crate::engine::tests::guest_bytes(name)
    }

    #[test]
    fn versions_count_up_per_name_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::new(Limits::default()).unwrap();
        let store = ModuleStore::open(dir.path(), engine.clone(), 64 << 20).unwrap();
        let (v1, new) = store.add("tz", &guest("tz_normaliser")).unwrap();
        assert_eq!((v1.version, new), (1, true));
        assert_eq!(
            v1.exports,
            [crate::engine::COLUMNAR_EXPORT, crate::engine::EXPORT]
        );
        let (again, new) = store.add("tz", &guest("tz_normaliser")).unwrap();
        assert_eq!((again, new), (v1.clone(), false));
        let (v2, _) = store.add("tz", &guest("test_guest")).unwrap();
        assert_eq!(v2.version, 2);
        drop(store);

        let store = ModuleStore::open(dir.path(), engine, 64 << 20).unwrap();
        assert_eq!(store.versions("tz").unwrap(), vec![v1, v2.clone()]);
        let (found, module) = store.get("tz", 2).unwrap();
        assert_eq!((found, module.sha256), (v2.clone(), v2.sha256));
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModuleStore::open(dir.path(), Engine::new(Limits::default()).unwrap(), 4 << 20)
            .unwrap();
        let error = |name: &str, bytes: &[u8]| store.add(name, bytes).unwrap_err().to_string();
        assert!(error("../etc", b"\0asm").starts_with("module name `../etc`"));
        assert!(error("big", &vec![0; 5 << 20]).contains("more than the 4194304 bytes allowed"));
        assert!(error("text", b"hello, world").starts_with("not a WebAssembly file"));
        assert_eq!(
            store.get("nope", 1).unwrap_err().to_string(),
            "no module is called `nope`"
        );
        store.add("tz", &guest("tz_normaliser")).unwrap();
        assert_eq!(
            store.get("tz", 7).unwrap_err().to_string(),
            "module `tz` has no version 7 (latest: 1)"
        );
        assert!(store.list().iter().all(|(name, _)| name == "tz"));
    }
}
