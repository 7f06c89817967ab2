//! Keyed state, event time and timers, for stateful transforms ([`crate::StatefulTransform`]).
//!
//! The runtime keeps one state per pipeline task and transform slot. A call's writes are kept
//! when it returns and dropped when it traps, together with the timers it set. Keys and values
//! are bytes; [`get_json`] and [`put_json`] store serde values; [`ValueState`] (a typed value
//! per key) and [`MapState`] (a typed map per key) keep each kind of state under its own name.
//!
//! Event time is a record's timestamp unless the transform reports its own with [`observe`]
//! (typically from a field of the record); from the first [`observe`] on, timestamps no longer
//! count. Stream time, the highest event time seen, only moves forward. After each batch, the
//! timers at or before it fire: the runtime calls [`crate::StatefulTransform::on_timer`].
//!
//! Natively (in unit tests), state and timers live in memory per test thread; stream time moves
//! only with [`observe`] and [`crate::testing::advance`], which also fires the timers.

use crate::Error;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::marker::PhantomData;

#[cfg(target_arch = "wasm32")]
use crate::__private::stateful_bindings::sluice::transform::{
    state as host, timers as host_timers,
};

/// The value of `key`, or `None`.
pub fn get(key: &[u8]) -> Option<Vec<u8>> {
    #[cfg(target_arch = "wasm32")]
    return host::get(key);
    #[cfg(not(target_arch = "wasm32"))]
    native::with(|s| s.entries.get(key).cloned())
}

/// Sets `key` to `value`.
pub fn put(key: &[u8], value: &[u8]) {
    #[cfg(target_arch = "wasm32")]
    host::put(key, value);
    #[cfg(not(target_arch = "wasm32"))]
    native::with(|s| s.entries.insert(key.to_vec(), value.to_vec()));
}

/// Removes `key`; nothing happens when it is absent.
pub fn delete(key: &[u8]) {
    #[cfg(target_arch = "wasm32")]
    host::delete(key);
    #[cfg(not(target_arch = "wasm32"))]
    native::with(|s| s.entries.remove(key));
}

/// The entries whose keys start with `prefix`, in key order.
pub fn scan_prefix(prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let end = prefix_end(prefix);
    let mut entries = Vec::new();
    let mut start = prefix.to_vec();
    loop {
        let page = scan(&start, end.as_deref(), PAGE);
        let full = page.len() == PAGE as usize;
        if let Some((last, _)) = page.last() {
            start = last.clone();
            start.push(0);
        }
        entries.extend(page);
        if !full {
            return entries;
        }
    }
}

/// Entries read per call to the host by [`scan_prefix`].
const PAGE: u32 = 256;

