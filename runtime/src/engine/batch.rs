//! The host's batches, in the contract's `columnar` layout, and what reads and rewrites them.
//!
//! Batches are kept in columns from the source to the sink: a component that exports
//! `columnar` gets them as they are (each column crosses the boundary as one copy), and one that
//! only exports `transform` gets them converted to the record layout of `types` and back.

use super::bindings::sluice::transform::types as records;
use super::bindings::sluice::transform::types::{OutputRecord, Span};
use super::columnar_bindings::exports::sluice::transform::columnar::{InputColumns, OutputColumns};
use std::ops::Range;

/// A batch of input records: consecutive records of one partition, in columns.
pub type InputBatch = InputColumns;
/// What a transform returned for a batch, in columns.
pub type OutputBatch = OutputColumns;

/// The length that marks a span as absent (a null key or value, the default topic).
const ABSENT: u32 = u32::MAX;
/// The timestamp that stands for none.
const NO_TIMESTAMP: i64 = i64::MIN;

fn span_at(words: &[u32], index: usize) -> Option<Span> {
    let (start, len) = (words[2 * index], words[2 * index + 1]);
    (len != ABSENT).then_some(Span { start, len })
}

fn push_span(words: &mut Vec<u32>, span: Option<Span>) {
    match span {
        Some(s) => words.extend([s.start, s.len]),
        None => words.extend([0, ABSENT]),
    }
}

fn timestamp(t: i64) -> Option<i64> {
    (t != NO_TIMESTAMP).then_some(t)
}

fn push(data: &mut Vec<u8>, bytes: &[u8]) -> Span {
    let span = Span {
        start: data.len() as u32,
        len: bytes.len() as u32,
    };
    data.extend_from_slice(bytes);
    span
}

fn range(span: Span) -> Range<usize> {
    span.start as usize..span.start as usize + span.len as usize
}

/// Header `index` of a `headers` column: its name's and its value's spans.
fn header_at(headers: &[u32], index: usize) -> (Span, Option<Span>) {
    let name = span_at(headers, 2 * index).unwrap_or(Span { start: 0, len: 0 });
    (name, span_at(headers, 2 * index + 1))
}

impl InputBatch {
    /// Records in the batch.
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    /// Whether the batch has no records.
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }
}

impl OutputBatch {
    /// Outputs in the batch.
    pub fn len(&self) -> usize {
        self.inputs.len()
    }

    /// Whether the batch has no outputs.
    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }

    /// An empty batch.
    pub(crate) fn empty() -> Self {
        OutputBatch {
            data: Vec::new(),
            inputs: Vec::new(),
            topics: Vec::new(),
            keys: Vec::new(),
            values: Vec::new(),
            timestamps: Vec::new(),
            header_ranges: Vec::new(),
            headers: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// The columns with two numbers per output.
    fn pair_columns(&mut self) -> [&mut Vec<u32>; 4] {
        [
            &mut self.topics,
            &mut self.keys,
            &mut self.values,
            &mut self.header_ranges,
        ]
    }

    /// Keeps only the outputs for which `keep(index, input)` holds; bytes and headers stay
    /// where they are.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(usize, u32) -> bool) {
        let mut kept = 0;
        for i in 0..self.len() {
            if !keep(i, self.inputs[i]) {
                continue;
            }
            if kept != i {
                self.inputs[kept] = self.inputs[i];
                self.timestamps[kept] = self.timestamps[i];
                for column in self.pair_columns() {
                    column.copy_within(2 * i..2 * i + 2, 2 * kept);
                }
            }
            kept += 1;
        }
        self.inputs.truncate(kept);
        self.timestamps.truncate(kept);
        for column in self.pair_columns() {
            column.truncate(2 * kept);
        }
    }
}

/// Builds an [`InputBatch`], reusing its buffers from one batch to the next.
pub struct InputBatchBuilder {
    batch: InputBatch,
}

impl InputBatchBuilder {
    /// An empty batch for records of `topic`/`partition`.
    pub fn new(topic: &str, partition: i32) -> Self {
        let batch = InputBatch {
            topic: topic.to_string(),
            partition,
            data: Vec::new(),
            offsets: Vec::new(),
            timestamps: Vec::new(),
            keys: Vec::new(),
            values: Vec::new(),
            header_ranges: Vec::new(),
            headers: Vec::new(),
        };
        InputBatchBuilder { batch }
    }

