//! Packing records into the contract's batch layout and reading outputs back out of it.

use super::bindings::sluice::transform::types::{
    Header, InputBatch, InputRecord, OutputBatch, OutputRecord, Span,
};
use std::ops::Range;

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
            headers: Vec::new(),
            records: Vec::new(),
        };
        InputBatchBuilder { batch }
    }

    /// Empties the batch, keeping its buffers, for records of `topic`/`partition`.
    pub fn reset(&mut self, topic: &str, partition: i32) {
        if self.batch.topic != topic {
            self.batch.topic = topic.to_string();
        }
        self.batch.partition = partition;
        self.batch.data.clear();
        self.batch.headers.clear();
        self.batch.records.clear();
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
        let first_header = self.batch.headers.len() as u32;
        for (name, value) in headers {
            let name = push(&mut self.batch.data, name.as_bytes());
            let value = value.map(|v| push(&mut self.batch.data, v));
            self.batch.headers.push(Header { name, value });
        }
        let key = key.map(|k| push(&mut self.batch.data, k));
        let value = value.map(|v| push(&mut self.batch.data, v));
        self.batch.records.push(InputRecord {
            offset,
            timestamp,
            key,
            value,
            first_header,
            header_count: self.batch.headers.len() as u32 - first_header,
        });
    }

    /// Records in the batch.
    pub fn len(&self) -> usize {
        self.batch.records.len()
    }

    /// Whether the batch has no records.
    pub fn is_empty(&self) -> bool {
        self.batch.records.is_empty()
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

/// The batch holding only record `index` of `batch`, with the same topic and partition.
pub(crate) fn single(batch: &InputBatch, index: usize) -> InputBatch {
    let r = &batch.records[index];
    let mut one = InputBatchBuilder::new(&batch.topic, batch.partition);
    let headers =
        &batch.headers[r.first_header as usize..(r.first_header + r.header_count) as usize];
    let bytes = |span: Span| &batch.data[range(span)];
    one.push(
        r.offset,
        r.timestamp,
        r.key.map(bytes),
        r.value.map(bytes),
        headers.iter().map(|h| {
            (
                std::str::from_utf8(bytes(h.name)).unwrap_or_default(),
                h.value.map(bytes),
            )
        }),
    );
    one.batch
}

/// Checks that every span and index a guest returned stays inside the batch, so that reading
/// outputs can never go out of bounds, and that outputs come in input order.
pub(crate) fn validate(out: &OutputBatch, inputs: usize) -> Result<(), String> {
    let data = out.data.len();
    let span_ok = |s: &Span| {
        (s.start as usize)
            .checked_add(s.len as usize)
            .is_some_and(|end| end <= data)
    };
    for h in &out.headers {
        if !span_ok(&h.name)
            || !h.value.as_ref().is_none_or(span_ok)
            || std::str::from_utf8(&out.data[range(h.name)]).is_err()
        {
            return Err("a header points outside the output data or has a non-UTF-8 name".into());
        }
    }
    let mut last_input = 0;
    for (i, r) in out.records.iter().enumerate() {
        if r.input as usize >= inputs {
            return Err(format!(
                "output {i} names input {} of a batch of {inputs}",
                r.input
            ));
        }
        if r.input < last_input {
            return Err(format!("output {i} is out of input order"));
        }
        last_input = r.input;
        let spans = [r.topic.as_ref(), r.key.as_ref(), r.value.as_ref()];
        let headers_end = r.first_header as usize + r.header_count as usize;
        if !spans.into_iter().flatten().all(span_ok) || headers_end > out.headers.len() {
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
    let (shift, header_shift) = (dst.data.len() as u32, dst.headers.len() as u32);
    let moved = |s: Span| Span {
        start: s.start + shift,
        len: s.len,
    };
    dst.data.extend_from_slice(&src.data);
    dst.headers.extend(src.headers.into_iter().map(|h| Header {
        name: moved(h.name),
        value: h.value.map(moved),
    }));
    dst.records
        .extend(src.records.into_iter().map(|r| OutputRecord {
            input,
            topic: r.topic.map(moved),
            key: r.key.map(moved),
            value: r.value.map(moved),
            first_header: r.first_header + header_shift,
            ..r
        }));
}

/// Record `index` of an input batch, borrowing its bytes.
pub struct InputRef<'a> {
    batch: &'a InputBatch,
    record: &'a InputRecord,
}

impl<'a> InputRef<'a> {
    /// Record `index` of `batch`.
    pub fn new(batch: &'a InputBatch, index: usize) -> Self {
        InputRef {
            batch,
            record: &batch.records[index],
        }
    }

    fn bytes(&self, span: Span) -> &'a [u8] {
        &self.batch.data[range(span)]
    }

    /// Its offset.
    pub fn offset(&self) -> i64 {
        self.record.offset
    }

    /// Its timestamp.
    pub fn timestamp(&self) -> Option<i64> {
        self.record.timestamp
    }

    /// Its key.
    pub fn key(&self) -> Option<&'a [u8]> {
        self.record.key.map(|s| self.bytes(s))
    }

    /// Its value.
    pub fn value(&self) -> Option<&'a [u8]> {
        self.record.value.map(|s| self.bytes(s))
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
        let batch = self.batch;
        let bytes = move |span: Span| &batch.data[range(span)];
        let first = self.record.first_header as usize;
        batch.headers[first..first + self.record.header_count as usize]
            .iter()
            .map(move |h| {
                (
                    std::str::from_utf8(bytes(h.name)).unwrap_or_default(),
                    h.value.map(bytes),
                )
            })
    }
}

