//! Event-time windows over keyed [`state`](crate::state): tumbling, hopping and session windows
//! with an aggregate per key and window, closed by timers once stream time has passed them.
//!
//! A [`Windowed`] keeps its windows under its own name in the transform's state. In
//! [`Transform::process`](crate::Transform::process), [`Windowed::add`] reports the record's
//! event time, folds the record into every window of its key that holds it, and returns those
//! windows (to write updates from). In
//! [`StatefulTransform::on_timer`](crate::StatefulTransform::on_timer), [`Windowed::close`]
//! takes a window that closed out of state and returns it with its aggregate (to write the
//! final result).
//!
//! Closing follows Kafka Streams' grace period: a window closes when stream time reaches its
//! end plus `allowed_lateness`. A record whose windows have all closed is [`Late`]. A session
//! window `[start, end]` spans its records' times; a record within `gap` of a session joins it
//! (merging sessions it bridges), and the session closes when stream time reaches
//! `end + gap + allowed_lateness`.

use crate::Error;
use crate::state::{self, Timer};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// How records are grouped in time. Durations are milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Windows {
    /// Windows of `size`, one after the other.
    Tumbling {
        /// Window length.
        size: i64,
    },
    /// Windows of `size` starting every `slide` (`slide` at most `size`): a record is in
    /// `size / slide` of them.
    Hopping {
        /// Window length.
        size: i64,
        /// Time between window starts.
        slide: i64,
    },
    /// A window per burst of activity: records less than `gap` apart share one.
    Session {
        /// Inactivity that ends a session.
        gap: i64,
    },
}

impl Windows {
    /// Checks the lengths; the error names what is wrong.
    pub fn validate(&self) -> Result<(), Error> {
        let ok = match *self {
            Windows::Tumbling { size } => size > 0,
            Windows::Hopping { size, slide } => size > 0 && slide > 0 && slide <= size,
            Windows::Session { gap } => gap > 0,
        };
        if ok {
            Ok(())
        } else {
            Err(Error::new(format!(
                "{self:?}: lengths must be more than 0, and a hopping window's slide at most its size"
            )))
        }
    }

    /// The starts of the fixed windows that hold `time`, earliest first (none for sessions).
    fn starts(&self, time: i64) -> Vec<i64> {
        let (size, slide) = match *self {
            Windows::Tumbling { size } => (size, size),
            Windows::Hopping { size, slide } => (size, slide),
            Windows::Session { .. } => return Vec::new(),
        };
        let last = time.div_euclid(slide) * slide;
        let first = last - (size - 1).div_euclid(slide) * slide;
        (0..)
            .map(|i| first + i * slide)
            .take_while(|s| *s <= last)
            .filter(|s| time < s + size)
            .collect()
    }
}

/// One window of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Its first instant.
    pub start: i64,
    /// Fixed windows: the instant after its last (`[start, end)`). Sessions: the time of its
    /// last record (`[start, end]`, as Kafka Streams).
    pub end: i64,
}

/// An aggregate kept per key and window.
pub trait Aggregate: Serialize + DeserializeOwned + Default {
    /// What a record contributes.
    type Input;
    /// Folds one record in.
    fn add(&mut self, input: &Self::Input);
    /// Folds another window's aggregate in, when sessions merge.
    fn merge(&mut self, other: Self);
}

/// A record that came after every window it belongs to had closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Late {
    /// Its event time.
    pub time: i64,
    /// The stream time it came at.
    pub stream_time: i64,
}

impl From<Late> for Error {
    fn from(late: Late) -> Error {
        Error::new(format!(
            "late: event time {} falls only in windows closed at stream time {}",
            late.time, late.stream_time
        ))
    }
}

/// A window taken out of state because it closed.
#[derive(Debug, Clone, PartialEq)]
pub struct Closed<A> {
    /// The key given to [`Windowed::add`].
    pub key: Vec<u8>,
    /// The window.
    pub window: Window,
    /// Its aggregate.
    pub aggregate: A,
}

/// Windows of one kind, kept in state under `name`.
#[derive(Debug, Clone)]
pub struct Windowed {
    name: Vec<u8>,
    windows: Windows,
    lateness: i64,
}

/// What a session keeps: its end beside its aggregate (the start is in its state key).
#[derive(serde::Serialize, serde::Deserialize)]
struct Session<A> {
    end: i64,
    aggregate: A,
}

impl Windowed {
    /// `windows` kept in state under `name` (distinct per `Windowed` of a transform), taking
    /// records up to `allowed_lateness` milliseconds after a window's end.
    pub fn new(name: &str, windows: Windows, allowed_lateness: i64) -> Result<Self, Error> {
        windows.validate()?;
        if allowed_lateness < 0 {
            return Err(Error::new("allowed lateness cannot be negative"));
        }
        Ok(Windowed {
            name: name.as_bytes().to_vec(),
            windows,
            lateness: allowed_lateness,
        })
    }

