// End-to-end test of the Sluice dashboard in Debian's headless Chromium, driven by
// playwright-core (which downloads no browser). Against a running `sluice run` (tests/dashboard.rs
// starts one on the real broker) it:
//
//   1. opens the page and finds the pipeline;
//   2. uploads a transform (--wasm; tz_normaliser.wasm by default) by dropping it on the Modules page;
//   3. deploys it into a slot of the pipeline and sees the slot change;
//   4. watches the live throughput chart move (in-rate above 0, points added);
//   5. uploads a broken file through the file input and sees the API's error text on the page;
//   6. runs Try it on sample lines and sees each record's output (and an error for a bad line);
//   7. shows the pipeline's dead letters with their error headers;
//   8. rolls the slot back, pauses and resumes the pipeline;
//   9. with --input and --form-output: creates a pipeline with the form (a mistake the page
//      catches, then one the runtime refuses, both shown), sees its records flow, edits its
//      chain (adds a slot, moves it first), and deletes it.
//
// Screenshots of every step go to target/screenshots/ (or --screenshots DIR). Exits 1 with the
// failing step's name and reason, and a screenshot of the page as it was.
//
//   node tests/browser/dashboard.mjs --url http://127.0.0.1:8080/ --pipeline NAME \
//        --wasm target/wasm32-wasip2/release/tz_normaliser.wasm [--slot 0] \
//        [--samples tests/data/seed-000.jsonl] [--expected tests/data/seed-000.expected.jsonl] \
//        [--token TOKEN] [--screenshots DIR] [--timeout-s 60] [--no-dead-letters] \
//        [--input TOPIC --form-output TOPIC]
//
// Each option may also come from the environment: SLUICE_DASHBOARD_URL, _PIPELINE, _WASM, ...
// (SLUICE_DASHBOARD_ and the option's name in capitals, dashes as underscores). CHROMIUM names the
// browser binary (/usr/bin/chromium by default).

import { mkdirSync, readFileSync, existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { launchChromium, runTest, stepper } from "./steps.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../..");

function options() {
  const argv = process.argv.slice(2);
  const flags = new Set(["no-dead-letters", "headed"]);
  const opts = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith("--")) throw new Error(`unexpected argument ${a}`);
    const key = a.slice(2);
    if (flags.has(key)) opts[key] = true;
    else if (i + 1 < argv.length) opts[key] = argv[++i];
    else throw new Error(`${a} needs a value`);
  }
  const env = (key) => process.env[`SLUICE_DASHBOARD_${key.toUpperCase().replace(/-/g, "_")}`];
  for (const key of ["url", "pipeline", "wasm", "slot", "samples", "expected", "token", "screenshots", "timeout-s", "input", "form-output"]) {
    if (opts[key] === undefined && env(key) !== undefined) opts[key] = env(key);
  }
  return {
    url: opts.url,
    pipeline: opts.pipeline,
    wasm: path.resolve(opts.wasm ?? path.join(repo, "target/wasm32-wasip2/release/tz_normaliser.wasm")),
    slot: Number(opts.slot ?? 0),
    samples: path.resolve(opts.samples ?? path.join(repo, "tests/data/seed-000.jsonl")),
    expected: opts.expected ? path.resolve(opts.expected) : null,
    token: opts.token ?? "",
    screenshots: path.resolve(opts.screenshots ?? path.join(repo, "target/screenshots")),
    timeout: Number(opts["timeout-s"] ?? 60) * 1000,
    deadLetters: !opts["no-dead-letters"],
    input: opts.input ?? null,
    formOutput: opts["form-output"] ?? null,
    headed: !!opts.headed,
  };
}

const opts = options();
const log = (...a) => console.log("dashboard:", ...a);
let page;
let browser;
let shot = 0;
const pageErrors = [];

