// The dashboard's Fleet view in Debian's headless Chromium (playwright-core), against a running
// fleet of `sluice run` members (tests/fleet.rs starts three on the real broker). Through one
// member's page it checks:
//
//   1. the Fleet view lists every member: live ones with their partitions (together every input
//      partition), each running the expected module version in slot 0, and the summary saying
//      the rollout has converged; members named by --missing shown as missing;
//   2. the pipeline's card shows fleet totals, with one row per live member whose partitions
//      add up to every input partition.
//
//   node tests/browser/fleet.mjs --url http://127.0.0.1:PORT/ --pipeline NAME --live ID,ID,ID \
//        --running swapper@1 --partitions 12 [--missing ID] [--screenshots DIR] [--timeout-s 30]
//
// Exits 1 with the failing step's name and reason, and a screenshot of the page as it was.

import { mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { launchChromium, runTest, stepper } from "./steps.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../..");

function options() {
  const argv = process.argv.slice(2);
  const opts = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith("--") || i + 1 >= argv.length) throw new Error(`expected --name value, got ${argv.slice(i).join(" ")}`);
    opts[argv[i].slice(2)] = argv[i + 1];
  }
  for (const key of ["url", "pipeline", "live", "running", "partitions"]) if (!opts[key]) throw new Error(`--${key} is required`);
  return {
    url: opts.url,
    pipeline: opts.pipeline,
    live: opts.live.split(","),
    missing: opts.missing ? opts.missing.split(",") : [],
    running: opts.running,
    partitions: Number(opts.partitions),
    screenshots: path.resolve(opts.screenshots ?? path.join(repo, "target/screenshots")),
    timeout: Number(opts["timeout-s"] ?? 30) * 1000,
  };
}

const opts = options();
const tag = opts.missing.length ? "fleet-after-kill" : "fleet";
let page;
let browser;

async function screenshot(name) {
  const file = path.join(opts.screenshots, `${tag}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

const step = stepper("fleet", screenshot);

/** Polls `check` until it returns a truthy value; the last reason it gave is in the error. */
async function until(what, check) {
  const deadline = Date.now() + opts.timeout;
  let why = "";
  for (;;) {
    try {
      const v = await check();
      if (v === true) return;
      why = String(v);
    } catch (e) {
      why = e.message;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${opts.timeout / 1000} s waiting for ${what}: ${why}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const sum = (xs) => xs.reduce((a, b) => a + b, 0);

async function main() {
  mkdirSync(opts.screenshots, { recursive: true });
  browser = await launchChromium();
  page = await (await browser.newContext({ viewport: { width: 1400, height: 900 } })).newPage();
  page.setDefaultTimeout(opts.timeout);
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(e.message));

  await step("members", async () => {
    await page.goto(`${opts.url}#/fleet`);
    await page.locator('[data-testid="members"]').waitFor();
    await until(`the Fleet view to list ${opts.live.join(", ")} live${opts.missing.length ? ` and ${opts.missing.join(", ")} missing` : ""}`, async () => {
      if (pageErrors.length) throw new Error(`uncaught error in the page: ${pageErrors.join("; ")}`);
      const rows = await page.locator('[data-testid="members"] tbody tr').evaluateAll((trs) =>
        trs.map((tr) => ({
          id: tr.dataset.member,
          alive: tr.dataset.alive === "true",
          state: tr.querySelector('[data-testid="member-state"]')?.textContent,
          partitions: Number(tr.querySelector('[data-testid="partitions"]')?.dataset.count),
          slots: tr.querySelector('[data-testid="member-slots"]')?.textContent ?? "",
          address: tr.querySelector('[data-testid="address"]')?.getAttribute("href") ?? "",
        })),
      );
      const shown = JSON.stringify(rows);
      for (const id of opts.live) {
        const row = rows.find((r) => r.id === id);
        if (!row || !row.alive || row.state !== "live") return `${id} is not shown live: ${shown}`;
        if (!row.slots.includes(`${opts.pipeline} 0: ${opts.running}`)) return `${id} does not run ${opts.running}: ${shown}`;
        if (!row.address.startsWith("http://127.0.0.1:")) return `${id} has no address: ${shown}`;
      }
      for (const id of opts.missing) {
        const row = rows.find((r) => r.id === id);
        if (!row || row.alive || row.state !== "missing") return `${id} is not shown missing: ${shown}`;
      }
      const live = rows.filter((r) => r.alive);
      if (live.length !== opts.live.length) return `${live.length} live members shown: ${shown}`;
      if (sum(live.map((r) => r.partitions)) !== opts.partitions) return `live members hold ${sum(live.map((r) => r.partitions))} partitions, not ${opts.partitions}: ${shown}`;
      const convergence = page.locator('[data-testid="convergence"]');
      if ((await convergence.getAttribute("data-converged")) !== "true") return `not converged: ${await convergence.textContent()}`;
      if (!(await convergence.textContent()).includes(opts.running)) return `the summary says ${await convergence.textContent()}`;
      return true;
    });
  });

  await step("pipeline-fleet-totals", async () => {
    await page.evaluate(() => (location.hash = "#/pipelines"));
    const card = page.locator(`[data-testid="pipeline-${opts.pipeline}"]`);
    await card.waitFor();
    await until("the pipeline card to show each live member's share", async () => {
      if ((await card.getAttribute("data-fleet")) !== "true") return "the card shows one member's figures, not the fleet's";
      const shares = await card.locator('[data-testid="fleet-members"] tbody tr').evaluateAll((trs) =>
        trs.map((tr) => ({ id: tr.dataset.member, partitions: Number(tr.querySelector('[data-testid="share-partitions"]')?.textContent) })),
      );
      const ids = shares.map((s) => s.id).sort();
      if (JSON.stringify(ids) !== JSON.stringify([...opts.live].sort())) return `shares of ${ids.join(", ")}`;
      if (sum(shares.map((s) => s.partitions)) !== opts.partitions) return `shares hold ${JSON.stringify(shares)}`;
      return true;
    });
  });
}

await runTest("fleet", main, () => browser, opts.screenshots);
