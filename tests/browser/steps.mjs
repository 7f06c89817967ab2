// What dashboard.mjs and fleet.mjs share: launching Chromium, named steps (each ends with a
// screenshot; a failing one prints its name and reason, and a screenshot of the page as it
// was), and the run that exits 1 on a failure.

import { existsSync } from "node:fs";
import { chromium } from "playwright-core";

/** Thrown once a failing step has been reported. */
export class StepFailed extends Error {}

/**
 * `step(name, fn)` for a test that logs as `tag` and takes screenshots with `screenshot(name)`
 * (which returns the file); `check()` runs after each step's own checks (uncaught page errors).
 */
export function stepper(tag, screenshot, check = () => {}) {
  return async function step(name, fn) {
    const started = Date.now();
    try {
      await fn();
      check();
      await screenshot(name);
      console.log(`${tag}: ok   ${name} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
    } catch (e) {
      let file = "";
      try {
        file = await screenshot(`FAILED-${name}`);
      } catch {
        /* the page is gone */
      }
      console.error(`${tag}: FAIL ${name}: ${e?.message ?? e}`);
      if (file) console.error(`${tag}: screenshot of the page: ${file}`);
      throw new StepFailed();
    }
  };
}

/** Debian's Chromium (or $CHROMIUM), with the flags of every browser test. */
export async function launchChromium(headed = false) {
  const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
  if (!existsSync(executablePath)) throw new Error(`${executablePath} is missing: install Debian's chromium with \`bash tests/setup.sh\``);
  return chromium.launch({
    executablePath,
    headless: !headed,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"],
  });
}

/** Runs `main`, closes the browser `browser()` gives, and exits 1 if anything failed. */
export async function runTest(tag, main, browser, screenshots) {
  let failed = false;
  try {
    await main();
    console.log(`${tag}: passed; screenshots in ${screenshots}`);
  } catch (e) {
    failed = true;
    if (!(e instanceof StepFailed)) console.error(`${tag}: FAIL: ${e?.message ?? e}`);
  } finally {
    await browser()?.close().catch(() => undefined);
  }
  process.exit(failed ? 1 : 0);
}
