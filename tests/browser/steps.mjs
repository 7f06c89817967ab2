// Named steps of a browser test, shared by dashboard.mjs and fleet.mjs: each step ends with a
// screenshot; a failing one prints its name and reason, and a screenshot of the page as it was.

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