    /// Reports `time` as the record's event time and folds `input` into every open window of
    /// `key` that holds it; returns those windows with their aggregates.
    pub fn add<A: Aggregate>(
        &self,
        key: &[u8],
        time: i64,
        input: &A::Input,
    ) -> Result<Vec<(Window, A)>, Error> {
        state::observe(time);
        let now = state::stream_time().unwrap_or(time);
        if let Windows::Session { gap } = self.windows {
            return self
                .add_to_session(key, time, gap, now, input)
                .map(|w| vec![w]);
        }
        let size = match self.windows {
            Windows::Tumbling { size } | Windows::Hopping { size, .. } => size,
            Windows::Session { .. } => unreachable!(),
        };
        let mut updated = Vec::new();
        for start in self.windows.starts(time) {
            let closes = start + size + self.lateness;
            if closes <= now {
                continue;
            }
            let state_key = self.state_key(key, start)?;
            let mut aggregate = match state::get_json::<A>(&state_key)? {
                Some(aggregate) => aggregate,
                None => {
                    state::set_timer(&state_key, closes);
                    A::default()
                }
            };
            aggregate.add(input);
            state::put_json(&state_key, &aggregate)?;
            updated.push((
                Window {
                    start,
                    end: start + size,
                },
                aggregate,
            ));
        }
        if updated.is_empty() {
            return Err(Late {
                time,
                stream_time: now,
            }
            .into());
        }
        Ok(updated)
    }

    fn add_to_session<A: Aggregate>(
        &self,
        key: &[u8],
        time: i64,
        gap: i64,
        now: i64,
        input: &A::Input,
    ) -> Result<(Window, A), Error> {
        // Sessions of the key that this record reaches (within `gap`) merge with it into one.
        let mut window = Window {
            start: time,
            end: time,
        };
        let mut merged = Vec::new();
        for (state_key, value) in state::scan_prefix(&self.key_prefix(key)?) {
            let start = decode_time(&state_key);
            if start > time + gap {
                break;
            }
            let session: Session<A> = serde_json::from_slice(&value)
                .map_err(|e| Error::new(format!("state: a session is unreadable: {e}")))?;
            // A session that has closed stays closed, even before its timer has fired (which
            // happens after the batch): results do not depend on where batches are cut.
            let closed = session.end + gap + self.lateness <= now;
            if session.end + gap >= time && !closed {
                window.start = window.start.min(start);
                window.end = window.end.max(session.end);
                merged.push((state_key, session));
            }
        }
        if window.end + gap + self.lateness <= now {
            return Err(Late {
                time,
                stream_time: now,
            }
            .into());
        }
        let mut aggregate = A::default();
        aggregate.add(input);
        for (state_key, session) in merged {
            state::delete(&state_key);
            state::cancel_timer(&state_key, session.end + gap + self.lateness);
            aggregate.merge(session.aggregate);
        }
        let state_key = self.state_key(key, window.start)?;
        let session = Session {
            end: window.end,
            aggregate,
        };
        state::put_json(&state_key, &session)?;
        state::set_timer(&state_key, window.end + gap + self.lateness);
        Ok((window, session.aggregate))
    }

    /// If `timer` closes one of these windows, takes it out of state and returns it; `None`
    /// for another `Windowed`'s timer or a window already gone.
    pub fn close<A: Aggregate>(&self, timer: &Timer) -> Result<Option<Closed<A>>, Error> {
        let Some(rest) = timer.key.strip_prefix(self.name.as_slice()) else {
            return Ok(None);
        };
        let Some(key_len) = rest.get(..2) else {
            return Ok(None);
        };
        let key_len = u16::from_be_bytes([key_len[0], key_len[1]]) as usize;
        if rest.len() != 2 + key_len + 8 {
            return Ok(None);
        }
        let key = rest[2..2 + key_len].to_vec();
        let start = decode_time(&timer.key);
        let closed = match self.windows {
            Windows::Session { .. } => state::get_json::<Session<A>>(&timer.key)?
                .map(|s| (Window { start, end: s.end }, s.aggregate)),
            Windows::Tumbling { size } | Windows::Hopping { size, .. } => {
                state::get_json::<A>(&timer.key)?.map(|a| {
                    (
                        Window {
                            start,
                            end: start + size,
                        },
                        a,
                    )
                })
            }
        };
        let Some((window, aggregate)) = closed else {
            return Ok(None);
        };
        state::delete(&timer.key);
        Ok(Some(Closed {
            key,
            window,
            aggregate,
        }))
    }

    /// Every window of `key` is under this prefix.
    fn key_prefix(&self, key: &[u8]) -> Result<Vec<u8>, Error> {
        state::namespaced(&self.name, key)
    }

    /// The state key of `key`'s window starting at `start`: windows of a key sort by start.
    fn state_key(&self, key: &[u8], start: i64) -> Result<Vec<u8>, Error> {
        let mut state_key = self.key_prefix(key)?;
        state_key.extend_from_slice(&((start as u64) ^ (1 << 63)).to_be_bytes());
        Ok(state_key)
    }
}