/// The entries with `start <= key` and, with an `end`, `key < end`, in key order, at most
/// `limit`.
pub fn scan(start: &[u8], end: Option<&[u8]>, limit: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
    #[cfg(target_arch = "wasm32")]
    return host::scan(start, end, limit);
    #[cfg(not(target_arch = "wasm32"))]
    native::with(|s| {
        use std::ops::Bound;
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        s.entries
            .range::<[u8], _>((Bound::Included(start), upper))
            .take(limit as usize)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
}

/// The value of `key` parsed as JSON into `T`, or `None`.
pub fn get_json<T: DeserializeOwned>(key: &[u8]) -> Result<Option<T>, Error> {
    match get(key) {
        None => Ok(None),
        Some(value) => serde_json::from_slice(&value).map(Some).map_err(|e| {
            Error::new(format!(
                "state: the value of key `{}` is not what this transform stores: {e}",
                String::from_utf8_lossy(key)
            ))
        }),
    }
}

/// Sets `key` to `value` serialised as JSON.
pub fn put_json<T: Serialize + ?Sized>(key: &[u8], value: &T) -> Result<(), Error> {
    let bytes = serde_json::to_vec(value)
        .map_err(|e| Error::new(format!("state: cannot serialise a value as JSON: {e}")))?;
    put(key, &bytes);
    Ok(())
}

/// A typed value per key, kept under `name` (distinct per state of a transform).
#[derive(Debug, Clone)]
pub struct ValueState<T> {
    name: Vec<u8>,
    _value: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> ValueState<T> {
    /// Values named `name`.
    pub fn new(name: &str) -> Self {
        ValueState {
            name: name.as_bytes().to_vec(),
            _value: PhantomData,
        }
    }

    /// `key`'s value, or `None`.
    pub fn get(&self, key: &[u8]) -> Result<Option<T>, Error> {
        get_json(&namespaced(&self.name, key)?)
    }

    /// Sets `key`'s value.
    pub fn put(&self, key: &[u8], value: &T) -> Result<(), Error> {
        put_json(&namespaced(&self.name, key)?, value)
    }

    /// Removes `key`'s value.
    pub fn delete(&self, key: &[u8]) -> Result<(), Error> {
        delete(&namespaced(&self.name, key)?);
        Ok(())
    }

    /// Replaces `key`'s value with what `change` makes of it (`None` removes it); returns the
    /// new value.
    pub fn update(
        &self,
        key: &[u8],
        change: impl FnOnce(Option<T>) -> Option<T>,
    ) -> Result<Option<T>, Error> {
        let new = change(self.get(key)?);
        match &new {
            Some(value) => self.put(key, value)?,
            None => self.delete(key)?,
        }
        Ok(new)
    }
}

/// A typed map per key (for example the orders seen per customer, by order id), kept under
/// `name`. Entries are listed in the order of their keys' JSON text.
#[derive(Debug, Clone)]
pub struct MapState<K, V> {
    name: Vec<u8>,
    _entries: PhantomData<fn() -> (K, V)>,
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> MapState<K, V> {
    /// Maps named `name`.
    pub fn new(name: &str) -> Self {
        MapState {
            name: name.as_bytes().to_vec(),
            _entries: PhantomData,
        }
    }

    /// The value of `entry` in `key`'s map, or `None`.
    pub fn get(&self, key: &[u8], entry: &K) -> Result<Option<V>, Error> {
        get_json(&self.entry_key(key, entry)?)
    }

    /// Sets `entry` in `key`'s map.
    pub fn put(&self, key: &[u8], entry: &K, value: &V) -> Result<(), Error> {
        put_json(&self.entry_key(key, entry)?, value)
    }

    /// Removes `entry` from `key`'s map.
    pub fn delete(&self, key: &[u8], entry: &K) -> Result<(), Error> {
        delete(&self.entry_key(key, entry)?);
        Ok(())
    }

    /// Every entry of `key`'s map.
    pub fn entries(&self, key: &[u8]) -> Result<Vec<(K, V)>, Error> {
        let prefix = namespaced(&self.name, key)?;
        scan_prefix(&prefix)
            .into_iter()
            .map(|(k, v)| {
                let unreadable = |e: serde_json::Error| {
                    Error::new(format!("state: an entry is unreadable: {e}"))
                };
                Ok((
                    serde_json::from_slice(&k[prefix.len()..]).map_err(unreadable)?,
                    serde_json::from_slice(&v).map_err(unreadable)?,
                ))
            })
            .collect()
    }

    /// Removes `key`'s whole map.
    pub fn clear(&self, key: &[u8]) -> Result<(), Error> {
        for (k, _) in scan_prefix(&namespaced(&self.name, key)?) {
            delete(&k);
        }
        Ok(())
    }

    fn entry_key(&self, key: &[u8], entry: &K) -> Result<Vec<u8>, Error> {
        let mut state_key = namespaced(&self.name, key)?;
        serde_json::to_writer(&mut state_key, entry)
            .map_err(|e| Error::new(format!("state: cannot serialise a map key as JSON: {e}")))?;
        Ok(state_key)
    }
}

/// `name`, `key`'s length (2 bytes) and `key`, so that names and keys never run into each other.
pub(crate) fn namespaced(name: &[u8], key: &[u8]) -> Result<Vec<u8>, Error> {
    let len = u16::try_from(key.len()).map_err(|_| {
        Error::new(format!(
            "a state key is at most 65535 bytes; this one is {}",
            key.len()
        ))
    })?;
    let mut state_key = Vec::with_capacity(name.len() + 2 + key.len());
    state_key.extend_from_slice(name);
    state_key.extend_from_slice(&len.to_be_bytes());
    state_key.extend_from_slice(key);
    Ok(state_key)
}

/// A timer that fired: the key it was set for and its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    /// The key it was set for.
    pub key: Vec<u8>,
    /// Its event time, milliseconds since the Unix epoch.
    pub at: i64,
}

/// Sets a timer for `key` at event time `at`; setting the same one again keeps one.
pub fn set_timer(key: &[u8], at: i64) {
    #[cfg(target_arch = "wasm32")]
    host_timers::register(key, at);
    #[cfg(not(target_arch = "wasm32"))]
    native::with(|s| s.timers.insert((at, key.to_vec())));
}

/// Removes the timer for `key` at `at`, if any.
pub fn cancel_timer(key: &[u8], at: i64) {
    #[cfg(target_arch = "wasm32")]
    host_timers::cancel(key, at);
    #[cfg(not(target_arch = "wasm32"))]
    native::with(|s| s.timers.remove(&(at, key.to_vec())));
}

/// The stream time: the highest event time seen so far, or `None` before any.
pub fn stream_time() -> Option<i64> {
    #[cfg(target_arch = "wasm32")]
    return host_timers::stream_time();
    #[cfg(not(target_arch = "wasm32"))]
    native::with(|s| s.stream_time)
}

/// Reports the event time of the record being handled; stream time moves up to it.
pub fn observe(event_time: i64) {
    #[cfg(target_arch = "wasm32")]
    host_timers::observe(event_time);
    #[cfg(not(target_arch = "wasm32"))]
    native::with(|s| s.advance(event_time));
}

/// The smallest key after every key starting with `prefix`, or `None` if there is none.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// State and timers of a test thread (unused in a component, where the runtime keeps them).
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) mod native {
    use std::cell::RefCell;
    use std::collections::{BTreeMap, BTreeSet};

    #[derive(Default)]
    pub(crate) struct NativeState {
        pub entries: BTreeMap<Vec<u8>, Vec<u8>>,
        pub timers: BTreeSet<(i64, Vec<u8>)>,
        pub stream_time: Option<i64>,
    }

    impl NativeState {
        pub fn advance(&mut self, time: i64) {
            if self.stream_time.is_none_or(|now| time > now) {
                self.stream_time = Some(time);
            }
        }

        /// Takes the timers at or before the stream time, earliest first.
        pub fn take_due(&mut self) -> Vec<super::Timer> {
            let Some(now) = self.stream_time else {
                return Vec::new();
            };
            let mut due = Vec::new();
            while let Some((at, _)) = self.timers.first() {
                if *at > now {
                    break;
                }
                let (at, key) = self.timers.pop_first().expect("not empty");
                due.push(super::Timer { key, at });
            }
            due
        }
    }

    thread_local! {
        static STATE: RefCell<NativeState> = RefCell::default();
    }

    pub(crate) fn with<R>(f: impl FnOnce(&mut NativeState) -> R) -> R {
        STATE.with(|s| f(&mut s.borrow_mut()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_scans_read_every_page_and_stop_at_the_prefix() {
        crate::testing::reset_state();
        for i in 0..600u32 {
            put(&[b"a:".as_slice(), &i.to_be_bytes()].concat(), b"x");
        }
        put(b"a;", b"after");
        put(b"a", b"before");
        assert_eq!(scan_prefix(b"a:").len(), 600);
        assert_eq!(prefix_end(&[1, 255]), Some(vec![2]));
        assert_eq!(prefix_end(&[255]), None);
        put_json(b"n", &41).unwrap();
        assert_eq!(get_json::<i32>(b"n").unwrap(), Some(41));
        assert!(get_json::<String>(b"n").is_err());
        delete(b"n");
        assert_eq!(get(b"n"), None);
    }

    #[test]
    fn typed_values_and_maps_keep_apart_by_name_and_key() {
        crate::testing::reset_state();
        let totals = ValueState::<f64>::new("totals");
        let counts = ValueState::<u32>::new("counts");
        totals.put(b"c1", &2.5).unwrap();
        assert_eq!(
            totals.update(b"c1", |t| t.map(|t| t + 1.0)).unwrap(),
            Some(3.5)
        );
        assert_eq!(counts.get(b"c1").unwrap(), None, "another name");
        assert_eq!(totals.get(b"c2").unwrap(), None, "another key");
        totals.update(b"c1", |_| None).unwrap();
        assert_eq!(totals.get(b"c1").unwrap(), None);

        let orders = MapState::<String, u32>::new("orders");
        orders.put(b"c1", &"o2".to_string(), &20).unwrap();
        orders.put(b"c1", &"o1".to_string(), &10).unwrap();
        orders.put(b"c10", &"o9".to_string(), &90).unwrap();
        assert_eq!(
            orders.entries(b"c1").unwrap(),
            vec![("o1".to_string(), 10), ("o2".to_string(), 20)],
            "only c1's, not c10's (a key prefix of the other)"
        );
        orders.delete(b"c1", &"o1".to_string()).unwrap();
        assert_eq!(orders.get(b"c1", &"o2".to_string()).unwrap(), Some(20));
        orders.clear(b"c1").unwrap();
        assert!(orders.entries(b"c1").unwrap().is_empty());
        assert_eq!(orders.entries(b"c10").unwrap().len(), 1);
    }
}