async function screenshot(name) {
  const file = path.join(opts.screenshots, `${String(++shot).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

const step = stepper("dashboard", screenshot, () => {
  if (pageErrors.length) throw new Error(`uncaught error in the page: ${pageErrors.join("; ")}`);
});

/** Polls `check` (which returns a truthy value when satisfied) until it does or the wait ends. */
async function until(what, check, timeout = opts.timeout) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
      last = null;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout / 1000} s waiting for ${what}${last ? ` (${last.message})` : ""}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const text = async (locator) => ((await locator.textContent({ timeout: 2000 })) ?? "").trim();
const card = () => page.locator(`[data-testid="pipeline-${opts.pipeline}"]`);
const slotRow = () => card().locator(`[data-testid="slot-${opts.slot}"]`);

async function go(hash) {
  await page.evaluate((h) => (location.hash = h), hash);
  await page.locator('[data-testid="main"] .page').first().waitFor();
}

async function main() {
  if (!opts.url) throw new Error("no dashboard URL: pass --url http://HOST:PORT/");
  if (!opts.pipeline) throw new Error("no pipeline: pass --pipeline NAME");
  if (!existsSync(opts.wasm)) throw new Error(`${opts.wasm} is missing: build the transforms first with \`make wasm\``);
  mkdirSync(opts.screenshots, { recursive: true });
  const samples = readFileSync(opts.samples, "utf8").split("\n").filter((l) => l.trim()).slice(0, 5);
  const expected = opts.expected ? readFileSync(opts.expected, "utf8").split("\n").filter((l) => l.trim()).slice(0, samples.length) : null;
  const moduleName = path.basename(opts.wasm).replace(/\.wasm$/, "");
  log(`testing ${opts.url} (pipeline ${opts.pipeline}, slot ${opts.slot}, module ${moduleName}), screenshots in ${opts.screenshots}`);

  browser = await launchChromium(opts.headed);
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  page = await context.newPage();
  page.setDefaultTimeout(opts.timeout);
  page.on("pageerror", (e) => pageErrors.push(e.message));
  page.on("console", (m) => {
    // Failed requests show up here too; the steps check those answers themselves.
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) log(`console error in the page: ${m.text()}`);
  });

  let uploaded; // { version }

  await step("open-pipelines", async () => {
    await page.goto(opts.url);
    await page.locator('body[data-ready="true"]').waitFor();
    await card().waitFor();
    if (opts.token) {
      // Without the token a change is refused, and the page says why in the API's words.
      if ((await text(page.locator('[data-testid="auth"]'))) !== "auth required") throw new Error("the page does not say that the API needs a token");
      await page.locator('[data-testid="token"]').fill("");
      const response = page.waitForResponse((r) => r.url().endsWith("/pause") && r.request().method() === "POST");
      await card().locator('[data-testid="pause"]').click();
      const r = await response;
      if (r.status() !== 401) throw new Error(`pause without the token answered ${r.status()}, expected 401`);
      const { error } = await r.json();
      const shown = await text(card().locator('[data-testid="error"]'));
      if (!shown.startsWith(error)) throw new Error(`the page shows \`${shown}\`, the API said \`${error}\``);
      await page.locator('[data-testid="token"]').fill(opts.token);
    }
    await until("the live feed to connect", async () => (await text(page.locator('[data-testid="live"]'))) === "live");
    const status = await text(card().locator('[data-testid="status"]'));
    if (!["starting", "running"].includes(status)) throw new Error(`pipeline ${opts.pipeline} is ${status}, expected running`);
  });

  await step("upload-module", async () => {
    await go("#/modules");
    await page.locator('[data-testid="module-name"]').fill(moduleName);
    const bytes = readFileSync(opts.wasm).toString("base64");
    // A real drop: a DataTransfer holding the file, dispatched on the drop zone.
    const dataTransfer = await page.evaluateHandle(
      ({ name, b64 }) => {
        const raw = atob(b64);
        const array = new Uint8Array(raw.length);
        for (let i = 0; i < raw.length; i++) array[i] = raw.charCodeAt(i);
        const dt = new DataTransfer();
        dt.items.add(new File([array], name, { type: "application/wasm" }));
        return dt;
      },
      { name: path.basename(opts.wasm), b64: bytes },
    );
    const response = page.waitForResponse((r) => r.url().includes("/api/v1/modules?") && r.request().method() === "POST");
    await page.locator('[data-testid="dropzone"]').dispatchEvent("dragenter", { dataTransfer });
    await page.locator('[data-testid="dropzone"]').dispatchEvent("drop", { dataTransfer });
    const r = await response;
    const body = await r.json();
    if (r.status() !== 201 && r.status() !== 200) throw new Error(`the API refused ${moduleName}: ${r.status()} ${JSON.stringify(body)}`);
    const ok = await text(page.locator('[data-testid="upload-ok"]'));
    if (!ok.includes(`${moduleName} version ${body.version}`)) throw new Error(`upload message is \`${ok}\``);
    uploaded = body;
    await page.locator(`[data-testid="module-${moduleName}-v${body.version}"]`).waitFor();
  });

  await step("deploy", async () => {
    await go("#/pipelines");
    await slotRow().waitFor();
    await slotRow().locator('[data-testid="deploy-module"]').selectOption(moduleName);
    await slotRow().locator('[data-testid="deploy-version"]').selectOption(String(uploaded.version));
    const response = page.waitForResponse((r) => r.url().includes(`/transforms/${opts.slot}`) && r.request().method() === "PUT");
    await slotRow().locator('[data-testid="deploy"]').click();
    const r = await response;
    if (r.status() !== 200) throw new Error(`deploy answered ${r.status()}: ${await r.text()}`);
    await until(`slot ${opts.slot} to show ${moduleName} v${uploaded.version}`, async () => {
      const row = slotRow();
      return (await row.getAttribute("data-module")) === moduleName && (await row.getAttribute("data-version")) === String(uploaded.version);
    });
    const shown = await text(slotRow().locator('[data-testid="slot-version"]'));
    if (shown !== `v${uploaded.version}`) throw new Error(`slot shows ${shown}`);
    await card().locator('[data-testid="ok"]').waitFor();
  });

  await step("chart-moves", async () => {
    const chart = card().locator('[data-testid="chart"]');
    const points = async () => Number((await chart.getAttribute("data-points")) ?? 0);
    const before = await points();
    await until("the in-rate to rise above 0", async () => Number(await card().locator('[data-testid="rate-in"]').getAttribute("data-value")) > 0);
    await until("the chart to gain 3 points", async () => (await points()) >= before + 3);
    const canvas = chart.locator("canvas");
    if ((await canvas.count()) === 0) throw new Error("the chart has no canvas");
    log(`     chart has ${await points()} points, in ${await text(card().locator('[data-testid="rate-in"]'))}/s`);
  });

  await step("broken-upload", async () => {
    await go("#/modules");
    await page.locator('[data-testid="module-name"]').fill("broken");
    const response = page.waitForResponse((r) => r.url().includes("/api/v1/modules?") && r.request().method() === "POST");
    await page.locator('[data-testid="file-input"]').setInputFiles({
      name: "broken.wasm",
      mimeType: "application/wasm",
      buffer: Buffer.from("this is a text file, not a WebAssembly component\n"),
    });
    const r = await response;
    if (r.status() < 400 || r.status() >= 500) throw new Error(`the API answered ${r.status()} to a broken module, expected 4xx`);
    const { error } = await r.json();
    if (!error) throw new Error("the API's answer has no error message");
    const shown = await text(page.locator('[data-testid="upload-error"]'));
    if (shown !== error.trim()) throw new Error(`the page shows \`${shown}\`, the API said \`${error}\``);
    log(`     error shown: ${error}`);
  });

  await step("try-it", async () => {
    await go(`#/try?module=${encodeURIComponent(moduleName)}&version=${uploaded.version}`);
    await until("the module to be selected", async () => (await page.locator('[data-testid="try-module"]').inputValue()) === moduleName);
    await page.locator('[data-testid="try-version"]').selectOption(String(uploaded.version));
    const lines = [...samples, "not json at all"];
    await page.locator('[data-testid="try-input"]').fill(lines.join("\n"));
    await page.locator('[data-testid="try-run"]').click();
    const rows = page.locator('[data-testid="try-row"]');
    await until(`${lines.length} result rows`, async () => (await rows.count()) === lines.length);
    for (let i = 0; i < samples.length; i++) {
      const row = rows.nth(i);
      const err = await text(row.locator('[data-testid="try-record-error"]'));
      if (err) throw new Error(`record ${i + 1} failed: ${err}`);
      const out = await text(row.locator('[data-testid="try-output"] pre'));
      if (expected ? out !== expected[i] : !out.includes('"timestamp"')) throw new Error(`record ${i + 1}: output \`${out}\`, expected \`${expected ? expected[i] : "a timestamp"}\``);
    }
    const bad = await text(rows.nth(lines.length - 1).locator('[data-testid="try-record-error"]'));
    if (!bad) throw new Error("the line that is not JSON shows no error");
    const summary = await text(page.locator('[data-testid="try-summary"]'));
    if (!summary.includes(`${samples.length} ok, 1 failed`)) throw new Error(`summary is \`${summary}\``);
  });

  if (opts.deadLetters) {
    await step("dead-letters", async () => {
      await go(`#/dead-letters/${encodeURIComponent(opts.pipeline)}`);
      await page.locator('[data-testid="dl-topic"]').waitFor();
      const rows = page.locator('[data-testid="dl-row"]');
      await until("a dead letter", async () => (await rows.count()) > 0);
      const first = rows.first();
      const message = await text(first.locator('[data-testid="dl-message"]'));
      const kind = await text(first.locator('[data-testid="dl-kind"]'));
      const source = await text(first.locator('[data-testid="dl-source"]'));
      const transform = await text(first.locator('[data-testid="dl-transform"]'));
      if (!message) throw new Error("a dead letter without sluice.error.message");
      if (!kind || kind === "?") throw new Error("a dead letter without sluice.error.kind");
      if (source.includes("?")) throw new Error(`source headers missing: ${source}`);
      if (!transform || transform.startsWith("?")) throw new Error(`transform headers missing: ${transform}`);
      log(`     ${await rows.count()} dead letters; first: ${kind}: ${message}`);
    });
  }

  await step("rollback-pause-resume", async () => {
    await go("#/pipelines");
    await slotRow().waitFor();
    await slotRow().locator('[data-testid="rollback"]:not([disabled])').click();
    await until(`slot ${opts.slot} to leave ${moduleName} v${uploaded.version}`, async () => {
      const row = slotRow();
      return !((await row.getAttribute("data-module")) === moduleName && (await row.getAttribute("data-version")) === String(uploaded.version));
    });
    await card().locator('[data-testid="pause"]').click();
    await until("the pipeline to be paused", async () => (await text(card().locator('[data-testid="status"]'))) === "paused");
    await card().locator('[data-testid="resume"]').click();
    await until("the pipeline to run again", async () => ["running", "starting"].includes(await text(card().locator('[data-testid="status"]'))));
  });

  if (opts.input && opts.formOutput) await formSteps(moduleName);
}

