//! A stateful task's keyed state, timers and stream time, as the contract's `state` and `timers`
//! interfaces present them (`wit/transform.wit`), over a [`KeyValueStore`].
//!
//! Everything a task keeps lives in one store, so that one changelog can carry it: the guest's
//! entries, its timers and the stream time, each under its own one-byte prefix. Writes made
//! during a call to the guest stay pending until the call ends: [`TaskState::commit`] keeps them
//! (and returns them, for the changelog) when the call returned, [`TaskState::rollback`] drops
//! them when it trapped, since the host then replays its records one at a time.

use std::collections::BTreeMap;
use std::ops::Bound;

/// Prefix of the guest's entries.
const ENTRY: u8 = 0;
/// Prefix of timers: the time (order-preserving), then the guest's key.
const TIMER: u8 = 1;
/// The one key holding the stream time.
const STREAM_TIME: &[u8] = &[2];

/// Changes to a store, by key, in key order: a value to put, or `None` to delete.
pub type Changes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// An ordered key-value store that a task's state lives in.
pub trait KeyValueStore: Send {
    /// The value of `key`, or none.
    fn get(&self, key: &[u8]) -> Option<Vec<u8>>;
    /// Entries with `start <= key` and, with an `end`, `key < end`, in key order, at most
    /// `limit`.
    fn scan(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Vec<(Vec<u8>, Vec<u8>)>;
    /// Applies `changes` together.
    fn apply(&mut self, changes: &Changes);
    /// The first read or write that failed (a disk error), if any: the task's state can no
    /// longer be trusted, so its partition stops before anything more is committed.
    fn failure(&self) -> Option<String> {
        None
    }
}

impl<S: KeyValueStore + ?Sized> KeyValueStore for Box<S> {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        (**self).get(key)
    }
    fn scan(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        (**self).scan(start, end, limit)
    }
    fn apply(&mut self, changes: &Changes) {
        (**self).apply(changes)
    }
    fn failure(&self) -> Option<String> {
        (**self).failure()
    }
}

/// A task's state as instances share it: it outlives an instance discarded after a trap.
pub type SharedTask = std::sync::Arc<std::sync::Mutex<TaskState<Box<dyn KeyValueStore>>>>;

/// Locks a task's state (a guest that panicked while holding it left nothing half-written:
/// writes stay pending until a call returns).
pub fn lock(task: &SharedTask) -> std::sync::MutexGuard<'_, TaskState<Box<dyn KeyValueStore>>> {
    task.lock().unwrap_or_else(|e| e.into_inner())
}

/// A fresh task state in memory.
pub fn in_memory_task() -> SharedTask {
    std::sync::Arc::new(std::sync::Mutex::new(TaskState::new(Box::new(
        MemoryStore::default(),
    ))))
}

/// A store in memory: for `sluice try` and tests.
#[derive(Debug, Default)]
pub struct MemoryStore(BTreeMap<Vec<u8>, Vec<u8>>);

impl KeyValueStore for MemoryStore {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.get(key).cloned()
    }

    fn scan(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        self.0
            .range::<[u8], _>((Bound::Included(start), upper))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn apply(&mut self, changes: &Changes) {
        for (key, value) in changes {
            match value {
                Some(value) => self.0.insert(key.clone(), value.clone()),
                None => self.0.remove(key),
            };
        }
    }
}

/// A timer that is due: the guest's key and the time it was set for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueTimer {
    /// The key it was registered for.
    pub key: Vec<u8>,
    /// The event time it was registered at, milliseconds since the Unix epoch.
    pub at: i64,
}

/// One task's state over `S`.
pub struct TaskState<S> {
    store: S,
    /// Writes of the call under way, not yet in `store`.
    pending: Changes,
    /// The stream time, with the call under way's event times.
    stream_time: Option<i64>,
    /// Whether the guest reports event times itself (`observe`): record timestamps then no
    /// longer count.
    observes: bool,
    /// Committed changes not yet handed to the changelog, the latest per key.
    unlogged: Changes,
}

impl<S: KeyValueStore> TaskState<S> {
    /// The state kept in `store` (empty, or restored).
    pub fn new(store: S) -> Self {
        let stream_time = store.get(STREAM_TIME).and_then(|v| decode_stream_time(&v));
        TaskState {
            store,
            pending: Changes::new(),
            stream_time,
            observes: false,
            unlogged: Changes::new(),
        }
    }

