//! The contract's `columnar` batch layout: spans as number pairs in `u32` columns. The SDK works
//! in it; the record layout of `transform.process` (for hosts that do not call `columnar`) and
//! of `on-timers` is converted at the edge.

use crate::Record;
use crate::wit::columnar::{InputColumns, OutputColumns};
use crate::wit::types::{Header, InputBatch, OutputBatch, OutputRecord, Span};

/// The length that marks a span as absent.
const ABSENT: u32 = u32::MAX;
/// The timestamp that stands for none.
const NO_TIMESTAMP: i64 = i64::MIN;

/// Span `index` of a column of spans.
pub(crate) fn span_at(words: &[u32], index: usize) -> Option<Span> {
    let (start, len) = (words[2 * index], words[2 * index + 1]);
    (len != ABSENT).then_some(Span { start, len })
}

/// The bytes of `span` in `data`.
pub(crate) fn bytes(data: &[u8], span: Span) -> &[u8] {
    &data[span.start as usize..span.start as usize + span.len as usize]
}

pub(crate) fn push_span(words: &mut Vec<u32>, span: Option<Span>) {
    match span {
        Some(s) => words.extend([s.start, s.len]),
        None => words.extend([0, ABSENT]),
    }
}

/// Appends `bytes` to `data`; their span.
pub(crate) fn push_bytes(data: &mut Vec<u8>, bytes: &[u8]) -> Span {
    let start = data.len() as u32;
    data.extend_from_slice(bytes);
    Span {
        start,
        len: bytes.len() as u32,
    }
}

pub(crate) fn timestamp(t: i64) -> Option<i64> {
    (t != NO_TIMESTAMP).then_some(t)
}

pub(crate) fn push_timestamp(column: &mut Vec<i64>, t: Option<i64>) {
    column.push(t.unwrap_or(NO_TIMESTAMP));
}

/// An empty output batch with room for `outputs` outputs and `bytes` bytes.
pub(crate) fn output_with_capacity(bytes: usize, outputs: usize) -> OutputColumns {
    OutputColumns {
        data: Vec::with_capacity(bytes),
        inputs: Vec::with_capacity(outputs),
        topics: Vec::with_capacity(2 * outputs),
        keys: Vec::with_capacity(2 * outputs),
        values: Vec::with_capacity(2 * outputs),
        timestamps: Vec::with_capacity(outputs),
        header_ranges: Vec::with_capacity(2 * outputs),
        headers: Vec::new(),
        errors: Vec::new(),
    }
}

/// `records` as one batch, with the first record's topic and partition.
pub(crate) fn encode(records: &[Record<'_>]) -> InputColumns {
    let first = records.first().copied().unwrap_or_default();
    let mut batch = InputColumns {
        topic: first.topic.to_string(),
        partition: first.partition,
        data: Vec::new(),
        offsets: Vec::new(),
        timestamps: Vec::new(),
        keys: Vec::new(),
        values: Vec::new(),
        header_ranges: Vec::new(),
        headers: Vec::new(),
    };
    for r in records {
        let first_header = (batch.headers.len() / 4) as u32;
        for h in r.headers {
            let name = push_bytes(&mut batch.data, h.name.as_bytes());
            let value = h.value.map(|v| push_bytes(&mut batch.data, v));
            push_span(&mut batch.headers, Some(name));
            push_span(&mut batch.headers, value);
        }
        let key = r.key.map(|k| push_bytes(&mut batch.data, k));
        let value = r.value.map(|v| push_bytes(&mut batch.data, v));
        push_span(&mut batch.keys, key);
        push_span(&mut batch.values, value);
        batch.offsets.push(r.offset);
        push_timestamp(&mut batch.timestamps, r.timestamp);
        batch
            .header_ranges
            .extend([first_header, r.headers.len() as u32]);
    }
    batch
}

/// A batch in the record layout, in columns.
pub(crate) fn from_records(batch: InputBatch) -> InputColumns {
    let mut columns = InputColumns {
        topic: batch.topic,
        partition: batch.partition,
        data: batch.data,
        offsets: Vec::with_capacity(batch.records.len()),
        timestamps: Vec::with_capacity(batch.records.len()),
        keys: Vec::with_capacity(2 * batch.records.len()),
        values: Vec::with_capacity(2 * batch.records.len()),
        header_ranges: Vec::with_capacity(2 * batch.records.len()),
        headers: Vec::with_capacity(4 * batch.headers.len()),
    };
    for h in batch.headers {
        push_span(&mut columns.headers, Some(h.name));
        push_span(&mut columns.headers, h.value);
    }
    for r in batch.records {
        columns.offsets.push(r.offset);
        push_timestamp(&mut columns.timestamps, r.timestamp);
        push_span(&mut columns.keys, r.key);
        push_span(&mut columns.values, r.value);
        columns
            .header_ranges
            .extend([r.first_header, r.header_count]);
    }
    columns
}

/// Outputs in columns, in the record layout.
pub(crate) fn to_records(out: OutputColumns) -> OutputBatch {
    let headers = (0..out.headers.len() / 4)
        .map(|h| Header {
            name: span_at(&out.headers, 2 * h).unwrap_or(Span { start: 0, len: 0 }),
            value: span_at(&out.headers, 2 * h + 1),
        })
        .collect();
    let records = (0..out.inputs.len())
        .map(|i| OutputRecord {
            input: out.inputs[i],
            topic: span_at(&out.topics, i),
            key: span_at(&out.keys, i),
            value: span_at(&out.values, i),
            first_header: out.header_ranges[2 * i],
            header_count: out.header_ranges[2 * i + 1],
            timestamp: timestamp(out.timestamps[i]),
        })
        .collect();
    OutputBatch {
        data: out.data,
        headers,
        records,
        errors: out.errors,
    }
}
