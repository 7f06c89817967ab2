import type { Config } from "./config.ts";
import type { SluiceRecord } from "./record.ts";
import type { Writer } from "./writer.ts";

/**
 * A stream transform: built once per instance from the deployment's configuration (throw a
 * `SluiceError` naming the key to refuse the deployment), then called for every record.
 *
 * An instance lives as long as its partition worker, so state kept in fields (counters, caches)
 * persists across batches, but not across restarts or redeployments.
 */
export interface Transform {
  /**
   * Handles one record: write zero or more outputs to `out` (none filters the record out), or
   * throw. On an exception the outputs already written for this record are discarded and the
   * record goes to the pipeline's dead-letter topic with the message: a `SluiceError`'s as it
   * is, any other error's prefixed with its name (`TypeError: ...`).
   */
  process(record: SluiceRecord, out: Writer): void;
}

/** A transform class: what a transform module exports by default. */
export type TransformClass = new (config: Config) => Transform;