    /// Empties the batch, keeping its buffers, for records of `topic`/`partition`.
    pub fn reset(&mut self, topic: &str, partition: i32) {
        let b = &mut self.batch;
        if b.topic != topic {
            b.topic = topic.to_string();
        }
        b.partition = partition;
        b.data.clear();
        b.offsets.clear();
        b.timestamps.clear();
        b.keys.clear();
        b.values.clear();
        b.header_ranges.clear();
        b.headers.clear();
    }

    /// Appends a record.
    pub fn push<'h>(
        &mut self,
        offset: i64,
        timestamp: Option<i64>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: impl IntoIterator<Item = (&'h str, Option<&'h [u8]>)>,
    ) {
        let b = &mut self.batch;
        let first_header = (b.headers.len() / 4) as u32;
        for (name, value) in headers {
            let name = push(&mut b.data, name.as_bytes());
            let value = value.map(|v| push(&mut b.data, v));
            push_span(&mut b.headers, Some(name));
            push_span(&mut b.headers, value);
        }
        let key = key.map(|k| push(&mut b.data, k));
        let value = value.map(|v| push(&mut b.data, v));
        push_span(&mut b.keys, key);
        push_span(&mut b.values, value);
        b.offsets.push(offset);
        b.timestamps.push(timestamp.unwrap_or(NO_TIMESTAMP));
        let header_count = (b.headers.len() / 4) as u32 - first_header;
        b.header_ranges.extend([first_header, header_count]);
    }

    /// Records in the batch.
    pub fn len(&self) -> usize {
        self.batch.len()
    }

    /// Whether the batch has no records.
    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }

    /// Bytes of keys, values and headers in the batch.
    pub fn bytes(&self) -> usize {
        self.batch.data.len()
    }

    /// The batch as the guest will see it.
    pub fn batch(&self) -> &InputBatch {
        &self.batch
    }
}

/// The batch holding only record `index` of `batch`, with the same topic and partition.
pub(crate) fn single(batch: &InputBatch, index: usize) -> InputBatch {
    let r = InputRef::new(batch, index);
    let mut one = InputBatchBuilder::new(&batch.topic, batch.partition);
    one.push(r.offset(), r.timestamp(), r.key(), r.value(), r.headers());
    one.batch
}

/// `batch` in the record layout, for a component that does not export `columnar`.
pub(crate) fn to_records(batch: &InputBatch) -> records::InputBatch {
    let headers = (0..batch.headers.len() / 4)
        .map(|h| {
            let (name, value) = header_at(&batch.headers, h);
            records::Header { name, value }
        })
        .collect();
    let records = (0..batch.len())
        .map(|i| records::InputRecord {
            offset: batch.offsets[i],
            timestamp: timestamp(batch.timestamps[i]),
            key: span_at(&batch.keys, i),
            value: span_at(&batch.values, i),
            first_header: batch.header_ranges[2 * i],
            header_count: batch.header_ranges[2 * i + 1],
        })
        .collect();
    records::InputBatch {
        topic: batch.topic.clone(),
        partition: batch.partition,
        data: batch.data.clone(),
        headers,
        records,
    }
}

/// Outputs in the record layout (a component without `columnar`, or timers' outputs) as
/// columns.
pub(crate) fn from_records(out: records::OutputBatch) -> OutputBatch {
    let n = out.records.len();
    let mut columns = OutputBatch {
        data: out.data,
        inputs: Vec::with_capacity(n),
        topics: Vec::with_capacity(2 * n),
        keys: Vec::with_capacity(2 * n),
        values: Vec::with_capacity(2 * n),
        timestamps: Vec::with_capacity(n),
        header_ranges: Vec::with_capacity(2 * n),
        headers: Vec::with_capacity(4 * out.headers.len()),
        errors: out.errors,
    };
    for h in out.headers {
        push_span(&mut columns.headers, Some(h.name));
        push_span(&mut columns.headers, h.value);
    }
    for r in out.records {
        columns.inputs.push(r.input);
        push_span(&mut columns.topics, r.topic);
        push_span(&mut columns.keys, r.key);
        push_span(&mut columns.values, r.value);
        // A record-layout timestamp equal to the "none" marker is out of any real range.
        columns.timestamps.push(r.timestamp.unwrap_or(NO_TIMESTAMP));
        columns
            .header_ranges
            .extend([r.first_header, r.header_count]);
    }
    columns
}

