use crate::columns::{self, push_span};
use crate::wit::columnar::OutputColumns;
use crate::wit::types::Span;
use crate::{Error, Header, Record};
use serde::Serialize;

/// Where a transform writes the outputs of the record it is handling.
///
/// Outputs inherit the input's key, headers and timestamp unless an [`OutputRecord`] says
/// otherwise, so that keyed data stays in its partition downstream.
pub struct Writer<'a> {
    input: Record<'a>,
    input_index: u32,
    pub(crate) out: OutputColumns,
}

/// An output record with explicit settings, for [`Writer::write_record`].
#[derive(Debug, Clone, Default)]
pub struct OutputRecord<'b> {
    value: Option<&'b [u8]>,
    topic: Option<&'b str>,
    key: Option<Option<&'b [u8]>>,
    timestamp: Option<Option<i64>>,
    keep_headers: bool,
    headers: Vec<Header<'b>>,
}

impl<'b> OutputRecord<'b> {
    /// An output with this value (`None` for a tombstone), inheriting key, headers and timestamp.
    pub fn new(value: Option<&'b [u8]>) -> Self {
        OutputRecord {
            value,
            keep_headers: true,
            ..Default::default()
        }
    }

    /// Sends it to `topic`, which must be one of the pipeline's outputs, instead of the default.
    pub fn topic(mut self, topic: &'b str) -> Self {
        self.topic = Some(topic);
        self
    }

    /// Sets its key (`None` for a null key) instead of inheriting the input's.
    pub fn key(mut self, key: Option<&'b [u8]>) -> Self {
        self.key = Some(key);
        self
    }

    /// Sets its timestamp (`None` lets the producer stamp it) instead of inheriting the input's.
    pub fn timestamp(mut self, timestamp: Option<i64>) -> Self {
        self.timestamp = Some(timestamp);
        self
    }

    /// Drops the headers inherited from the input.
    pub fn without_input_headers(mut self) -> Self {
        self.keep_headers = false;
        self
    }

    /// Adds a header after the inherited ones.
    pub fn header(mut self, name: &'b str, value: Option<&'b [u8]>) -> Self {
        self.headers.push(Header { name, value });
        self
    }
}

impl<'a> Writer<'a> {
    pub(crate) fn with_capacity(bytes: usize, records: usize) -> Self {
        Writer {
            input: Record::default(),
            input_index: 0,
            out: columns::output_with_capacity(bytes, records),
        }
    }

    /// Makes `input` the record that following outputs derive from.
    pub(crate) fn begin(&mut self, input_index: u32, input: Record<'a>) {
        self.input_index = input_index;
        self.input = input;
    }

    /// How far the writer got, to undo a failed record's outputs with [`Writer::rollback`].
    pub(crate) fn mark(&self) -> (usize, usize, usize) {
        let out = &self.out;
        (out.data.len(), out.headers.len(), out.inputs.len())
    }

    pub(crate) fn rollback(&mut self, (data, headers, outputs): (usize, usize, usize)) {
        let out = &mut self.out;
        out.data.truncate(data);
        out.headers.truncate(headers);
        out.inputs.truncate(outputs);
        out.timestamps.truncate(outputs);
        for column in [
            &mut out.topics,
            &mut out.keys,
            &mut out.values,
            &mut out.header_ranges,
        ] {
            column.truncate(2 * outputs);
        }
    }

    /// Writes `value` to the default output, with the input's key, headers and timestamp.
    pub fn write(&mut self, value: impl AsRef<[u8]>) -> Result<(), Error> {
        let value = self.push(value.as_ref());
        self.finish(None, Some(value), None, None, true, &[]);
        Ok(())
    }

    /// Writes `value` to `topic`, which must be one of the pipeline's outputs.
    pub fn write_to(&mut self, topic: &str, value: impl AsRef<[u8]>) -> Result<(), Error> {
        let topic = self.push(topic.as_bytes());
        let value = self.push(value.as_ref());
        self.finish(Some(topic), Some(value), None, None, true, &[]);
        Ok(())
    }

    /// Serialises `value` as JSON and writes it like [`Writer::write`].
    pub fn write_json<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.write_with(|buf| {
            serde_json::to_writer(buf, value)
                .map_err(|e| Error::new(format!("cannot serialise output as JSON: {e}")))
        })
    }

    /// Writes a value that `build` appends to the buffer it is given, like [`Writer::write`]
    /// but without an intermediate copy. If `build` fails, nothing is written.
    pub fn write_with(
        &mut self,
        build: impl FnOnce(&mut Vec<u8>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let data = &mut self.out.data;
        let start = data.len();
        if let Err(e) = build(data) {
            data.truncate(start);
            return Err(e);
        }
        let value = Span {
            start: start as u32,
            len: (data.len() - start) as u32,
        };
        self.finish(None, Some(value), None, None, true, &[]);
        Ok(())
    }

    /// Writes an output with explicit topic, key, headers or timestamp.
    pub fn write_record(&mut self, record: OutputRecord<'_>) -> Result<(), Error> {
        let topic = record.topic.map(|t| self.push(t.as_bytes()));
        let value = record.value.map(|v| self.push(v));
        let key = record.key.map(|k| k.map(|k| self.push(k)));
        self.finish(
            topic,
            value,
            key,
            record.timestamp,
            record.keep_headers,
            &record.headers,
        );
        Ok(())
    }

    fn push(&mut self, bytes: &[u8]) -> Span {
        columns::push_bytes(&mut self.out.data, bytes)
    }

    fn push_header(&mut self, header: &Header<'_>) {
        let name = self.push(header.name.as_bytes());
        let value = header.value.map(|v| self.push(v));
        push_span(&mut self.out.headers, Some(name));
        push_span(&mut self.out.headers, value);
    }

    /// Completes an output; `None` for key or timestamp means "inherit the input's".
    fn finish(
        &mut self,
        topic: Option<Span>,
        value: Option<Span>,
        key: Option<Option<Span>>,
        timestamp: Option<Option<i64>>,
        keep_headers: bool,
        extra_headers: &[Header<'_>],
    ) {
        let key = key.unwrap_or_else(|| self.input.key.map(|k| self.push(k)));
        let first_header = (self.out.headers.len() / 4) as u32;
        if keep_headers {
            for header in self.input.headers {
                self.push_header(header);
            }
        }
        for header in extra_headers {
            self.push_header(header);
        }
        let out = &mut self.out;
        out.inputs.push(self.input_index);
        push_span(&mut out.topics, topic);
        push_span(&mut out.keys, key);
        push_span(&mut out.values, value);
        columns::push_timestamp(
            &mut out.timestamps,
            timestamp.unwrap_or(self.input.timestamp),
        );
        let header_count = (out.headers.len() / 4) as u32 - first_header;
        out.header_ranges.extend([first_header, header_count]);
    }
}
