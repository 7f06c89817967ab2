/**
 * Lines for the runtime's log (target `sluice::guest`), tagged with the transform's name; the
 * runtime's log filter decides which levels are kept. Natively (in tests) they go to standard
 * error instead.
 *
 * ```ts
 * import { log } from "sluice-sdk";
 * log.warn(`record at offset ${record.offset}: field \`date\` is empty, using the default`);
 * ```
 */
import { host } from "./host.ts";

/** Logs at trace level: very detailed tracing. */
export function trace(message: string): void {
  host.log("trace", message);
}

/** Logs at debug level: detail useful when debugging a transform. */
export function debug(message: string): void {
  host.log("debug", message);
}

/** Logs at info level: normal operation worth noting. */
export function info(message: string): void {
  host.log("info", message);
}

/** Logs at warn level: something unexpected that the transform handled. */
export function warn(message: string): void {
  host.log("warn", message);
}

/** Logs at error level: something failed. */
export function error(message: string): void {
  host.log("error", message);
}
