// The dashboard with a read token (tests/dashboard.rs starts `sluice run` with `[api] token` and
// `read_token`), in Debian's headless Chromium:
//
//   1. without a token the page shows no pipeline, and says why in the API's words;
//   2. with the read token it lists the pipeline and its live feed connects (the token goes in
//      the event stream's query, as EventSource sends no headers);
//   3. a change with the read token is refused, and the page says so.
//
//   node tests/browser/read_token.mjs --url http://127.0.0.1:8080/ --pipeline NAME --read-token T

import { mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { launchChromium, runTest, stepper } from "./steps.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
const opts = {};
for (let i = 0; i + 1 < argv.length; i += 2) opts[argv[i].replace(/^--/, "")] = argv[i + 1];
const screenshots = path.resolve(opts.screenshots ?? path.join(here, "../../target/screenshots"));
const timeout = 30_000;
let page;
let browser;
const log = (...a) => console.log("read-token:", ...a);
const step = stepper("read-token", async (name) => {
  const file = path.join(screenshots, `read-token-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
});
const text = async (locator) => ((await locator.textContent({ timeout: 2000 })) ?? "").trim();

async function until(what, check) {
  const deadline = Date.now() + timeout;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      /* not yet */
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function main() {
  for (const key of ["url", "pipeline", "read-token"]) if (!opts[key]) throw new Error(`pass --${key}`);
  mkdirSync(screenshots, { recursive: true });
  browser = await launchChromium();
  page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  page.setDefaultTimeout(timeout);
  const card = page.locator(`[data-testid="pipeline-${opts.pipeline}"]`);

  await step("refused-without-token", async () => {
    await page.goto(opts.url);
    await page.locator('body[data-ready="true"]').waitFor();
    const notice = page.locator('[data-testid="pipelines-error"]');
    await until("the page to say reads need a token", async () => (await text(notice)).includes("api.read_token"));
    if ((await card.count()) !== 0) throw new Error("the pipeline is listed without a token");
  });

  await step("reads-with-the-read-token", async () => {
    const token = page.locator('[data-testid="token"]');
    await token.fill(opts["read-token"]);
    await token.dispatchEvent("change");
    await until("the pipeline's card", async () => (await card.count()) === 1);
    await until("the live feed to connect", async () => (await text(page.locator('[data-testid="live"]'))) === "live");
    log(`     ${opts.pipeline} listed, live feed connected`);
  });

  await step("changes-refused-with-the-read-token", async () => {
    const response = page.waitForResponse((r) => r.url().endsWith("/pause") && r.request().method() === "POST");
    await card.locator('[data-testid="pause"]').click();
    const r = await response;
    if (r.status() !== 401) throw new Error(`pause with the read token answered ${r.status()}, expected 401`);
    const { error } = await r.json();
    await until("the refusal on the page", async () => (await text(card.locator('[data-testid="error"]'))).startsWith(error));
  });
}

await runTest("read-token", main, () => browser, screenshots);