/// Checks that every span and index a guest returned stays inside the batch, so that reading
/// outputs can never go out of bounds, and that outputs come in input order.
pub(crate) fn validate(out: &OutputBatch, inputs: usize) -> Result<(), String> {
    let n = out.inputs.len();
    let lengths = [
        ("topics", out.topics.len(), 2 * n),
        ("keys", out.keys.len(), 2 * n),
        ("values", out.values.len(), 2 * n),
        ("timestamps", out.timestamps.len(), n),
        ("header-ranges", out.header_ranges.len(), 2 * n),
    ];
    if let Some((name, len, expected)) = lengths.iter().find(|(_, len, exp)| len != exp) {
        return Err(format!(
            "its `{name}` column has {len} numbers for {n} outputs, not {expected}"
        ));
    }
    if !out.headers.len().is_multiple_of(4) {
        return Err("its `headers` column is not four numbers per header".into());
    }
    let data = out.data.len();
    let span_ok = |s: Option<Span>| {
        s.is_none_or(|s| {
            (s.start as usize)
                .checked_add(s.len as usize)
                .is_some_and(|end| end <= data)
        })
    };
    let header_count = out.headers.len() / 4;
    for h in 0..header_count {
        let (name, value) = (
            span_at(&out.headers, 2 * h),
            span_at(&out.headers, 2 * h + 1),
        );
        if name.is_none()
            || !span_ok(name)
            || !span_ok(value)
            || name.is_some_and(|n| std::str::from_utf8(&out.data[range(n)]).is_err())
        {
            return Err("a header points outside the output data or has a non-UTF-8 name".into());
        }
    }
    let mut last_input = 0;
    for i in 0..n {
        let input = out.inputs[i];
        if input as usize >= inputs {
            return Err(format!(
                "output {i} names input {input} of a batch of {inputs}"
            ));
        }
        if input < last_input {
            return Err(format!("output {i} is out of input order"));
        }
        last_input = input;
        let spans = [&out.topics, &out.keys, &out.values].map(|c| span_at(c, i));
        let headers_end = out.header_ranges[2 * i] as usize + out.header_ranges[2 * i + 1] as usize;
        if !spans.into_iter().all(span_ok) || headers_end > header_count {
            return Err(format!("output {i} points outside the output data"));
        }
    }
    if let Some(e) = out.errors.iter().find(|e| e.input as usize >= inputs) {
        return Err(format!(
            "an error names input {} of a batch of {inputs}",
            e.input
        ));
    }
    Ok(())
}

/// Appends `src`'s outputs to `dst`, all attributed to input `input`.
pub(crate) fn append(dst: &mut OutputBatch, src: OutputBatch, input: u32) {
    let (shift, header_shift) = (dst.data.len() as u32, (dst.headers.len() / 4) as u32);
    let moved = |dst: &mut Vec<u32>, src: &[u32]| {
        for pair in src.chunks_exact(2) {
            let start = if pair[1] == ABSENT {
                0
            } else {
                pair[0] + shift
            };
            dst.extend([start, pair[1]]);
        }
    };
    dst.data.extend_from_slice(&src.data);
    moved(&mut dst.headers, &src.headers);
    moved(&mut dst.topics, &src.topics);
    moved(&mut dst.keys, &src.keys);
    moved(&mut dst.values, &src.values);
    for range in src.header_ranges.chunks_exact(2) {
        dst.header_ranges
            .extend([range[0] + header_shift, range[1]]);
    }
    dst.inputs
        .extend(std::iter::repeat_n(input, src.inputs.len()));
    dst.timestamps.extend_from_slice(&src.timestamps);
}

/// Record `index` of an input batch, borrowing its bytes.
#[derive(Clone, Copy)]
pub struct InputRef<'a> {
    batch: &'a InputBatch,
    index: usize,
}

