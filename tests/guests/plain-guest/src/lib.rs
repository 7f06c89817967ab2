//! A transform written against the WIT contract alone, without sluice-sdk: it exports
//! `transform` and not `columnar`, like every component built before `columnar` existed, so
//! the host must hand it batches in the record layout.
//!
//! Every record becomes one output with the same key, headers and timestamp and its value
//! upper-cased (ASCII), except that a record whose value is `fail` is a per-record error.
//!
//! Only built for Wasm: natively there is nothing to link the exports' names to.
#![cfg(target_arch = "wasm32")]

wit_bindgen::generate!({
    path: "../../../wit",
    world: "transformer",
});

use exports::sluice::transform::transform::Guest;
use sluice::transform::types::{InputBatch, OutputBatch, OutputRecord, RecordError, Span};

struct Plain;

impl Guest for Plain {
    fn init(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn process(batch: InputBatch) -> OutputBatch {
        let mut out = OutputBatch {
            data: Vec::with_capacity(batch.data.len()),
            headers: Vec::new(),
            records: Vec::new(),
            errors: Vec::new(),
        };
        // The output keeps the input's bytes where they were, so the input's spans stay valid;
        // only values are rewritten, appended after them.
        out.data.extend_from_slice(&batch.data);
        out.headers = batch.headers;
        for (index, r) in batch.records.iter().enumerate() {
            let value = r
                .value
                .map(|v| &batch.data[v.start as usize..(v.start + v.len) as usize]);
            if value == Some(b"fail") {
                out.errors.push(RecordError {
                    input: index as u32,
                    message: "the value is `fail`".into(),
                });
                continue;
            }
            let value = value.map(|v| {
                let start = out.data.len() as u32;
                out.data.extend(v.iter().map(u8::to_ascii_uppercase));
                Span {
                    start,
                    len: v.len() as u32,
                }
            });
            out.records.push(OutputRecord {
                input: index as u32,
                topic: None,
                key: r.key,
                value,
                first_header: r.first_header,
                header_count: r.header_count,
                timestamp: r.timestamp,
            });
        }
        out
    }
}

export!(Plain);
