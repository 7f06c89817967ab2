//! Glue between the generated bindings and [`Transform`]; used by [`export!`](crate::export).

use crate::state::Timer;
use crate::{Config, Header, Record, StatefulTransform, Transform, Writer};
use std::any::Any;
use std::cell::RefCell;

use crate::columns::{self, bytes, span_at};
use crate::wit::columnar::{InputColumns, OutputColumns};
use crate::wit::types::{InputBatch, OutputBatch, RecordError};

thread_local! {
    /// The instance's transform. A component instance is single-threaded and hosts exactly one
    /// transform type, which `process` downcasts to.
    static TRANSFORM: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

/// The `init` export: builds the transform and keeps it for later batches.
pub fn init<T: Transform>(config: Vec<(String, String)>) -> Result<(), String> {
    let transform = T::init(&Config::new(config))?;
    TRANSFORM.with(|slot| *slot.borrow_mut() = Some(Box::new(transform)));
    Ok(())
}

/// Calls `f` with the instance's transform, which `init` made.
fn with_transform<T: Transform, R>(f: impl FnOnce(&mut T) -> R) -> R {
    TRANSFORM.with(|slot| {
        let mut slot = slot.borrow_mut();
        let transform = slot
            .as_mut()
            .and_then(|t| t.downcast_mut::<T>())
            .expect("the host calls init before any other export");
        f(transform)
    })
}

/// The `transform.process` export, for hosts that do not call `columnar`.
pub fn process<T: Transform>(batch: InputBatch) -> OutputBatch {
    columns::to_records(process_columns::<T>(columns::from_records(batch)))
}

/// The `columnar.process` export: runs the transform over every record of the batch.
pub fn process_columns<T: Transform>(batch: InputColumns) -> OutputColumns {
    with_transform(|transform: &mut T| process_with(transform, &batch))
}

/// Runs `transform` over every record of `batch`; shared by the exports and
/// [`crate::testing`].
pub(crate) fn process_with<T: Transform>(transform: &mut T, batch: &InputColumns) -> OutputColumns {
    let data = batch.data.as_slice();
    let headers: Vec<Header<'_>> = (0..batch.headers.len() / 4)
        .map(|h| Header {
            // The host only passes header names that are present and UTF-8.
            name: span_at(&batch.headers, 2 * h)
                .and_then(|name| std::str::from_utf8(bytes(data, name)).ok())
                .unwrap_or_default(),
            value: span_at(&batch.headers, 2 * h + 1).map(|v| bytes(data, v)),
        })
        .collect();

    let inputs = batch.offsets.len();
    let mut out = Writer::with_capacity(data.len() + data.len() / 4, inputs);
    let mut errors = Vec::new();
    for index in 0..inputs {
        let first = batch.header_ranges[2 * index] as usize;
        let count = batch.header_ranges[2 * index + 1] as usize;
        let record = Record {
            topic: &batch.topic,
            partition: batch.partition,
            offset: batch.offsets[index],
            timestamp: columns::timestamp(batch.timestamps[index]),
            key: span_at(&batch.keys, index).map(|k| bytes(data, k)),
            value: span_at(&batch.values, index).map(|v| bytes(data, v)),
            headers: &headers[first..first + count],
        };
        handle(&mut out, &mut errors, index, record, |out| {
            transform.process(&record, out)
        });
    }
    into_batch(out, errors)
}

/// Runs `call` for input `index`, whose outputs derive from `record`; if it fails, its outputs
/// are undone and its error is noted instead.
fn handle<'a>(
    out: &mut Writer<'a>,
    errors: &mut Vec<RecordError>,
    index: usize,
    record: Record<'a>,
    call: impl FnOnce(&mut Writer<'a>) -> Result<(), crate::Error>,
) {
    out.begin(index as u32, record);
    let mark = out.mark();
    if let Err(e) = call(out) {
        out.rollback(mark);
        errors.push(RecordError {
            input: index as u32,
            message: e.into(),
        });
    }
}

fn into_batch(out: Writer<'_>, errors: Vec<RecordError>) -> OutputColumns {
    OutputColumns { errors, ..out.out }
}

/// The `on-timers` export: runs the transform's `on_timer` for every timer that fired.
pub fn on_timers<T: StatefulTransform>(fired: Vec<Timer>) -> OutputBatch {
    columns::to_records(with_transform(|transform: &mut T| {
        on_timers_with(transform, &fired)
    }))
}

/// Runs `transform`'s `on_timer` for every timer of `fired`; shared by the export and
/// [`crate::testing`].
pub(crate) fn on_timers_with<T: StatefulTransform>(
    transform: &mut T,
    fired: &[Timer],
) -> OutputColumns {
    let mut out = Writer::with_capacity(256 * fired.len(), fired.len());
    let mut errors = Vec::new();
    for (index, timer) in fired.iter().enumerate() {
        let record = Record {
            timestamp: Some(timer.at),
            ..Record::default()
        };
        handle(&mut out, &mut errors, index, record, |out| {
            transform.on_timer(timer, out)
        });
    }
    into_batch(out, errors)
}