impl<'a> InputRef<'a> {
    /// Record `index` of `batch`.
    pub fn new(batch: &'a InputBatch, index: usize) -> Self {
        InputRef { batch, index }
    }

    fn bytes(&self, span: Span) -> &'a [u8] {
        &self.batch.data[range(span)]
    }

    /// Its offset.
    pub fn offset(&self) -> i64 {
        self.batch.offsets[self.index]
    }

    /// Its timestamp.
    pub fn timestamp(&self) -> Option<i64> {
        timestamp(self.batch.timestamps[self.index])
    }

    /// Its key.
    pub fn key(&self) -> Option<&'a [u8]> {
        span_at(&self.batch.keys, self.index).map(|s| self.bytes(s))
    }

    /// Its value.
    pub fn value(&self) -> Option<&'a [u8]> {
        span_at(&self.batch.values, self.index).map(|s| self.bytes(s))
    }

    /// Bytes of its key, value and headers.
    pub fn size(&self) -> usize {
        let spans = self.key().map_or(0, <[u8]>::len) + self.value().map_or(0, <[u8]>::len);
        spans
            + self
                .headers()
                .map(|(name, value)| name.len() + value.map_or(0, <[u8]>::len))
                .sum::<usize>()
    }

    /// Its headers, in order.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, Option<&'a [u8]>)> + 'a {
        let this = *self;
        let first = self.batch.header_ranges[2 * self.index] as usize;
        let count = self.batch.header_ranges[2 * self.index + 1] as usize;
        (first..first + count).map(move |h| {
            let (name, value) = header_at(&this.batch.headers, h);
            (
                std::str::from_utf8(this.bytes(name)).unwrap_or_default(),
                value.map(|v| this.bytes(v)),
            )
        })
    }
}

/// Turns a stage's outputs into the next stage's input without copying their bytes: the data
/// and header columns are handed over, and output `i` becomes a record at offset
/// `offset_of(i)`, or is left out where that is `None`.
pub(crate) fn into_input(
    mut output: OutputBatch,
    topic: &str,
    partition: i32,
    mut offset_of: impl FnMut(usize) -> Option<i64>,
) -> InputBatch {
    let offsets: Vec<Option<i64>> = (0..output.len()).map(&mut offset_of).collect();
    if offsets.iter().any(Option::is_none) {
        output.retain(|i, _| offsets[i].is_some());
    }
    InputBatch {
        topic: topic.to_string(),
        partition,
        data: output.data,
        offsets: offsets.into_iter().flatten().collect(),
        timestamps: output.timestamps,
        keys: output.keys,
        values: output.values,
        header_ranges: output.header_ranges,
        headers: output.headers,
    }
}

/// One output of a processed batch (or an input record passed through), borrowing its bytes.
#[derive(Clone, Copy)]
pub struct OutputRef<'a> {
    data: &'a [u8],
    headers: &'a [u32],
    record: OutputRecord,
}

impl<'a> OutputRef<'a> {
    /// Output `index` of `batch`.
    pub(crate) fn new(batch: &'a OutputBatch, index: usize) -> Self {
        OutputRef {
            data: &batch.data,
            headers: &batch.headers,
            record: OutputRecord {
                input: batch.inputs[index],
                topic: span_at(&batch.topics, index),
                key: span_at(&batch.keys, index),
                value: span_at(&batch.values, index),
                first_header: batch.header_ranges[2 * index],
                header_count: batch.header_ranges[2 * index + 1],
                timestamp: timestamp(batch.timestamps[index]),
            },
        }
    }

    /// Record `index` of `batch` as its own output, unchanged: what an empty chain writes.
    pub fn passthrough(batch: &'a InputBatch, index: usize) -> Self {
        OutputRef {
            data: &batch.data,
            headers: &batch.headers,
            record: OutputRecord {
                input: index as u32,
                topic: None,
                key: span_at(&batch.keys, index),
                value: span_at(&batch.values, index),
                first_header: batch.header_ranges[2 * index],
                header_count: batch.header_ranges[2 * index + 1],
                timestamp: timestamp(batch.timestamps[index]),
            },
        }
    }

