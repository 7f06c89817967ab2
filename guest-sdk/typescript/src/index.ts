/**
 * Write Sluice stream transforms in TypeScript.
 *
 * A transform is a class, built once per instance from the deployment's `Config`, whose
 * `process` is called once per record with the record and a `Writer` for its outputs. Its
 * module exports it by default; `sluice-ts build` turns it into a WebAssembly component and
 * `sluice-ts test` runs its tests natively, through `sluice-sdk/testing`.
 *
 * ```ts
 * import { Config, SluiceError, SluiceRecord, Transform, Writer } from "sluice-sdk";
 *
 * // Upper-cases the `name` field of JSON records; drops records marked `"skip": true`.
 * export default class Shout implements Transform {
 *   private readonly field: string;
 *
 *   constructor(config: Config) {
 *     config.allowOnly(["field"]);
 *     this.field = config.get("field") ?? "name";
 *   }
 *
 *   process(record: SluiceRecord, out: Writer): void {
 *     const value = record.json() as Record<string, unknown>;
 *     if (value.skip === true) return; // no output: the record is filtered out
 *     const name = value[this.field];
 *     if (typeof name !== "string") {
 *       throw new SluiceError(`field \`${this.field}\` is missing or not a string`);
 *     }
 *     out.writeJson({ ...value, [this.field]: name.toUpperCase() });
 *   }
 * }
 * ```
 */
export { Config } from "./config.ts";
export { SluiceError } from "./error.ts";
export * as json from "./json.ts";
export * as log from "./log.ts";
export { SluiceRecord, type Header } from "./record.ts";
export * as tables from "./tables.ts";
export type { Transform, TransformClass } from "./transform.ts";
export type { Bytes, HeaderInit, OutputRecord, Writer } from "./writer.ts";
