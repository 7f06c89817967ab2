/**
 * The contract's batch types (`sluice:transform/types`), as componentize-js passes them: record
 * fields in camelCase, options as `undefined`, `s64` as `bigint`. Not part of the API.
 */

/** A range of bytes inside the `data` buffer of the batch that holds it. */
export interface Span {
  start: number;
  len: number;
}

/** One header; its value is absent for a null value. */
export interface WireHeader {
  name: Span;
  value: Span | undefined;
}

/** A record read from Kafka; its headers are `headers[firstHeader, firstHeader + headerCount)`. */
export interface WireInputRecord {
  offset: bigint;
  timestamp: bigint | undefined;
  key: Span | undefined;
  value: Span | undefined;
  firstHeader: number;
  headerCount: number;
}

/** Consecutive records from one partition of one topic. */
export interface InputBatch {
  topic: string;
  partition: number;
  data: Uint8Array;
  headers: WireHeader[];
  records: WireInputRecord[];
}

/** An output; `input` is the index of the record it derives from, `topic` absent for the default. */
export interface WireOutputRecord {
  input: number;
  topic: Span | undefined;
  key: Span | undefined;
  value: Span | undefined;
  firstHeader: number;
  headerCount: number;
  timestamp: bigint | undefined;
}

/** A record the transform could not handle. */
export interface RecordError {
  input: number;
  message: string;
}

/** What a transform returns for one input batch. */
export interface OutputBatch {
  data: Uint8Array;
  headers: WireHeader[];
  records: WireOutputRecord[];
  errors: RecordError[];
}
