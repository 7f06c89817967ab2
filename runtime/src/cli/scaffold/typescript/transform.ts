/**
 * A Sluice transform: renames fields of JSON records and adds constant ones.
 *
 * Configuration (all optional):
 * - `rename`: comma-separated `old:new` pairs, e.g. `msg:message,ts:timestamp`
 * - `add`: comma-separated `field:value` pairs of string fields to add, e.g. `source:web`
 */
import { Config, SluiceError, type SluiceRecord, type Writer } from "sluice-sdk";

/** Parses `a:b,c:d` into pairs, naming `key` in the error. */
function pairs(config: Config, key: string): [string, string][] {
  const found: [string, string][] = [];
  for (const pair of (config.get(key) ?? "").split(",").map((p) => p.trim())) {
    if (pair === "") continue;
    const colon = pair.indexOf(":");
    if (colon < 1 || pair.slice(0, colon).trim() === "") {
      throw new SluiceError(`${key}: expected \`name:value\` pairs, got \`${pair}\``);
    }
    found.push([pair.slice(0, colon).trim(), pair.slice(colon + 1).trim()]);
  }
  return found;
}

/** Renames and adds fields of JSON object records. */
export default class {{TYPE}} {
  private readonly rename: Map<string, string>;
  private readonly add: [string, string][];

  constructor(config: Config) {
    config.allowOnly(["rename", "add"]);
    // The first pair for a name wins.
    this.rename = new Map(pairs(config, "rename").reverse());
    this.add = pairs(config, "add");
  }

  process(record: SluiceRecord, out: Writer): void {
    const value: unknown = record.json();
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new SluiceError("expected a JSON object");
    }
    // Rebuilt in order, so a renamed field keeps its place.
    const renamed: Record<string, unknown> = {};
    for (const [name, field] of Object.entries(value)) {
      renamed[this.rename.get(name) ?? name] = field;
    }
    for (const [name, field] of this.add) renamed[name] = field;
    out.writeJson(renamed);
  }
}
