/** Fatal UTF-8 decoding with Rust's wording for what is wrong, so messages match Rust SDK's. */
import { SluiceError } from "./error.ts";

const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * `bytes` as text; when they are not UTF-8, throws a `SluiceError` whose message `describe`
 * builds from the reason as Rust's `Utf8Error` gives it.
 */
export function decodeUtf8(bytes: Uint8Array, describe: (why: string) => string): string {
  try {
    return decoder.decode(bytes);
  } catch {
    throw new SluiceError(describe(utf8Problem(bytes)));
  }
}

/** Why `bytes` are not UTF-8, as Rust's `Utf8Error` says it. */
function utf8Problem(bytes: Uint8Array): string {
  for (let i = 0; i < bytes.length; ) {
    const first = bytes[i]!;
    if (first < 0x80) {
      i++;
      continue;
    }
    // The sequence's width and the range of its second byte (narrower after E0, ED, F0, F4).
    let width: number;
    let [low, high] = [0x80, 0xbf];
    if (first >= 0xc2 && first <= 0xdf) {
      width = 2;
    } else if (first >= 0xe0 && first <= 0xef) {
      width = 3;
      if (first === 0xe0) low = 0xa0;
      if (first === 0xed) high = 0x9f;
    } else if (first >= 0xf0 && first <= 0xf4) {
      width = 4;
      if (first === 0xf0) low = 0x90;
      if (first === 0xf4) high = 0x8f;
    } else {
      return `invalid utf-8 sequence of 1 bytes from index ${i}`;
    }
    for (let k = 1; k < width; k++) {
      if (i + k >= bytes.length) {
        return `incomplete utf-8 byte sequence from index ${i}`;
      }
      const next = bytes[i + k]!;
      if (k === 1 ? next < low || next > high : next < 0x80 || next > 0xbf) {
        return `invalid utf-8 sequence of ${k} bytes from index ${i}`;
      }
    }
    i += width;
  }
  return "invalid utf-8";
}
