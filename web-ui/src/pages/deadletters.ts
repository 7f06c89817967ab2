// Dead letters: the latest records of a pipeline's dead-letter topic, with their error headers.

import { api, bytesText, DeadLetter, errorText, Pipeline } from "../api";
import { h, notice, replace } from "../dom";
import { Route } from "../store";
import { Page } from "./page";

const LIMITS = [20, 50, 100];
const AUTO_MS = 3000;
/** Headers shown in their own columns; the rest go under "other headers". */
const SHOWN = [
  "sluice.error.message",
  "sluice.error.kind",
  "sluice.source.topic",
  "sluice.source.partition",
  "sluice.source.offset",
  "sluice.transform.module",
  "sluice.transform.version",
];

export function deadLettersPage(route: Route): Page {
  const pipelineSelect = h("select", { id: "dl-pipeline", "data-testid": "dl-pipeline" });
  const limitSelect = h("select", { id: "dl-limit", "data-testid": "dl-limit" }, LIMITS.map((n) => h("option", { value: n }, String(n))));
  const auto = h("input", { type: "checkbox", id: "dl-auto", "data-testid": "dl-auto", checked: true });
  const refresh = h("button", { type: "button", class: "secondary", "data-testid": "dl-refresh" }, "Refresh");
  const status = h("div", { "data-testid": "dl-status" });
  const table = h("div", { "data-testid": "dl-records" });
  let destroyed = false;
  let timer = 0;
  let loading = false;

  const load = async () => {
    const name = pipelineSelect.value;
    if (!name || loading) return;
    loading = true;
    try {
      const dl = await api.deadLetters(name, Number(limitSelect.value));
      if (destroyed || name !== pipelineSelect.value) return;
      if (!dl.topic) {
        replace(status, notice("info", `Pipeline ${name} has no dead-letter topic: set dead_letter in its configuration.`, "dl-topic"));
        replace(table);
        return;
      }
      replace(status, h("p", { "data-testid": "dl-topic" }, "Topic ", h("code", null, dl.topic), ` · latest ${dl.records.length} record${dl.records.length === 1 ? "" : "s"}, newest first`));
      replace(table, dl.records.length === 0 ? h("p", { class: "muted", "data-testid": "dl-empty" }, "No dead letters.") : renderTable(dl.records));
    } catch (e) {
      if (!destroyed) replace(status, notice("error", errorText(e), "dl-error"));
    } finally {
      loading = false;
    }
  };

  const schedule = () => {
    window.clearTimeout(timer);
    if (!destroyed && auto.checked) {
      timer = window.setTimeout(() => void load().finally(schedule), AUTO_MS);
    }
  };

  pipelineSelect.addEventListener("change", () => {
    history.replaceState(null, "", `#/dead-letters/${encodeURIComponent(pipelineSelect.value)}`);
    replace(table);
    void load();
  });
  limitSelect.addEventListener("change", () => void load());
  refresh.addEventListener("click", () => void load());
  auto.addEventListener("change", schedule);

  api
    .pipelines()
    .then((pipelines: Pipeline[]) => {
      if (destroyed) return;
      if (pipelines.length === 0) {
        replace(status, notice("info", "No pipelines."));
        return;
      }
      for (const p of pipelines) pipelineSelect.appendChild(h("option", { value: p.name }, p.name));
      const wanted = route.args[0];
      if (wanted && pipelines.some((p) => p.name === wanted)) pipelineSelect.value = wanted;
      void load().finally(schedule);
    })
    .catch((e) => replace(status, notice("error", errorText(e), "dl-error")));

  const el = h(
    "div",
    { class: "page" },
    h("h1", null, "Dead letters"),
    h(
      "div",
      { class: "card toolbar" },
      h("label", { for: "dl-pipeline" }, "Pipeline"),
      pipelineSelect,
      h("label", { for: "dl-limit" }, "Show"),
      limitSelect,
      h("label", { class: "inline" }, auto, " refresh every 3 s"),
      refresh,
    ),
    status,
    table,
  );
  return {
    el,
    destroy() {
      destroyed = true;
      window.clearTimeout(timer);
    },
  };
}

function renderTable(records: DeadLetter[]): HTMLElement {
  return h(
    "table",
    { class: "dead-letters" },
    h(
      "thead",
      null,
      h("tr", null, h("th", null, "Partition · offset"), h("th", null, "Error"), h("th", null, "Source"), h("th", null, "Transform"), h("th", null, "Record")),
    ),
    h(
      "tbody",
      null,
      records.map((r) => {
        const hd: Record<string, string | null> = Object.fromEntries(Object.entries(r.headers).map(([k, v]) => [k, bytesText(v)]));
        const key = bytesText(r.key);
        const others = Object.entries(hd).filter(([k]) => !SHOWN.includes(k));
        return h(
          "tr",
          { "data-testid": "dl-row" },
          h("td", { class: "num" }, `${r.partition} · ${r.offset}`, r.timestamp !== null ? h("div", { class: "muted small" }, new Date(r.timestamp).toLocaleString()) : null),
          h(
            "td",
            null,
            h("span", { class: `badge kind-${hd["sluice.error.kind"] ?? "unknown"}`, "data-testid": "dl-kind" }, hd["sluice.error.kind"] ?? "?"),
            h("pre", { class: "error-text", "data-testid": "dl-message" }, hd["sluice.error.message"] ?? ""),
          ),
          h(
            "td",
            { "data-testid": "dl-source" },
            h("code", null, hd["sluice.source.topic"] ?? "?"),
            h("div", { class: "muted small" }, `partition ${hd["sluice.source.partition"] ?? "?"} · offset ${hd["sluice.source.offset"] ?? "?"}`),
          ),
          h(
            "td",
            { "data-testid": "dl-transform" },
            hd["sluice.transform.module"] ?? "?",
            h("div", { class: "muted small" }, h("code", null, hd["sluice.transform.version"] ?? ""), hd["sluice.transform.slot"] !== undefined ? ` · slot ${hd["sluice.transform.slot"]}` : ""),
          ),
          h(
            "td",
            { class: "record" },
            key !== null ? h("div", { class: "small" }, h("span", { class: "muted" }, "key "), h("code", null, key)) : null,
            h("pre", { "data-testid": "dl-value" }, bytesText(r.value) ?? "(null)"),
            others.length
              ? h(
                  "details",
                  null,
                  h("summary", null, `${others.length} other header${others.length === 1 ? "" : "s"}`),
                  h("dl", null, others.map(([k, v]) => [h("dt", null, k), h("dd", null, v ?? "(null)")])),
                )
              : null,
          ),
        );
      }),
    ),
  );
}
