// The contract's imports, as componentize-js binds them inside a component.

declare module "sluice:transform/log@0.1.0" {
  export function log(level: "trace" | "debug" | "info" | "warn" | "error", message: string): void;
}

declare module "sluice:transform/tables@0.1.0" {
  /** Throws an error whose `payload` is the host's message for an undeclared table. */
  export function lookup(table: string, key: Uint8Array): Uint8Array | undefined;
}
