// The form that creates a pipeline or edits one: topics, guarantee, batching and the chain
// (add, remove, reorder slots). It sends the whole definition to PUT /pipelines/{name}, the
// route `sluice apply` uses; the runtime checks it again and names the field it refuses.

import { api, errorText, Module, Pipeline, PipelineDefinition, TransformDefinition } from "../api";
import { formatConfig, h, notice, parseConfig, replace } from "../dom";
import { currentModules, moduleOptions } from "../store";

const NAME = /^[A-Za-z0-9._-]+$/;
const TOPIC = /^[A-Za-z0-9._-]{1,249}$/;

/** One row of the chain editor. */
interface Row {
  module: string;
  /** A version number, or "" for the module's latest. */
  version: string;
  config: string;
}

/**
 * A form for `existing` (null: a new pipeline). `done` gets the pipeline the runtime answered;
 * `cancel` closes the form.
 */
export function pipelineForm(existing: PipelineDefinition | null, done: (p: Pipeline) => void, cancel: () => void): HTMLElement {
  const modules = currentModules();
  const field = (label: string, input: HTMLElement, hint?: string) =>
    h("label", { class: "field" }, h("span", { class: "label" }, label), input, hint ? h("span", { class: "muted small" }, hint) : null);
  const text = (testid: string, value: string, attrs: Record<string, string | boolean> = {}) =>
    h("input", { type: "text", "data-testid": testid, value, ...attrs });
  const number = (testid: string, value: number, min: number, max: number) =>
    h("input", { type: "number", "data-testid": testid, value: String(value), min: String(min), max: String(max), required: true });
  const select = (testid: string, options: string[], value: string) => {
    const el = h("select", { "data-testid": testid });
    for (const o of options) el.append(h("option", { value: o, selected: o === value }, o));
    return el;
  };

  const d = existing;
  const name = text("form-name", d?.name ?? "", { required: true, pattern: NAME.source, readonly: !!d, placeholder: "orders-clean" });
  const inputs = text("form-inputs", (d?.inputs ?? []).join(", "), { required: true, placeholder: "orders, orders-eu" });
  const outputs = text("form-outputs", (d?.outputs ?? []).join(", "), { required: true, placeholder: "orders.clean" });
  const deadLetter = text("form-dead-letter", d?.dead_letter ?? "", { placeholder: "orders.dlq (optional)" });
  const guarantee = select("form-guarantee", ["at-least-once", "exactly-once"], d?.guarantee ?? "at-least-once");
  const start = select("form-start", ["earliest", "latest"], d?.start ?? "earliest");
  const onError = select("form-on-error", ["stop", "skip"], d?.on_error ?? "stop");
  const batchSize = number("form-batch-size", d?.batch_size ?? 1024, 1, 100000);
  const linger = number("form-linger-ms", d?.linger_ms ?? 10, 0, 60000);
  const commitInterval = number("form-commit-interval-ms", d?.commit_interval_ms ?? 100, 1, 60000);

  const rows: Row[] = (d?.transform ?? []).map((t) => {
    const [module, version = ""] = t.module.split("@");
    return { module, version, config: formatConfig(t.config) };
  });
  const chainBody = h("tbody");
  const renderChain = () => {
    replace(
      chainBody,
      rows.length === 0 ? h("tr", null, h("td", { colspan: 5, class: "muted" }, "no transforms: records are copied as they are")) : rows.map((row, i) => chainRow(row, i)),
    );
  };
  const chainRow = (row: Row, i: number): HTMLElement => {
    const moduleSelect = h("select", { "data-testid": "form-slot-module", "aria-label": `module of slot ${i}` });
    moduleOptions(moduleSelect, withCurrent(modules, row.module), row.module);
    row.module = moduleSelect.value;
    const versionSelect = h("select", { "data-testid": "form-slot-version", "aria-label": `version of slot ${i}` });
    const fillVersions = () => {
      replace(versionSelect, h("option", { value: "" }, "latest"));
      for (const v of modules.find((m) => m.name === moduleSelect.value)?.versions ?? []) {
        versionSelect.append(h("option", { value: String(v.version), selected: String(v.version) === row.version }, `v${v.version}`));
      }
    };
    fillVersions();
    moduleSelect.addEventListener("change", () => {
      row.module = moduleSelect.value;
      row.version = "";
      fillVersions();
    });
    versionSelect.addEventListener("change", () => (row.version = versionSelect.value));
    const config = h("input", { type: "text", "data-testid": "form-slot-config", "aria-label": `config of slot ${i}`, value: row.config, placeholder: "key=value, key=value" });
    config.addEventListener("input", () => (row.config = config.value));
    const move = (to: number) => () => {
      const [moved] = rows.splice(i, 1);
      rows.splice(to, 0, moved);
      renderChain();
    };
    const button = (label: string, testid: string, action: () => void, disabled = false) =>
      h("button", { type: "button", class: "secondary small", "data-testid": testid, disabled, onclick: action }, label);
    return h(
      "tr",
      { "data-testid": `form-slot-${i}` },
      h("td", null, String(i)),
      h("td", null, moduleSelect, " ", versionSelect),
      h("td", null, config),
      h(
        "td",
        null,
        button("↑", "form-slot-up", move(i - 1), i === 0),
        button("↓", "form-slot-down", move(i + 1), i === rows.length - 1),
        button("Remove", "form-slot-remove", () => {
          rows.splice(i, 1);
          renderChain();
        }),
      ),
    );
  };
  const addSlot = h("button", { type: "button", class: "secondary", "data-testid": "form-add-slot", disabled: modules.length === 0 }, "Add transform");
  addSlot.addEventListener("click", () => {
    rows.push({ module: modules[0]?.name ?? "", version: "", config: "" });
    renderChain();
  });
  renderChain();

  const message = h("div", { class: "card-message", "data-testid": "form-message", "aria-live": "polite" });
  const submit = h("button", { type: "submit", "data-testid": "form-submit" }, d ? "Save changes" : "Create pipeline");
  const form = h(
    "form",
    { class: "card pipeline-form", "data-testid": "pipeline-form", novalidate: true },
    h("h2", null, d ? `Edit ${d.name}` : "New pipeline"),
    h(
      "div",
      { class: "fields" },
      field("Name", name, d ? "a pipeline keeps its name" : "letters, digits, -, _ and ."),
      field("Inputs", inputs, "topics to consume, comma-separated"),
      field("Outputs", outputs, "topics to write to; the first is the default"),
      field("Dead-letter topic", deadLetter),
      field("Guarantee", guarantee),
      field("Start", start, "where a new consumer group starts"),
      field("Without a dead-letter topic", onError, "what a failed record does"),
      field("Batch size", batchSize, "records per call"),
      field("Linger (ms)", linger),
      field("Commit interval (ms)", commitInterval, "exactly-once: how often a transaction commits"),
    ),
    h(
      "table",
      { class: "slots", "data-testid": "form-chain" },
      h("caption", null, "Transform chain"),
      h("thead", null, h("tr", null, h("th", null, "#"), h("th", null, "Module"), h("th", null, "Config"), h("th", null, ""))),
      chainBody,
    ),
    modules.length === 0 ? h("p", { class: "muted" }, h("a", { href: "#/modules" }, "Upload a module"), " to add transforms.") : addSlot,
    h("div", { class: "actions" }, submit, h("button", { type: "button", class: "secondary", "data-testid": "form-cancel", onclick: cancel }, "Cancel")),
    message,
  );

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    let definition: PipelineDefinition;
    try {
      definition = read();
    } catch (e) {
      replace(message, notice("error", errorText(e), "error"));
      return;
    }
    submit.disabled = true;
    replace(message, notice("info", "Working…"));
    api
      .putPipeline(definition)
      .then((p) => done(p))
      .catch((e) => replace(message, notice("error", errorText(e), "error")))
      .finally(() => (submit.disabled = false));
  });

  /** The definition the form holds, checked as far as the page can (the runtime checks all). */
  function read(): PipelineDefinition {
    const topics = (label: string, value: string, required: boolean): string[] => {
      const list = value
        .split(",")
        .map((t) => t.trim())
        .filter(Boolean);
      if (required && list.length === 0) throw new Error(`${label}: name at least one topic`);
      for (const t of list) if (!TOPIC.test(t)) throw new Error(`${label}: \`${t}\` is not a topic name (letters, digits, ., _ and - only)`);
      return list;
    };
    if (!NAME.test(name.value)) throw new Error("Name: letters, digits, -, _ and . only");
    const count = (label: string, input: HTMLInputElement) => {
      const n = Number(input.value);
      if (!input.value || !Number.isInteger(n) || n < Number(input.min) || n > Number(input.max)) throw new Error(`${label}: a whole number from ${input.min} to ${input.max}`);
      return n;
    };
    const transform: TransformDefinition[] = rows.map((row, i) => {
      if (!row.module) throw new Error(`transform ${i}: choose a module`);
      let config: Record<string, string>;
      try {
        config = parseConfig(row.config);
      } catch (e) {
        throw new Error(`transform ${i}: ${(e as Error).message}`);
      }
      return { module: row.version ? `${row.module}@${row.version}` : row.module, config };
    });
    const dead = topics("Dead-letter topic", deadLetter.value, false);
    return {
      // Settings the form does not show (tables, group id, limits) stay as they are.
      ...(d ?? {}),
      name: name.value,
      inputs: topics("Inputs", inputs.value, true),
      outputs: topics("Outputs", outputs.value, true),
      dead_letter: dead[0] ?? null,
      guarantee: guarantee.value as PipelineDefinition["guarantee"],
      start: start.value as PipelineDefinition["start"],
      on_error: onError.value as PipelineDefinition["on_error"],
      batch_size: count("Batch size", batchSize),
      linger_ms: count("Linger", linger),
      commit_interval_ms: count("Commit interval", commitInterval),
      transform,
    };
  }

  return form;
}

/** `modules`, plus a placeholder for `name` if the store has no such module (deleted since). */
function withCurrent(modules: Module[], name: string): Module[] {
  if (!name || modules.some((m) => m.name === name)) return modules;
  return [...modules, { name, versions: [] }];
}
