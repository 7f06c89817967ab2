/**
 * Test guest for the sandbox: echoes each value, except `spin`, which loops forever (the CPU
 * budget must stop it), and `hog`, which allocates until the memory cap stops it.
 */
import { type Config, type SluiceRecord, type Writer } from "sluice-sdk";

export default class Sandbox {
  constructor(config: Config) {
    config.allowOnly([]);
  }

  process(record: SluiceRecord, out: Writer): void {
    const value = record.valueText();
    if (value === "spin") {
      for (;;);
    }
    if (value === "hog") {
      const hoard: Uint8Array[] = [];
      for (;;) hoard.push(new Uint8Array(1 << 20).fill(1));
    }
    out.write(value);
  }
}