    /// See [`KeyValueStore::failure`].
    pub fn failure(&self) -> Option<String> {
        self.store.failure()
    }

    /// The guest's value for `key`.
    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let key = entry_key(key);
        match self.pending.get(&key) {
            Some(pending) => pending.clone(),
            None => self.store.get(&key),
        }
    }

    /// Sets the guest's `key` to `value`.
    pub fn put(&mut self, key: &[u8], value: Vec<u8>) {
        self.pending.insert(entry_key(key), Some(value));
    }

    /// Removes the guest's `key`.
    pub fn delete(&mut self, key: &[u8]) {
        self.pending.insert(entry_key(key), None);
    }

    /// The guest's entries from `start` up to `end` (excluded), in key order, at most `limit`.
    pub fn scan(&self, start: &[u8], end: Option<&[u8]>, limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let end = match end {
            Some(end) => entry_key(end),
            None => vec![ENTRY + 1],
        };
        self.merged_scan(&entry_key(start), &end, limit)
            .into_iter()
            .map(|(mut k, v)| {
                k.remove(0);
                (k, v)
            })
            .collect()
    }

    /// Sets a timer for `key` at `at`.
    pub fn register_timer(&mut self, key: &[u8], at: i64) {
        self.pending.insert(timer_key(at, key), Some(Vec::new()));
    }

    /// Removes the timer for `key` at `at`, if any.
    pub fn cancel_timer(&mut self, key: &[u8], at: i64) {
        self.pending.insert(timer_key(at, key), None);
    }

    /// The stream time: the highest event time seen, or none.
    pub fn stream_time(&self) -> Option<i64> {
        self.stream_time
    }

    /// The guest reports the event time of the record it is handling; from now on record
    /// timestamps no longer count.
    pub fn observe(&mut self, event_time: i64) {
        self.observes = true;
        self.advance(event_time);
    }

    /// A record's timestamp, which is its event time unless the guest reports its own.
    pub fn observe_timestamp(&mut self, timestamp: i64) {
        if !self.observes {
            self.advance(timestamp);
        }
    }

    /// Moves stream time to `time` if that is later, e.g. to the end of time once the input
    /// has ended, so that every timer fires.
    pub fn advance(&mut self, time: i64) {
        if self.stream_time.is_none_or(|now| time > now) {
            self.stream_time = Some(time);
            self.pending
                .insert(STREAM_TIME.to_vec(), Some(time.to_be_bytes().to_vec()));
        }
    }

    /// Takes up to `limit` timers at or before the stream time, earliest first (and, with
    /// `after`, only those that come after it); they will not fire again unless registered
    /// again. Passing the last timer taken as `after` makes a round of firing end: a timer that
    /// a handler registers again at or before the stream time waits for the next round.
    pub fn take_due_timers(&mut self, after: Option<&DueTimer>, limit: usize) -> Vec<DueTimer> {
        let Some(now) = self.stream_time else {
            return Vec::new();
        };
        let end = match now.checked_add(1) {
            Some(after) => timer_key(after, &[]),
            None => vec![TIMER + 1],
        };
        let start = after.map_or(vec![TIMER], |t| next_key(&timer_key(t.at, &t.key)));
        let due: Vec<DueTimer> = self
            .merged_scan(&start, &end, limit)
            .into_iter()
            .map(|(key, _)| DueTimer {
                at: decode_timer_time(&key[1..9]),
                key: key[9..].to_vec(),
            })
            .collect();
        for timer in &due {
            self.cancel_timer(&timer.key, timer.at);
        }
        due
    }

    /// Keeps the writes of the call that just returned, for the store and the changelog.
    pub fn commit(&mut self) {
        let changes = std::mem::take(&mut self.pending);
        self.store.apply(&changes);
        self.unlogged.extend(changes);
    }

    /// The changes committed since the last time, the latest per key, for the changelog:
    /// store keys and values as they are, a delete as `None`.
    pub fn take_changelog(&mut self) -> Changes {
        std::mem::take(&mut self.unlogged)
    }

    /// Drops the writes of the call that just trapped.
    pub fn rollback(&mut self) {
        self.pending.clear();
        self.stream_time = self
            .store
            .get(STREAM_TIME)
            .and_then(|v| decode_stream_time(&v));
    }

    /// Pending writes merged over the store, from `start` up to `end` (excluded), at most
    /// `limit`. The store is read in pages, since entries deleted by pending writes take room in
    /// them.
    fn merged_scan(&self, start: &[u8], end: &[u8], limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        if limit == 0 || start >= end {
            return out;
        }
        let mut pending = self
            .pending
            .range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))
            .peekable();
        let push = |out: &mut Vec<_>, key: Vec<u8>, value: Option<Vec<u8>>| {
            if let Some(value) = value {
                out.push((key, value));
            }
            out.len() >= limit
        };
        let page_size = limit.clamp(16, 1024);
        let mut from = start.to_vec();
        loop {
            let page = self.store.scan(&from, Some(end), page_size);
            let last_page = page.len() < page_size;
            for (key, value) in page {
                from = next_key(&key);
                // Pending writes of keys before this one come first.
                while let Some((pk, pv)) = pending.next_if(|(pk, _)| **pk < key) {
                    if push(&mut out, pk.clone(), pv.clone()) {
                        return out;
                    }
                }
                // A pending write of this very key replaces the stored value.
                let value = match pending.next_if(|(pk, _)| **pk == key) {
                    Some((_, pv)) => pv.clone(),
                    None => Some(value),
                };
                if push(&mut out, key, value) {
                    return out;
                }
            }
            if last_page {
                break;
            }
        }
        for (pk, pv) in pending {
            if push(&mut out, pk.clone(), pv.clone()) {
                break;
            }
        }
        out
    }
}