    fn bytes(&self, span: Span) -> &'a [u8] {
        &self.data[range(span)]
    }

    /// Index in the input batch of the record this output derives from.
    pub fn input(&self) -> usize {
        self.record.input as usize
    }

    /// The topic the guest routed it to, if any.
    pub fn topic(&self) -> Option<&'a [u8]> {
        self.record.topic.map(|s| self.bytes(s))
    }

    /// Its key.
    pub fn key(&self) -> Option<&'a [u8]> {
        self.record.key.map(|s| self.bytes(s))
    }

    /// Its value.
    pub fn value(&self) -> Option<&'a [u8]> {
        self.record.value.map(|s| self.bytes(s))
    }

    /// Its timestamp.
    pub fn timestamp(&self) -> Option<i64> {
        self.record.timestamp
    }

    /// Its headers, in order.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, Option<&'a [u8]>)> + 'a {
        let this = *self;
        let first = self.record.first_header as usize;
        (first..first + self.record.header_count as usize).map(move |h| {
            let (name, value) = header_at(this.headers, h);
            // Names were checked to be UTF-8 by `validate`.
            (
                std::str::from_utf8(this.bytes(name)).unwrap_or_default(),
                value.map(|v| this.bytes(v)),
            )
        })
    }

    /// The output as JSON: `{"topic", "key", "headers": [[name, value], ...], "timestamp",
    /// "value"}`, bytes as text when they are UTF-8 and as `{"hex": "..."}` otherwise.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "topic": bytes_json(self.topic()),
            "key": bytes_json(self.key()),
            "headers": self.headers().map(|(name, value)| serde_json::json!([name, bytes_json(value)])).collect::<Vec<_>>(),
            "timestamp": self.timestamp(),
            "value": bytes_json(self.value()),
        })
    }
}

