//! Look keys up in the pipeline's lookup tables: the latest value per key of a Kafka topic.
//!
//! Natively (in unit tests) lookups read tables filled with [`crate::testing::set_table`].

use crate::Error;
use serde::de::DeserializeOwned;

/// The latest value of `key` in `table`, or `None` when the key is absent or was deleted. An
/// error when the pipeline declares no table called `table`.
pub fn lookup(table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
    #[cfg(target_arch = "wasm32")]
    let found = crate::wit::tables::lookup(table, key);
    #[cfg(not(target_arch = "wasm32"))]
    let found = {
        let _ = crate::wit::tables::lookup; // the host's import
        crate::testing::fake_lookup(table, key)
    };
    found.map_err(Error::new)
}

/// Like [`lookup`], with the value parsed as JSON into `T` (`serde_json::Value` for free-form).
pub fn lookup_json<T: DeserializeOwned>(table: &str, key: &[u8]) -> Result<Option<T>, Error> {
    match lookup(table, key)? {
        None => Ok(None),
        Some(value) => serde_json::from_slice(&value).map(Some).map_err(|e| {
            Error::new(format!(
                "table `{table}`: the value of key `{}` is not valid JSON: {e}",
                String::from_utf8_lossy(key)
            ))
        }),
    }
}