fn entry_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(ENTRY);
    k.extend_from_slice(key);
    k
}

/// Timers sort by time, then key: the time is stored big-endian with its sign bit flipped.
fn timer_key(at: i64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 9);
    k.push(TIMER);
    k.extend_from_slice(&((at as u64) ^ (1 << 63)).to_be_bytes());
    k.extend_from_slice(key);
    k
}

fn decode_timer_time(bytes: &[u8]) -> i64 {
    let raw = u64::from_be_bytes(bytes.try_into().expect("8 bytes"));
    (raw ^ (1 << 63)) as i64
}

fn decode_stream_time(bytes: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(bytes.try_into().ok()?))
}

/// The smallest key after `key`.
fn next_key(key: &[u8]) -> Vec<u8> {
    let mut next = key.to_vec();
    next.push(0);
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<&[u8]> {
        entries.iter().map(|(k, _)| k.as_slice()).collect()
    }

    #[test]
    fn reads_see_pending_writes_and_a_rollback_forgets_them() {
        let mut state = TaskState::new(MemoryStore::default());
        state.put(b"a", b"1".to_vec());
        state.commit();
        state.put(b"a", b"2".to_vec());
        state.put(b"b", b"3".to_vec());
        assert_eq!(state.get(b"a").as_deref(), Some(&b"2"[..]));
        state.rollback();
        assert_eq!(state.get(b"a").as_deref(), Some(&b"1"[..]));
        assert_eq!(state.get(b"b"), None);
        state.delete(b"a");
        assert_eq!(state.get(b"a"), None);
        state.commit();
        assert_eq!(state.get(b"a"), None);
        // The changelog has the latest change per key: `a` deleted, `b` never kept.
        let changes = state.take_changelog();
        assert_eq!(changes, Changes::from([(entry_key(b"a"), None)]));
        assert!(state.take_changelog().is_empty());
    }

    #[test]
    fn scans_merge_pending_writes_over_the_store_in_key_order_across_pages() {
        let mut state = TaskState::new(MemoryStore::default());
        for i in 0..100u8 {
            state.put(&[b'k', i], vec![i]);
        }
        state.commit();
        // Pending: 40 deletions inside the first page, a replaced value, two new keys.
        for i in 10..50u8 {
            state.delete(&[b'k', i]);
        }
        state.put(&[b'k', 60], b"new".to_vec());
        state.put(b"j", b"before".to_vec());
        state.put(&[b'k', 200], b"after".to_vec());
        let all = state.scan(b"", None, 1000);
        assert_eq!(all.len(), 100 - 40 + 2);
        assert_eq!(all[0], (b"j".to_vec(), b"before".to_vec()));
        assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "in key order");
        assert!(all.contains(&(vec![b'k', 60], b"new".to_vec())));
        assert_eq!(all.last().unwrap().0, vec![b'k', 200]);
        // A page of 5 from inside the deleted run, and an end bound.
        let page = state.scan(&[b'k', 5], Some(&[b'k', 70]), 7);
        assert_eq!(
            keys(&page),
            vec![
                &[b'k', 5][..],
                &[b'k', 6],
                &[b'k', 7],
                &[b'k', 8],
                &[b'k', 9],
                &[b'k', 50],
                &[b'k', 51]
            ]
        );
        assert!(state.scan(b"k", Some(b"k"), 10).is_empty());
        assert!(state.scan(b"", None, 0).is_empty());
    }

    #[test]
    fn the_guests_entries_do_not_see_timers_or_the_stream_time() {
        let mut state = TaskState::new(MemoryStore::default());
        state.register_timer(b"k", 5);
        state.observe(10);
        state.put(b"x", b"1".to_vec());
        assert_eq!(keys(&state.scan(b"", None, 10)), vec![&b"x"[..]]);
        state.commit();
        assert_eq!(keys(&state.scan(b"", None, 10)), vec![&b"x"[..]]);
    }

    #[test]
    fn timers_fire_once_stream_time_passes_them_in_time_then_key_order() {
        let mut state = TaskState::new(MemoryStore::default());
        state.register_timer(b"b", 100);
        state.register_timer(b"a", 100);
        state.register_timer(b"c", -5);
        state.register_timer(b"d", 300);
        state.register_timer(b"e", 200);
        state.cancel_timer(b"e", 200);
        state.commit();
        assert!(
            state.take_due_timers(None, 10).is_empty(),
            "no stream time yet"
        );
        state.observe_timestamp(100);
        let due = state.take_due_timers(None, 10);
        let fired: Vec<(&[u8], i64)> = due.iter().map(|t| (t.key.as_slice(), t.at)).collect();
        assert_eq!(
            fired,
            vec![(&b"c"[..], -5), (&b"a"[..], 100), (&b"b"[..], 100)]
        );
        assert!(
            state.take_due_timers(None, 10).is_empty(),
            "taken timers do not fire again"
        );
        state.commit();
        // The end of the input: every timer fires.
        state.advance(i64::MAX);
        let rest = state.take_due_timers(None, 10);
        // A round of firing ends after the last timer taken, even if one is set again at or
        // before the stream time.
        state.register_timer(b"d", 300);
        let d = DueTimer {
            key: b"d".to_vec(),
            at: 300,
        };
        assert!(state.take_due_timers(Some(&d), 10).is_empty());
        assert_eq!(state.take_due_timers(None, 10), vec![d.clone()]);
        assert_eq!(
            rest,
            vec![DueTimer {
                key: b"d".to_vec(),
                at: 300
            }]
        );
    }

    #[test]
    fn stream_time_only_moves_forward_and_reported_event_times_replace_timestamps() {
        let mut state = TaskState::new(MemoryStore::default());
        state.observe_timestamp(50);
        state.observe_timestamp(40);
        assert_eq!(state.stream_time(), Some(50));
        state.observe(45);
        assert_eq!(state.stream_time(), Some(50));
        state.observe_timestamp(1000);
        assert_eq!(state.stream_time(), Some(50), "timestamps no longer count");
        state.observe(70);
        assert_eq!(state.stream_time(), Some(70));
    }

    #[test]
    fn a_rolled_back_call_leaves_timers_and_stream_time_as_they_were_and_a_restore_keeps_both() {
        let mut state = TaskState::new(MemoryStore::default());
        state.register_timer(b"k", 10);
        state.observe_timestamp(5);
        state.commit();
        state.observe_timestamp(20);
        assert_eq!(state.take_due_timers(None, 10).len(), 1);
        state.rollback();
        assert_eq!(state.stream_time(), Some(5));
        // Restored from the same store (as after a restart), the timer and stream time remain.
        let restored = TaskState::new(std::mem::take(&mut state.store));
        assert_eq!(restored.stream_time(), Some(5));
        let mut restored = restored;
        restored.advance(10);
        assert_eq!(
            restored.take_due_timers(None, 10),
            vec![DueTimer {
                key: b"k".to_vec(),
                at: 10
            }]
        );
    }
}
