/**
 * What the SDK needs from the Sluice runtime: logging and table lookups. Natively (in tests)
 * lines go to standard error and lookups read the fake tables of `sluice-sdk/testing`; inside a
 * component, `component.ts` installs the host's imports instead. Not part of the API.
 */

/** A log level, as the contract names it. */
export type Level = "trace" | "debug" | "info" | "warn" | "error";

/** The runtime's services the SDK calls. */
export interface Host {
  /** Writes one line to the runtime's log. */
  log(level: Level, message: string): void;
  /** The latest value of `key` in `table`; throws the host's message for an undeclared table. */
  lookup(table: string, key: Uint8Array): Uint8Array | undefined;
}

/** Fake tables for native tests: name, then key (as a binary string) to value. */
export const fakeTables = new Map<string, Map<string, Uint8Array>>();

/** A map key standing for `bytes`, one character per byte. */
export function bytesKey(bytes: Uint8Array): string {
  return String.fromCharCode(...bytes);
}

const native: Host = {
  log(level, message) {
    console.error(`[${level}] ${message}`);
  },
  lookup(table, key) {
    const entries = fakeTables.get(table);
    if (entries === undefined) {
      throw new Error(`this pipeline declares no table named \`${table}\``);
    }
    return entries.get(bytesKey(key));
  },
};

/** The host in use: native until a component installs its own. */
export let host: Host = native;

/** Makes `replacement` the host; called once by the component glue. */
export function installHost(replacement: Host): void {
  host = replacement;
}
