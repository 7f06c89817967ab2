/**
 * Runs a transform over one packed batch: the code between the contract and `process`, shared
 * by the component's export and by `sluice-sdk/testing`, so native tests see the component's
 * semantics. Not part of the API.
 */
import { messageOf } from "./error.ts";
import { SluiceRecord, type Header } from "./record.ts";
import type { Transform } from "./transform.ts";
import type { InputBatch, OutputBatch, RecordError, Span } from "./wire.ts";
import { BatchWriter } from "./writer.ts";

const decoder = new TextDecoder("utf-8", { ignoreBOM: true });

/** Runs `transform` over every record of `batch`: the outputs and per-record errors. */
export function runBatch(transform: Transform, batch: InputBatch): OutputBatch {
  const { data } = batch;
  const bytes = (span: Span | undefined) => span && data.subarray(span.start, span.start + span.len);
  const headers: Header[] = batch.headers.map((h) => ({
    // The host only passes header names that are present and UTF-8.
    name: decoder.decode(bytes(h.name)),
    value: bytes(h.value),
  }));
  const out = new BatchWriter(data.length + data.length / 4);
  const errors: RecordError[] = [];
  batch.records.forEach((r, index) => {
    const record = new SluiceRecord(
      batch.topic,
      batch.partition,
      Number(r.offset),
      r.timestamp === undefined ? undefined : Number(r.timestamp),
      bytes(r.key),
      bytes(r.value),
      headers.slice(r.firstHeader, r.firstHeader + r.headerCount),
    );
    out.begin(index, record);
    const mark = out.mark();
    try {
      transform.process(record, out);
    } catch (e) {
      out.rollback(mark);
      errors.push({ input: index, message: messageOf(e) });
    }
  });
  return { data: out.bytes(), headers: out.headers, records: out.records, errors };
}
