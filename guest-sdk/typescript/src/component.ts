/**
 * The glue between componentize-js and a transform class: the only module that imports the
 * contract (`sluice:*`), and the entry `sluice-ts build` generates calls it. Not part of the API.
 */
import { log } from "sluice:transform/log@0.1.0";
import { lookup } from "sluice:transform/tables@0.1.0";
import { Config } from "./config.ts";
import { messageOf } from "./error.ts";
import { installHost } from "./host.ts";
import { runBatch } from "./batch.ts";
import type { Transform, TransformClass } from "./transform.ts";
import type { InputBatch, OutputBatch } from "./wire.ts";

/** The `transform` export of the component, running instances of `Class`. */
export function exportTransform(Class: TransformClass) {
  installHost({ log, lookup });
  let instance: Transform | undefined;
  return {
    /** Builds the instance's transform; an exception refuses the deployment with its message. */
    init(config: [string, string][]): void {
      try {
        instance = new Class(new Config(config));
      } catch (e) {
        // componentize-js returns a thrown string as the `result`'s error; anything else traps.
        throw messageOf(e);
      }
    },

    process(batch: InputBatch): OutputBatch {
      if (instance === undefined) {
        throw new Error("the host calls init before process");
      }
      return runBatch(instance, batch);
    },
  };
}
