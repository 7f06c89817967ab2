//! Lookup tables: the latest value per key of a Kafka topic, read by transforms through the
//! contract's `tables` import. Each pipeline gets only the tables it declares.
//!
//! A table's memory is capped: keys and values are counted (plus a fixed overhead per entry) and
//! an update that would pass the cap is refused and fails the table, which stops its pipeline.
//! A join against a silently incomplete table would give wrong answers, so stopping, with an
//! error that names the table and the cap to raise, is the safe outcome.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};

/// Bytes counted per entry on top of its key and value: the map's own bookkeeping.
const ENTRY_OVERHEAD: usize = 64;

/// One table.
#[derive(Debug)]
pub struct Table {
    /// Its name, as transforms pass it to `lookup`.
    pub name: String,
    /// The most memory it may use, in bytes.
    pub max_bytes: usize,
    entries: RwLock<HashMap<Vec<u8>, Vec<u8>>>,
    bytes: AtomicUsize,
    failure: Mutex<Option<String>>,
    failed: AtomicBool,
}

impl Table {
    /// An empty table.
    pub fn new(name: &str, max_bytes: usize) -> Self {
        Table {
            name: name.to_string(),
            max_bytes,
            entries: RwLock::new(HashMap::new()),
            bytes: AtomicUsize::new(0),
            failure: Mutex::new(None),
            failed: AtomicBool::new(false),
        }
    }

    /// Sets `key` to `value`, or deletes it for `None` (a tombstone). Refuses, and fails the
    /// table, an update that would pass its memory cap.
    pub fn apply(&self, key: &[u8], value: Option<&[u8]>) -> Result<(), String> {
        let mut entries = self.entries.write().unwrap();
        let old = entries
            .get(key)
            .map_or(0, |v| v.len() + key.len() + ENTRY_OVERHEAD);
        let new = value.map_or(0, |v| v.len() + key.len() + ENTRY_OVERHEAD);
        let bytes = self.bytes.load(Relaxed) - old + new;
        if bytes > self.max_bytes {
            let error = format!(
                "table `{}` would grow past its cap of {} MiB ({} entries so far); raise its max_mb",
                self.name,
                self.max_bytes >> 20,
                entries.len()
            );
            self.fail(error.clone());
            return Err(error);
        }
        match value {
            Some(value) => entries.insert(key.to_vec(), value.to_vec()),
            None => entries.remove(key),
        };
        self.bytes.store(bytes, Relaxed);
        Ok(())
    }

    /// The latest value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.entries.read().unwrap().get(key).cloned()
    }

    /// How many keys it holds.
    pub fn len(&self) -> usize {
        self.entries.read().unwrap().len()
    }

    /// Whether it holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The memory it is counted as using.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Relaxed)
    }

    /// Marks the table unusable; its pipeline stops with `error`.
    pub fn fail(&self, error: String) {
        self.failure.lock().unwrap().get_or_insert(error);
        self.failed.store(true, Relaxed);
    }

    /// Why the table failed, if it did.
    pub fn failure(&self) -> Option<String> {
        if !self.failed.load(Relaxed) {
            return None;
        }
        self.failure.lock().unwrap().clone()
    }
}

/// The tables one pipeline declares; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Tables(Arc<HashMap<String, Arc<Table>>>);

impl Tables {
    /// These tables.
    pub fn new(tables: impl IntoIterator<Item = Arc<Table>>) -> Self {
        Tables(Arc::new(
            tables.into_iter().map(|t| (t.name.clone(), t)).collect(),
        ))
    }

    /// What a transform's `lookup` gets: the value, none, or why the table cannot be read.
    pub fn lookup(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        match self.0.get(table) {
            Some(t) => Ok(t.get(key)),
            None if self.0.is_empty() => Err(format!(
                "this pipeline declares no table named `{table}` (it declares none)"
            )),
            None => {
                let mut names: Vec<&str> = self.0.keys().map(String::as_str).collect();
                names.sort();
                Err(format!(
                    "this pipeline declares no table named `{table}` (it declares: {})",
                    names.join(", ")
                ))
            }
        }
    }