/// Turns a stage's outputs into the next stage's input without copying their bytes: the data
/// and header buffers are handed over, and output `i` becomes a record at offset
/// `offset_of(i)`, or is left out where that is `None`.
pub(crate) fn into_input(
    output: OutputBatch,
    topic: &str,
    partition: i32,
    mut offset_of: impl FnMut(usize) -> Option<i64>,
) -> InputBatch {
    let records = (output.records.iter().enumerate())
        .filter_map(|(i, r)| {
            Some(InputRecord {
                offset: offset_of(i)?,
                timestamp: r.timestamp,
                key: r.key,
                value: r.value,
                first_header: r.first_header,
                header_count: r.header_count,
            })
        })
        .collect();
    InputBatch {
        topic: topic.to_string(),
        partition,
        data: output.data,
        headers: output.headers,
        records,
    }
}

/// One output of a processed batch (or an input record passed through), borrowing its bytes.
#[derive(Clone, Copy)]
pub struct OutputRef<'a> {
    data: &'a [u8],
    headers: &'a [Header],
    record: OutputRecord,
}

impl<'a> OutputRef<'a> {
    /// Output `index` of `batch`.
    pub(crate) fn new(batch: &'a OutputBatch, index: usize) -> Self {
        OutputRef {
            data: &batch.data,
            headers: &batch.headers,
            record: batch.records[index],
        }
    }

