import { SluiceError } from "./error.ts";

/**
 * A deployment's configuration: the key/value pairs of its `config` table. Errors name the key
 * and the value, in the same words as the Rust SDK's.
 */
export class Config {
  private readonly pairs: readonly (readonly [string, string])[];

  /** A configuration holding these pairs; the last value of a repeated key wins. */
  constructor(pairs: Iterable<readonly [string, string]> = []) {
    this.pairs = [...pairs];
  }

  /** The value of `key`, if set. */
  get(key: string): string | undefined {
    for (let i = this.pairs.length - 1; i >= 0; i--) {
      const [k, v] = this.pairs[i]!;
      if (k === key) return v;
    }
    return undefined;
  }

  /** The value of `key`; throws naming the key when it is unset. */
  require(key: string): string {
    const value = this.get(key);
    if (value === undefined) {
      throw new SluiceError(`config key \`${key}\` is required`);
    }
    return value;
  }

  /** The value of `key`, which must be one of `choices`; `undefined` when unset. */
  choice<C extends string>(key: string, choices: readonly C[]): C | undefined {
    const value = this.get(key);
    if (value !== undefined && !(choices as readonly string[]).includes(value)) {
      throw new SluiceError(
        `config key \`${key}\`: invalid value \`${value}\`, expected one of: ${choices.join(", ")}`,
      );
    }
    return value as C | undefined;
  }

  /** The value of `key` as `true` or `false`; `undefined` when unset. */
  bool(key: string): boolean | undefined {
    return this.parse(key, (v) => {
      if (v === "true" || v === "false") return v === "true";
      throw "provided string was not `true` or `false`";
    });
  }

  /** The value of `key` as a whole number (a safe integer); `undefined` when unset. */
  int(key: string): number | undefined {
    return this.parse(key, (v) => {
      if (v === "") throw "cannot parse integer from empty string";
      if (!/^[+-]?\d+$/.test(v)) throw "invalid digit found in string";
      const n = Number(v);
      if (!Number.isSafeInteger(n)) throw "number too large to fit in target type";
      return n;
    });
  }

  /** The value of `key` as a number; `undefined` when unset. */
  number(key: string): number | undefined {
    return this.parse(key, (v) => {
      const n = Number(v);
      // `Number` also takes "", " 1" and "0x1F", which are not decimal numbers.
      if (!/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(v) || Number.isNaN(n)) {
        throw "invalid float literal";
      }
      return n;
    });
  }

  /**
   * Refuses keys other than `known`, so that a typo is an error rather than a silently ignored
   * setting.
   */
  allowOnly(known: readonly string[]): void {
    const unknown = this.pairs.find(([k]) => !known.includes(k));
    if (unknown !== undefined) {
      throw new SluiceError(`unknown config key \`${unknown[0]}\`; known keys: ${known.join(", ")}`);
    }
  }

  /** Every pair, in the order given. */
  entries(): IterableIterator<readonly [string, string]> {
    return this.pairs.values();
  }

  /**
   * The value of `key` converted by `convert`, which throws the reason (a string) when the value
   * does not convert; `undefined` when unset.
   */
  private parse<T>(key: string, convert: (value: string) => T): T | undefined {
    const value = this.get(key);
    if (value === undefined) return undefined;
    try {
      return convert(value);
    } catch (why) {
      throw new SluiceError(`config key \`${key}\`: invalid value \`${value}\`: ${String(why)}`);
    }
  }
}