    /// Every table.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Table>> {
        self.0.values()
    }

    /// The first failure among the tables.
    pub fn failure(&self) -> Option<String> {
        self.0.values().find_map(|t| t.failure())
    }

    /// Tables read from files of JSON lines `{"key": ..., "value": ...}`, for `sluice try`. A
    /// string key or value is taken as its text; a null value deletes the key; any other value
    /// is stored as its JSON text.
    pub fn from_files(
        files: &[(String, std::path::PathBuf)],
        max_bytes: usize,
    ) -> anyhow::Result<Tables> {
        let mut tables = Vec::new();
        for (name, path) in files {
            let table = Table::new(name, max_bytes);
            let text = std::fs::read_to_string(path).map_err(|e| {
                anyhow::anyhow!("table `{name}`: cannot read {}: {e}", path.display())
            })?;
            for (n, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let at = || format!("table `{name}`: {} line {}", path.display(), n + 1);
                #[derive(serde::Deserialize)]
                struct Entry<'a> {
                    #[serde(borrow)]
                    key: Option<&'a serde_json::value::RawValue>,
                    #[serde(borrow)]
                    value: Option<&'a serde_json::value::RawValue>,
                }
                let entry: Entry<'_> =
                    serde_json::from_str(line).map_err(|e| anyhow::anyhow!("{}: {e}", at()))?;
                // Strings are taken as their text, anything else as its exact JSON text.
                let text = |raw: &serde_json::value::RawValue| match serde_json::from_str::<String>(
                    raw.get(),
                ) {
                    Ok(s) => s.into_bytes(),
                    Err(_) => raw.get().as_bytes().to_vec(),
                };
                let key = match entry.key {
                    Some(raw) if raw.get() != "null" => text(raw),
                    _ => anyhow::bail!("{}: needs a \"key\"", at()),
                };
                let value = entry.value.filter(|raw| raw.get() != "null").map(text);
                table
                    .apply(&key, value.as_deref())
                    .map_err(|e| anyhow::anyhow!("{}: {e}", at()))?;
            }
            tables.push(Arc::new(table));
        }
        Ok(Tables::new(tables))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_value_wins_and_tombstones_delete() {
        let t = Table::new("customers", 1 << 20);
        t.apply(b"5", Some(b"fred")).unwrap();
        t.apply(b"5", Some(b"frederick")).unwrap();
        t.apply(b"7", Some(b"sue")).unwrap();
        t.apply(b"7", None).unwrap();
        assert_eq!(t.get(b"5").as_deref(), Some(&b"frederick"[..]));
        assert_eq!(t.get(b"7"), None);
        assert_eq!(t.len(), 1);
        assert_eq!(t.bytes(), 1 + 9 + ENTRY_OVERHEAD);
    }

    #[test]
    fn the_cap_refuses_growth_and_fails_the_table() {
        let t = Table::new("small", 200);
        t.apply(b"a", Some(&[0; 50])).unwrap();
        let error = t.apply(b"b", Some(&[0; 100])).unwrap_err();
        assert!(
            error.starts_with("table `small` would grow past its cap"),
            "{error}"
        );
        assert_eq!(t.failure(), Some(error));
        assert_eq!(t.get(b"b"), None, "the refused update is not applied");
    }

    #[test]
    fn lookups_name_the_declared_tables() {
        let tables = Tables::new([Arc::new(Table::new("customers", 1 << 20))]);
        assert_eq!(tables.lookup("customers", b"1"), Ok(None));
        assert_eq!(
            tables.lookup("orders", b"1"),
            Err("this pipeline declares no table named `orders` (it declares: customers)".into())
        );
        assert!(
            Tables::default()
                .lookup("x", b"1")
                .unwrap_err()
                .ends_with("(it declares none)")
        );
    }

    #[test]
    fn table_files_take_text_keys_json_values_and_null_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("customers.jsonl");
        std::fs::write(
            &path,
            "{\"key\": \"5\", \"value\": {\"name\":\"fred\",\"age\":34}}\n{\"key\": 7, \"value\": \"sue\"}\n\n{\"key\": \"9\", \"value\": 1}\n{\"key\": \"9\", \"value\": null}\n",
        )
        .unwrap();
        let tables = Tables::from_files(&[("customers".into(), path.clone())], 1 << 20).unwrap();
        assert_eq!(
            tables.lookup("customers", b"5").unwrap().unwrap(),
            br#"{"name":"fred","age":34}"#
        );
        assert_eq!(tables.lookup("customers", b"7").unwrap().unwrap(), b"sue");
        assert_eq!(tables.lookup("customers", b"9").unwrap(), None);
        std::fs::write(&path, "{\"value\": 1}\n").unwrap();
        let error = Tables::from_files(&[("customers".into(), path)], 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(error.ends_with("line 1: needs a \"key\""), "{error}");
    }
}