    /// Record `index` of `batch` as its own output, unchanged: what an empty chain writes.
    pub fn passthrough(batch: &'a InputBatch, index: usize) -> Self {
        let r = &batch.records[index];
        OutputRef {
            data: &batch.data,
            headers: &batch.headers,
            record: OutputRecord {
                input: index as u32,
                topic: None,
                key: r.key,
                value: r.value,
                first_header: r.first_header,
                header_count: r.header_count,
                timestamp: r.timestamp,
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
        self.headers[first..first + self.record.header_count as usize]
            .iter()
            // Names were checked to be UTF-8 by `validate`.
            .map(move |h| {
                (
                    std::str::from_utf8(this.bytes(h.name)).unwrap_or_default(),
                    h.value.map(|v| this.bytes(v)),
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

    fn batch(records: Vec<OutputRecord>) -> OutputBatch {
        OutputBatch {
            data: b"abcdef".to_vec(),
            headers: Vec::new(),
            records,
            errors: Vec::new(),
        }
    }

    #[test]
    fn hostile_outputs_are_caught_before_they_are_read() {
        assert_eq!(
            validate(
                &batch(vec![output(0, span(0, 6)), output(1, span(2, 2))]),
                2
            ),
            Ok(())
        );
        assert!(
            validate(&batch(vec![output(0, span(4, 3))]), 1)
                .unwrap_err()
                .contains("outside")
        );
        assert!(
            validate(&batch(vec![output(0, span(u32::MAX, 2))]), 1)
                .unwrap_err()
                .contains("outside")
        );
        assert!(
            validate(&batch(vec![output(3, span(0, 1))]), 2)
                .unwrap_err()
                .contains("names input 3")
        );
        assert!(
            validate(
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
        assert!(validate(&bad_headers, 1).is_err());
        bad_headers.headers.push(Header {
            name: span(0, 1),
            value: Some(span(5, 9)),
        });
        assert!(validate(&bad_headers, 1).is_err());
    }

    #[test]
    fn single_and_append_keep_bytes_and_attribution() {
        let mut b = InputBatchBuilder::new("t", 1);
        b.push(10, None, Some(b"k1"), Some(b"v1"), [("a", Some(&b"1"[..]))]);
        b.push(11, Some(5), None, Some(b"v2"), [("b", None)]);
        let one = single(b.batch(), 1);
        assert_eq!(one.records.len(), 1);
        assert_eq!(
            (
                one.records[0].offset,
                one.records[0].timestamp,
                one.records[0].key.is_none()
            ),
            (11, Some(5), true)
        );
        assert_eq!(&one.data[range(one.records[0].value.unwrap())], b"v2");
        assert_eq!(&one.data[range(one.headers[0].name)], b"b");

        let mut dst = batch(vec![output(0, span(0, 3))]);
        let src = OutputBatch {
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
        append(&mut dst, src, 4);
        let appended = OutputRef::new(&dst, 1);
        assert_eq!((appended.input(), appended.value()), (4, Some(&b"yz"[..])));
        assert_eq!(appended.headers().collect::<Vec<_>>(), vec![("x", None)]);
    }

    #[test]
    fn outputs_become_the_next_input_without_copying_and_keep_what_is_asked() {
        let mut b = InputBatchBuilder::new("t", 1);
        b.push(10, None, None, Some(b"v1"), [("h", Some(&b"1"[..]))]);
        b.push(11, Some(3), None, Some(b"v2"), []);
        let out = OutputBatch {
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
        let data_at = out.data.as_ptr();
        let next = into_input(out, "t", 1, |i| (i != 1).then_some(20 + i as i64));
        assert_eq!(
            next.data.as_ptr(),
            data_at,
            "the bytes are handed over, not copied"
        );
        let values: Vec<(i64, &[u8])> = (0..next.records.len())
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

    fn any_span(data: usize) -> impl Strategy<Value = Span> {
        // Mostly near the data, sometimes anywhere: off-by-one and overflow both get tried.
        let near = (0..=data as u32 + 2, 0..=data as u32 + 2);
        prop_oneof![
            4 => near.prop_map(|(start, len)| Span { start, len }),
            1 => (any::<u32>(), any::<u32>()).prop_map(|(start, len)| Span { start, len }),
        ]
    }

    fn any_output_batch() -> impl Strategy<Value = OutputBatch> {
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
                .prop_map(|(data, headers, records, errors)| OutputBatch {
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
        fn whatever_a_guest_returns_is_refused_or_read_in_bounds(out in any_output_batch(), inputs in 0..5usize) {
            if validate(&out, inputs).is_ok() {
                for index in 0..out.records.len() {
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
                prop::option::of(any::<i64>()),
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
            prop_assert_eq!(batch.records.len(), records.len());
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
            }
        }
    }
}