/// The start at the end of a state key.
fn decode_time(state_key: &[u8]) -> i64 {
    let bytes: [u8; 8] = state_key[state_key.len() - 8..]
        .try_into()
        .expect("window state keys end with the start");
    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
    struct Sum {
        count: u64,
        total: i64,
    }

    impl Aggregate for Sum {
        type Input = i64;
        fn add(&mut self, input: &i64) {
            self.count += 1;
            self.total += input;
        }
        fn merge(&mut self, other: Sum) {
            self.count += other.count;
            self.total += other.total;
        }
    }

    /// Closes whatever the timers due at `time` close.
    fn close_until(w: &Windowed, time: i64) -> Vec<Closed<Sum>> {
        state::native::with(|s| s.advance(time));
        let due = state::native::with(|s| s.take_due());
        due.iter()
            .filter_map(|t| w.close::<Sum>(t).unwrap())
            .collect()
    }

    #[test]
    fn hopping_windows_hold_a_record_in_each_window_that_covers_it() {
        let hopping = Windows::Hopping { size: 10, slide: 5 };
        assert_eq!(hopping.starts(12), vec![5, 10]);
        assert_eq!(hopping.starts(-1), vec![-10, -5]);
        assert_eq!(
            Windows::Hopping { size: 10, slide: 3 }.starts(10),
            vec![3, 6, 9]
        );
        assert_eq!(Windows::Tumbling { size: 10 }.starts(19), vec![10]);
        assert!(Windows::Hopping { size: 5, slide: 10 }.validate().is_err());
    }

    #[test]
    fn tumbling_windows_close_after_the_lateness_and_then_refuse_records() {
        crate::testing::reset_state();
        let w = Windowed::new("t", Windows::Tumbling { size: 10 }, 5).unwrap();
        w.add::<Sum>(b"a", 1, &3).unwrap();
        w.add::<Sum>(b"a", 9, &4).unwrap();
        let updated = w.add::<Sum>(b"b", 12, &1).unwrap();
        assert_eq!(updated[0].0, Window { start: 10, end: 20 });
        assert!(close_until(&w, 14).is_empty());
        let closed = close_until(&w, 15);
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].key, b"a");
        assert_eq!(closed[0].window, Window { start: 0, end: 10 });
        assert_eq!(closed[0].aggregate, Sum { count: 2, total: 7 });
        let late = w.add::<Sum>(b"a", 2, &1).unwrap_err();
        assert!(late.to_string().starts_with("late:"), "{late}");
    }

    #[test]
    fn sessions_grow_merge_when_bridged_and_close_a_gap_after_their_last_record() {
        crate::testing::reset_state();
        let w = Windowed::new("s", Windows::Session { gap: 10 }, 50).unwrap();
        w.add::<Sum>(b"k", 100, &1).unwrap();
        w.add::<Sum>(b"k", 130, &2).unwrap(); // 30 after: a second session
        w.add::<Sum>(b"other", 105, &100).unwrap();
        // 118 is within 10 of neither 100 nor 130: a third session.
        w.add::<Sum>(b"k", 118, &4).unwrap();
        // 109 reaches 100 (gap 10) and 118: the sessions [100] and [118] merge.
        let (window, sum) = w.add::<Sum>(b"k", 109, &8).unwrap().remove(0);
        assert_eq!(
            window,
            Window {
                start: 100,
                end: 118
            }
        );
        assert_eq!(
            sum,
            Sum {
                count: 3,
                total: 13
            }
        );
        // A session closes 10 (the gap) + 50 (the lateness) after its last record: [105] of
        // `other` at 165, [100, 118] at 178, [130] at 190.
        assert!(close_until(&w, 164).is_empty());
        let closed = close_until(&w, 178);
        let found: Vec<(&[u8], Window, i64)> = closed
            .iter()
            .map(|c| (c.key.as_slice(), c.window, c.aggregate.total))
            .collect();
        assert_eq!(
            found,
            vec![
                (
                    &b"other"[..],
                    Window {
                        start: 105,
                        end: 105
                    },
                    100
                ),
                (
                    &b"k"[..],
                    Window {
                        start: 100,
                        end: 118
                    },
                    13
                ),
            ]
        );
        assert!(
            w.add::<Sum>(b"k", 110, &1).is_err(),
            "its session closed: late"
        );
        let last = close_until(&w, 190);
        assert_eq!(
            last[0].window,
            Window {
                start: 130,
                end: 130
            }
        );
        assert!(
            state::scan_prefix(b"s").is_empty(),
            "closed sessions leave no state"
        );
    }

    #[test]
    fn timers_of_other_windowed_state_are_not_taken() {
        crate::testing::reset_state();
        let w = Windowed::new("w", Windows::Tumbling { size: 10 }, 0).unwrap();
        let timer = Timer {
            key: b"elsewhere".to_vec(),
            at: 5,
        };
        assert!(w.close::<Sum>(&timer).unwrap().is_none());
    }
}
