//! Glue between the generated bindings and [`Transform`]; used by [`export!`](crate::export).

use crate::state::Timer;
use crate::{Config, Header, Record, StatefulTransform, Transform, Writer};
use std::any::Any;
use std::cell::RefCell;

use crate::wit::types::{InputBatch, OutputBatch, RecordError, Span};

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

/// The `process` export: runs the transform over every record of the batch.
pub fn process<T: Transform>(batch: InputBatch) -> OutputBatch {
    with_transform(|transform: &mut T| process_with(transform, &batch))
}

/// Runs `transform` over every record of `batch`; shared by the export and [`crate::testing`].
pub(crate) fn process_with<T: Transform>(transform: &mut T, batch: &InputBatch) -> OutputBatch {
    let data = batch.data.as_slice();
    let bytes = |span: Span| &data[span.start as usize..(span.start + span.len) as usize];
    let headers: Vec<Header<'_>> = batch
        .headers
        .iter()
        .map(|h| Header {
            // The host only passes header names that are UTF-8.
            name: std::str::from_utf8(bytes(h.name)).unwrap_or_default(),
            value: h.value.map(bytes),
        })
        .collect();

    let mut out = Writer::with_capacity(data.len() + data.len() / 4, batch.records.len());
    let mut errors = Vec::new();
    for (index, r) in batch.records.iter().enumerate() {
        let first = r.first_header as usize;
        let record = Record {
            topic: &batch.topic,
            partition: batch.partition,
            offset: r.offset,
            timestamp: r.timestamp,
            key: r.key.map(bytes),
            value: r.value.map(bytes),
            headers: &headers[first..first + r.header_count as usize],
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

fn into_batch(out: Writer<'_>, errors: Vec<RecordError>) -> OutputBatch {
    OutputBatch {
        data: out.data,
        headers: out.headers,
        records: out.records,
        errors,
    }
}

/// The `on-timers` export: runs the transform's `on_timer` for every timer that fired.
pub fn on_timers<T: StatefulTransform>(fired: Vec<Timer>) -> OutputBatch {
    with_transform(|transform: &mut T| on_timers_with(transform, &fired))
}

/// Runs `transform`'s `on_timer` for every timer of `fired`; shared by the export and
/// [`crate::testing`].
pub(crate) fn on_timers_with<T: StatefulTransform>(
    transform: &mut T,
    fired: &[Timer],
) -> OutputBatch {
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
