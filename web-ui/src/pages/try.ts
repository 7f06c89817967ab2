// Try it: run a module version on pasted lines, one record value per line, and show each
// record's outputs and error side by side.

import { api, bytesText, errorText, TryOutput, TryResponse } from "../api";
import { h, notice, parseConfig, replace } from "../dom";
import { currentModules, moduleOptions, modulesLoaded, onModules, refreshModules, Route, versionOptions } from "../store";
import { Page } from "./page";

const SAMPLE = `{"date": "2024-02-06 12:11:09.240446 +0100", "message": "0"}
{"date": "2024-02-05 10:01:52.884548 -0500", "message": "1"}`;

export function tryPage(route: Route): Page {
  let wantModule = route.query.get("module") ?? undefined;
  let wantVersion = Number(route.query.get("version")) || undefined;
  const moduleSelect = h("select", { id: "try-module", "data-testid": "try-module" });
  const versionSelect = h("select", { id: "try-version", "data-testid": "try-version" });
  const configInput = h("textarea", { id: "try-config", "data-testid": "try-config", rows: 2, placeholder: "key=value, one per line (optional)", spellcheck: "false" });
  const input = h("textarea", { id: "try-input", "data-testid": "try-input", rows: 10, spellcheck: "false", placeholder: SAMPLE });
  const run = h("button", { type: "submit", "data-testid": "try-run" }, "Run");
  const results = h("div", { "data-testid": "try-results", "aria-live": "polite" });

  const fill = () => {
    const modules = currentModules();
    const selected = wantModule ?? moduleSelect.value ?? undefined;
    moduleOptions(moduleSelect, modules, selected);
    versionOptions(versionSelect, modules.find((m) => m.name === moduleSelect.value), wantVersion ?? (Number(versionSelect.value) || undefined));
    run.disabled = modules.length === 0;
    if (modules.length === 0) replace(results, notice("info", "No modules yet: upload one on the Modules page."));
  };
  moduleSelect.addEventListener("change", () => {
    wantModule = moduleSelect.value;
    wantVersion = undefined;
    versionOptions(versionSelect, currentModules().find((m) => m.name === moduleSelect.value));
  });
  versionSelect.addEventListener("change", () => {
    wantVersion = Number(versionSelect.value);
  });

  const form = h(
    "form",
    { class: "card try-form" },
    h(
      "div",
      { class: "grid2" },
      h("div", null, h("label", { for: "try-module" }, "Module"), moduleSelect),
      h("div", null, h("label", { for: "try-version" }, "Version"), versionSelect),
    ),
    h("label", { for: "try-config" }, "Config"),
    configInput,
    h("label", { for: "try-input" }, "Records: one value per line (JSON lines)"),
    input,
    h("div", { class: "actions" }, run, h("button", { type: "button", class: "secondary", onclick: () => (input.value = SAMPLE) }, "Sample input")),
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const module = moduleSelect.value;
    const version = Number(versionSelect.value);
    const records = input.value.split(/\r?\n/).filter((l) => l.trim() !== "");
    if (!module || !version) return;
    if (records.length === 0) {
      replace(results, notice("error", "Paste at least one line.", "try-error"));
      return;
    }
    let config: Record<string, string>;
    try {
      config = parseConfig(configInput.value);
    } catch (err) {
      replace(results, notice("error", errorText(err), "try-error"));
      return;
    }
    run.disabled = true;
    replace(results, notice("info", `Running ${module} v${version} on ${records.length} record${records.length === 1 ? "" : "s"}…`));
    try {
      const response = await api.try(module, version, records, config);
      replace(results, renderResults(records, response));
    } catch (err) {
      replace(results, h("div", { class: "notice notice-error", role: "alert" }, h("pre", { class: "error-text", "data-testid": "try-error" }, errorText(err))));
    } finally {
      run.disabled = false;
    }
  });

  const off = onModules(fill);
  if (modulesLoaded()) fill();
  refreshModules().catch((e) => replace(results, notice("error", errorText(e))));

  return { el: h("div", { class: "page" }, h("h1", null, "Try it"), form, results), destroy: off };
}

// A module whose init refuses the configuration is a 422 from the API, shown by the caller.
function renderResults(records: string[], response: TryResponse): HTMLElement {
  const failed = response.results.filter((r) => r.error).length;
  const outputs = response.results.reduce((n, r) => n + r.outputs.length, 0);
  return h(
    "section",
    { class: "card" },
    h(
      "p",
      { "data-testid": "try-summary" },
      `${records.length} record${records.length === 1 ? "" : "s"}: ${records.length - failed} ok, ${failed} failed, ${outputs} output${outputs === 1 ? "" : "s"}`,
    ),
    h(
      "table",
      { class: "try-table" },
      h("thead", null, h("tr", null, h("th", null, "#"), h("th", null, "Input"), h("th", null, "Outputs"), h("th", null, "Error"))),
      h(
        "tbody",
        null,
        response.results.map((r, i) =>
          h(
            "tr",
            { "data-testid": "try-row", "data-index": i, class: r.error ? "failed" : "" },
            h("td", { class: "num" }, String(i + 1)),
            h("td", null, h("pre", null, records[i] ?? "")),
            h(
              "td",
              { "data-testid": "try-outputs" },
              r.outputs.length === 0 && !r.error ? h("span", { class: "muted" }, "no output (dropped)") : r.outputs.map(renderOutput),
            ),
            h("td", { "data-testid": "try-record-error" }, r.error ? h("pre", { class: "error-text" }, r.error) : ""),
          ),
        ),
      ),
    ),
  );
}

function renderOutput(o: TryOutput): HTMLElement {
  const meta: string[] = [];
  const value = bytesText(o.value);
  if (o.topic !== null) meta.push(`topic ${bytesText(o.topic)}`);
  if (o.key !== null) meta.push(`key ${bytesText(o.key)}`);
  for (const [k, v] of Object.entries(o.headers)) meta.push(`${k}: ${bytesText(v)}`);
  return h(
    "div",
    { class: "output", "data-testid": "try-output" },
    h("pre", null, value === null ? h("span", { class: "muted" }, "(tombstone)") : value),
    meta.length ? h("div", { class: "muted small" }, meta.join(" · ")) : null,
  );
}
