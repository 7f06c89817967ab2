#!/usr/bin/env node
// sluice-ts: build a TypeScript transform into a Sluice component, or run its tests natively.
//
//   sluice-ts build SRC.ts -o OUT.wasm   SRC's default export is the transform class
//   sluice-ts test [FILES OR DIRS...]    default: test/**/*.test.ts, run with `node --test`

import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const sdk = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const usage = `usage: sluice-ts build SRC.ts -o OUT.wasm
       sluice-ts test [FILES OR DIRS...]   (default: test/**/*.test.ts)`;

/** Resolves `sluice-sdk` and `sluice-sdk/testing` to this SDK's sources. */
const sdkPlugin = {
  name: "sluice-sdk",
  setup(plugin) {
    plugin.onResolve({ filter: /^sluice-sdk(\/testing)?$/ }, (args) => ({
      path: join(sdk, "src", args.path === "sluice-sdk" ? "index.ts" : "testing.ts"),
    }));
  },
};

/** A problem with the command line or the sources: reported without a stack, exit status 2. */
class Refusal extends Error {}

function die(message) {
  throw new Refusal(message);
}

/** Bundles SRC with the component glue into one ES module, then componentizes it. */
async function buildComponent(args) {
  const at = args.indexOf("-o");
  const out = at === -1 ? undefined : args[at + 1];
  const sources = args.filter((_, i) => i !== at && i !== at + 1);
  if (sources.length !== 1 || out === undefined) die(usage);
  const source = resolve(sources[0]);
  if (!existsSync(source)) die(`${sources[0]}: no such file`);

  const work = mkdtempSync(join(tmpdir(), "sluice-ts-"));
  try {
    const bundle = join(work, "bundle.js");
    const entry = [
      `import Transform from ${JSON.stringify(source)};`,
      `import { exportTransform } from ${JSON.stringify(join(sdk, "src", "component.ts"))};`,
      `export const transform = exportTransform(Transform);`,
    ].join("\n");
    try {
      await build({
        stdin: { contents: entry, resolveDir: dirname(source), sourcefile: "entry.js", loader: "js" },
        bundle: true,
        format: "esm",
        platform: "neutral",
        target: "es2022",
        external: ["sluice:*"],
        plugins: [sdkPlugin],
        outfile: bundle,
        logLevel: "silent",
      });
    } catch (e) {
      const noDefault = e.errors?.some((m) => /No matching export .* for import "default"/.test(m.text));
      if (noDefault) {
        die(`${sources[0]} has no default export: export the transform class with \`export default class\``);
      }
      die(`cannot bundle ${sources[0]}:\n${e.errors?.map((m) => formatMessage(m)).join("\n") ?? e}`);
    }
    const { componentize } = await import("@bytecodealliance/componentize-js");
    const { component } = await componentize({
      sourcePath: bundle,
      witPath: join(sdk, "wit"),
      worldName: "transformer",
      // Without these the component imports wasi:http, which Sluice refuses.
      disableFeatures: ["http", "fetch-event"],
    });
    mkdirSync(dirname(resolve(out)), { recursive: true });
    writeFileSync(out, component);
    console.log(`${out}: ${(component.length / 1024 / 1024).toFixed(1)} MiB (${component.length} bytes)`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

function formatMessage(m) {
  return m.location ? `${m.location.file}:${m.location.line}:${m.location.column}: ${m.text}` : m.text;
}

/** The files under `dir` whose names end in `.test.ts`, in order. */
function findTests(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .sort()
    .flatMap((name) => {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) return findTests(path);
      return name.endsWith(".test.ts") ? [path] : [];
    });
}

/**
 * Bundles each test file (or every `*.test.ts` under a folder) for Node and runs them all with
 * `node --test`; exits as node does.
 */
async function runTests(files) {
  for (const file of files) {
    if (!existsSync(file)) die(`${file}: no such file`);
  }
  const tests =
    files.length > 0 ? files.flatMap((f) => (statSync(f).isDirectory() ? findTests(f) : [f])) : findTests("test");
  if (tests.length === 0) die("no tests: pass files, or put *.test.ts files under test/");
  const work = mkdtempSync(join(tmpdir(), "sluice-ts-test-"));
  try {
    const bundles = [];
    for (const file of tests) {
      const bundle = join(work, `${bundles.length}-${basename(file, ".ts")}.mjs`);
      try {
        await build({
          entryPoints: [file],
          bundle: true,
          format: "esm",
          platform: "node",
          target: "node20",
          sourcemap: "inline",
          plugins: [sdkPlugin],
          outfile: bundle,
          logLevel: "silent",
        });
      } catch (e) {
        die(`cannot bundle ${relative(".", file)}:\n${e.errors?.map((m) => formatMessage(m)).join("\n") ?? e}`);
      }
      bundles.push(bundle);
    }
    const run = spawnSync(process.execPath, ["--enable-source-maps", "--test", "--test-reporter=spec", ...bundles], {
      stdio: "inherit",
    });
    return run.status ?? 1;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

const [command, ...args] = process.argv.slice(2);
try {
  if (command === "build") {
    await buildComponent(args);
  } else if (command === "test") {
    process.exitCode = await runTests(args);
  } else {
    die(usage);
  }
} catch (e) {
  if (!(e instanceof Refusal)) throw e;
  console.error(`sluice-ts: ${e.message}`);
  process.exitCode = 2;
}