/** Creates, edits and deletes a pipeline with the page's form. */
async function formSteps(moduleName) {
  const name = `${opts.pipeline}-form`;
  const created = () => page.locator(`[data-testid="pipeline-${name}"]`);
  const form = () => page.locator('[data-testid="pipeline-form"]');
  const formMessage = async () => text(form().locator('[data-testid="form-message"]'));

  await step("form-create", async () => {
    await go("#/pipelines");
    await page.locator('[data-testid="new-pipeline"]').click();
    await form().waitFor();
    await form().locator('[data-testid="form-name"]').fill(name);
    // Caught by the page: no input topic.
    await form().locator('[data-testid="form-outputs"]').fill(opts.input);
    await form().locator('[data-testid="form-submit"]').click();
    await until("the page to say an input is missing", async () => (await formMessage()).includes("Inputs: name at least one topic"));
    // Refused by the runtime, which names the mistake: the output is also the input.
    await form().locator('[data-testid="form-inputs"]').fill(opts.input);
    let response = page.waitForResponse((r) => r.url().endsWith(`/pipelines/${name}`) && r.request().method() === "PUT");
    await form().locator('[data-testid="form-submit"]').click();
    let r = await response;
    if (r.status() !== 422) throw new Error(`a pipeline writing to its own input answered ${r.status()}, expected 422`);
    const { error } = await r.json();
    await until("the runtime's refusal on the page", async () => (await formMessage()) === error);
    log(`     refused: ${error}`);
    // Right: one slot running the uploaded module, skipping the lines it cannot read.
    await form().locator('[data-testid="form-outputs"]').fill(opts.formOutput);
    await form().locator('[data-testid="form-on-error"]').selectOption("skip");
    await form().locator('[data-testid="form-add-slot"]').click();
    await form().locator('[data-testid="form-slot-0"] [data-testid="form-slot-module"]').selectOption(moduleName);
    response = page.waitForResponse((r) => r.url().endsWith(`/pipelines/${name}`) && r.request().method() === "PUT");
    await form().locator('[data-testid="form-submit"]').click();
    r = await response;
    if (r.status() !== 201) throw new Error(`creating ${name} answered ${r.status()}: ${await r.text()}`);
    await page.locator('[data-testid="form-done"]').waitFor();
    await created().waitFor();
    await until(`${name} to write records`, async () => Number(await created().locator('[data-testid="rate-out"]').getAttribute("data-value")) > 0);
    const change = await text(created().locator('[data-testid="last-change"]'));
    if (!change.includes("created, by api")) throw new Error(`latest change shows \`${change}\``);
  });

  await step("form-edit", async () => {
    await created().locator('[data-testid="edit"]').click();
    await form().waitFor();
    const inputs = await form().locator('[data-testid="form-inputs"]').inputValue();
    if (inputs !== opts.input) throw new Error(`the form shows inputs \`${inputs}\`, expected \`${opts.input}\``);
    await form().locator('[data-testid="form-add-slot"]').click();
    await form().locator('[data-testid="form-slot-1"] [data-testid="form-slot-module"]').selectOption("test_guest");
    await form().locator('[data-testid="form-slot-1"] [data-testid="form-slot-up"]').click();
    const response = page.waitForResponse((r) => r.url().endsWith(`/pipelines/${name}`) && r.request().method() === "PUT");
    await form().locator('[data-testid="form-submit"]').click();
    const r = await response;
    if (r.status() !== 200) throw new Error(`saving ${name} answered ${r.status()}: ${await r.text()}`);
    await until("the chain test_guest then the module", async () => {
      const first = await created().locator('[data-testid="slot-0"]').getAttribute("data-module");
      const second = await created().locator('[data-testid="slot-1"]').getAttribute("data-module");
      return first === "test_guest" && second === moduleName;
    });
    await until(`${name} to run again`, async () => (await text(created().locator('[data-testid="status"]'))) === "running");
  });

  await step("form-delete", async () => {
    page.once("dialog", (dialog) => dialog.accept());
    const response = page.waitForResponse((r) => r.url().endsWith(`/pipelines/${name}`) && r.request().method() === "DELETE");
    await created().locator('[data-testid="delete"]').click();
    const r = await response;
    if (r.status() !== 204) throw new Error(`deleting ${name} answered ${r.status()}: ${await r.text()}`);
    await until(`${name} to leave the page`, async () => (await created().count()) === 0);
    const check = await page.request.get(new URL(`api/v1/pipelines/${name}`, opts.url).toString());
    if (check.status() !== 404) throw new Error(`GET of the deleted pipeline answered ${check.status()}`);
  });
}

await runTest("dashboard", main, () => browser, opts.screenshots);