/// Bytes as JSON: text when they are UTF-8, `{"hex": "..."}` otherwise, null when absent.
pub fn bytes_json(bytes: Option<&[u8]>) -> serde_json::Value {
    match bytes {
        None => serde_json::Value::Null,
        Some(b) => match std::str::from_utf8(b) {
            Ok(text) => text.into(),
            Err(_) => {
                serde_json::json!({ "hex": b.iter().map(|x| format!("{x:02x}")).collect::<String>() })
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use records::Header;

    fn span(start: u32, len: u32) -> Span {
        Span { start, len }
    }

    fn output(input: u32, value: Span) -> OutputRecord {
        OutputRecord {
            input,
            topic: None,
            key: None,
            value: Some(value),
            first_header: 0,
            header_count: 0,
            timestamp: None,
        }
    }

    fn batch(records: Vec<OutputRecord>) -> records::OutputBatch {
        records::OutputBatch {
            data: b"abcdef".to_vec(),
            headers: Vec::new(),
            records,
            errors: Vec::new(),
        }
    }

    fn check(out: &records::OutputBatch, inputs: usize) -> Result<(), String> {
        validate(&from_records(out.clone()), inputs)
    }

    #[test]
    fn hostile_outputs_are_caught_before_they_are_read() {
        assert_eq!(
            check(
                &batch(vec![output(0, span(0, 6)), output(1, span(2, 2))]),
                2
            ),
            Ok(())
        );
        assert!(
            check(&batch(vec![output(0, span(4, 3))]), 1)
                .unwrap_err()
                .contains("outside")
        );
        assert!(
            check(&batch(vec![output(0, span(u32::MAX, 2))]), 1)
                .unwrap_err()
                .contains("outside")
        );
        assert!(
            check(&batch(vec![output(3, span(0, 1))]), 2)
                .unwrap_err()
                .contains("names input 3")
        );
        assert!(
            check(
                &batch(vec![output(1, span(0, 1)), output(0, span(0, 1))]),
                2
            )
            .unwrap_err()
            .contains("order")
        );
        let mut bad_headers = batch(vec![OutputRecord {
            header_count: 1,
            ..output(0, span(0, 1))
        }]);
        assert!(check(&bad_headers, 1).is_err());
        bad_headers.headers.push(Header {
            name: span(0, 1),
            value: Some(span(5, 9)),
        });
        assert!(check(&bad_headers, 1).is_err());
    }

    #[test]
    fn single_and_append_keep_bytes_and_attribution() {
        let mut b = InputBatchBuilder::new("t", 1);
        b.push(10, None, Some(b"k1"), Some(b"v1"), [("a", Some(&b"1"[..]))]);
        b.push(11, Some(5), None, Some(b"v2"), [("b", None)]);
        let one = single(b.batch(), 1);
        assert_eq!(one.len(), 1);
        let read = InputRef::new(&one, 0);
        assert_eq!(
            (read.offset(), read.timestamp(), read.key(), read.value()),
            (11, Some(5), None, Some(&b"v2"[..]))
        );
        assert_eq!(read.headers().collect::<Vec<_>>(), vec![("b", None)]);

        let mut dst = from_records(batch(vec![output(0, span(0, 3))]));
        let src = records::OutputBatch {
            data: b"xyz".to_vec(),
            headers: vec![Header {
                name: span(0, 1),
                value: None,
            }],
            records: vec![OutputRecord {
                header_count: 1,
                ..output(0, span(1, 2))
            }],
            errors: Vec::new(),
        };
        append(&mut dst, from_records(src), 4);
        let appended = OutputRef::new(&dst, 1);
        assert_eq!((appended.input(), appended.value()), (4, Some(&b"yz"[..])));
        assert_eq!(appended.headers().collect::<Vec<_>>(), vec![("x", None)]);
    }

    #[test]
    fn outputs_become_the_next_input_without_copying_and_keep_what_is_asked() {
        let mut b = InputBatchBuilder::new("t", 1);
        b.push(10, None, None, Some(b"v1"), [("h", Some(&b"1"[..]))]);
        b.push(11, Some(3), None, Some(b"v2"), []);
        let out = records::OutputBatch {
            data: b"xyz".to_vec(),
            headers: vec![Header {
                name: span(0, 1),
                value: Some(span(1, 1)),
            }],
            records: vec![
                OutputRecord {
                    header_count: 1,
                    ..output(0, span(1, 2))
                },
                output(1, span(0, 1)),
                output(1, span(2, 1)),
            ],
            errors: Vec::new(),
        };
        let out = from_records(out);
        let data_at = out.data.as_ptr();
        let next = into_input(out, "t", 1, |i| (i != 1).then_some(20 + i as i64));
        assert_eq!(
            next.data.as_ptr(),
            data_at,
            "the bytes are handed over, not copied"
        );
        let values: Vec<(i64, &[u8])> = (0..next.len())
            .map(|i| {
                let r = InputRef::new(&next, i);
                (r.offset(), r.value().unwrap())
            })
            .collect();
        assert_eq!(values, vec![(20, &b"yz"[..]), (22, &b"z"[..])]);
        assert_eq!(
            InputRef::new(&next, 0).headers().collect::<Vec<_>>(),
            vec![("x", Some(&b"y"[..]))]
        );
        let through = OutputRef::passthrough(b.batch(), 0);
        assert_eq!(
            (through.input(), through.value(), through.topic()),
            (0, Some(&b"v1"[..]), None)
        );
        assert_eq!(
            through.headers().collect::<Vec<_>>(),
            vec![("h", Some(&b"1"[..]))]
        );
    }
}

/// Property tests of the contract's batch layout: what a hostile or broken guest returns can
/// never make the host read out of bounds, and what the host packs reads back the same. The
/// cases proptest finds failing are kept in `proptest-regressions/` beside this file and
/// replayed first on every run.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use records::Header;

    fn any_span(data: usize) -> impl Strategy<Value = Span> {
        // Mostly near the data, sometimes anywhere: off-by-one and overflow both get tried.
        let near = (0..=data as u32 + 2, 0..=data as u32 + 2);
        prop_oneof![
            4 => near.prop_map(|(start, len)| Span { start, len }),
            1 => (any::<u32>(), any::<u32>()).prop_map(|(start, len)| Span { start, len }),
        ]
    }

    fn any_output_batch() -> impl Strategy<Value = records::OutputBatch> {
        prop::collection::vec(any::<u8>(), 0..64).prop_flat_map(|data| {
            let n = data.len();
            let header = (any_span(n), prop::option::of(any_span(n)))
                .prop_map(|(name, value)| Header { name, value });
            let record = (
                0..6u32,
                prop::option::of(any_span(n)),
                prop::option::of(any_span(n)),
                prop::option::of(any_span(n)),
                0..8u32,
                0..4u32,
                prop::option::of(any::<i64>()),
            )
                .prop_map(
                    |(input, topic, key, value, first_header, header_count, timestamp)| {
                        OutputRecord {
                            input,
                            topic,
                            key,
                            value,
                            first_header,
                            header_count,
                            timestamp,
                        }
                    },
                );
            let error = (0..6u32, ".{0,8}").prop_map(|(input, message)| {
                super::super::bindings::sluice::transform::types::RecordError { input, message }
            });
            (
                Just(data),
                prop::collection::vec(header, 0..6),
                prop::collection::vec(record, 0..6),
                prop::collection::vec(error, 0..3),
            )
                .prop_map(|(data, headers, records, errors)| records::OutputBatch {
                    data,
                    headers,
                    records,
                    errors,
                })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn whatever_a_guest_returns_is_refused_or_read_in_bounds(
            out in any_output_batch(),
            inputs in 0..5usize,
            // Now and then one column is a number short or long.
            damage in prop::option::weighted(0.2, (0..7usize, any::<bool>())),
        ) {
            let mut out = from_records(out);
            if let Some((column, longer)) = damage {
                let mut columns = [&mut out.topics, &mut out.keys, &mut out.values,
                    &mut out.header_ranges, &mut out.headers, &mut out.inputs];
                let column = &mut columns[column % 6];
                if longer { column.push(1) } else { column.pop(); }
            }
            if validate(&out, inputs).is_ok() {
                for index in 0..out.len() {
                    let o = OutputRef::new(&out, index);
                    prop_assert!(o.input() < inputs);
                    let _ = (o.topic(), o.key(), o.value(), o.timestamp());
                    let _: Vec<_> = o.headers().collect();
                    let _ = o.to_json();
                }
            }
        }

        #[test]
        fn packed_records_read_back_the_same(
            records in prop::collection::vec((
                any::<i64>(),
                prop::option::of(NO_TIMESTAMP + 1..),
                prop::option::of(prop::collection::vec(any::<u8>(), 0..16)),
                prop::option::of(prop::collection::vec(any::<u8>(), 0..16)),
                prop::collection::vec(("[a-z.]{0,6}", prop::option::of(prop::collection::vec(any::<u8>(), 0..6))), 0..3),
            ), 0..8)
        ) {
            let mut builder = InputBatchBuilder::new("topic", 3);
            for (offset, timestamp, key, value, headers) in &records {
                builder.push(*offset, *timestamp, key.as_deref(), value.as_deref(),
                    headers.iter().map(|(k, v)| (k.as_str(), v.as_deref())));
            }
            let batch = builder.batch();
            prop_assert_eq!(batch.len(), records.len());
            let legacy = to_records(batch);
            prop_assert_eq!(legacy.records.len(), records.len());
            for (index, (offset, timestamp, key, value, headers)) in records.iter().enumerate() {
                for read in [InputRef::new(batch, index), InputRef::new(&single(batch, index), 0)] {
                    prop_assert_eq!(read.offset(), *offset);
                    prop_assert_eq!(read.timestamp(), *timestamp);
                    prop_assert_eq!(read.key(), key.as_deref());
                    prop_assert_eq!(read.value(), value.as_deref());
                    let read_headers: Vec<(String, Option<Vec<u8>>)> =
                        read.headers().map(|(k, v)| (k.to_string(), v.map(<[u8]>::to_vec))).collect();
                    prop_assert_eq!(&read_headers, headers);
                }
                // The record layout, for components without `columnar`, says the same.
                let r = &legacy.records[index];
                let bytes = |s: Span| legacy.data[range(s)].to_vec();
                prop_assert_eq!((r.offset, r.timestamp), (*offset, *timestamp));
                prop_assert_eq!((r.key.map(bytes), r.value.map(bytes)), (key.clone(), value.clone()));
                prop_assert_eq!(r.header_count as usize, headers.len());
            }
        }
    }
}
