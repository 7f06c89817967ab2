// Pipelines: per pipeline its status, live throughput chart, lag, batch latency, its latest
// change, and its transform chain with deploy, rollback, pause and resume; a form creates,
// edits and deletes pipelines. In a fleet, rates, lag and the chart are the fleet's totals,
// with each member's share below the chart.

import { api, errorText, FleetPipelineStats, Module, Pipeline, PipelineStats, Slot } from "../api";
import { ThroughputChart } from "../chart";
import { formatConfig, formatCount, formatMs, formatRate, h, notice, parseConfig, replace, setText } from "../dom";
import { history, onStats } from "../live";
import { currentModules, moduleOptions, onModules, refreshModules, versionOptions } from "../store";
import { Page } from "./page";
import { pipelineForm } from "./pipeline-form";

const POLL_MS = 5000;

/** What the user has picked in a slot's deploy form, kept across refreshes. */
interface Draft {
  module?: string;
  version?: number;
  config?: string;
}

class PipelineCard {
  el: HTMLElement;
  private pipeline: Pipeline;
  private statusEl = h("span", { class: "badge", "data-testid": "status" });
  private errorEl = h("div", { "data-testid": "pipeline-error" });
  private flowEl = h("div", { class: "flow" });
  private rateIn = h("span", { class: "value", "data-testid": "rate-in" });
  private rateOut = h("span", { class: "value", "data-testid": "rate-out" });
  private rateFailed = h("span", { class: "value", "data-testid": "rate-failed" });
  private lagEl = h("span", { class: "value", "data-testid": "lag" });
  private latencyEl = h("span", { class: "value", "data-testid": "batch-latency" });
  private totalsEl = h("span", { class: "value small", "data-testid": "totals" });
  private swapsEl = h("span", { class: "value small", "data-testid": "swaps" });
  private stateEl = h("span", { class: "value small", "data-testid": "state" });
  private pauseButton = h("button", { type: "button", class: "secondary" });
  private changeEl = h("div", { class: "muted small", "data-testid": "last-change" });
  private slotsBody = h("tbody");
  private messageEl = h("div", { class: "card-message", "data-testid": "message", "aria-live": "polite" });
  private chartEl = h("div", { class: "chart", "data-testid": "chart", "aria-label": "records per second: in, out, failed" });
  private chart: ThroughputChart | null = null;
  private fleetEl = h("div", { class: "fleet-breakdown", "data-testid": "fleet-breakdown" });
  private slotsKey = "";
  private drafts = new Map<number, Draft>();
  private busy = false;

  constructor(
    pipeline: Pipeline,
    private edit: (p: Pipeline) => void,
  ) {
    this.pipeline = pipeline;
    const name = pipeline.name;
    this.pauseButton.addEventListener("click", () => this.togglePause());
    const editButton = h("button", { type: "button", class: "secondary", "data-testid": "edit", onclick: () => this.edit(this.pipeline) }, "Edit");
    const deleteButton = h("button", { type: "button", class: "secondary danger", "data-testid": "delete" }, "Delete");
    deleteButton.addEventListener("click", () => {
      if (!window.confirm(`Delete pipeline ${name}? It drains, commits and stops; its consumer group keeps its offsets.`)) return;
      this.message("info", "Deleting…");
      api
        .deletePipeline(name)
        .then(() => this.el.remove())
        .catch((e) => this.message("error", errorText(e)));
    });
    this.el = h(
      "section",
      { class: "card pipeline", "data-testid": `pipeline-${name}`, "data-pipeline": name },
      h(
        "header",
        { class: "card-head" },
        h("h2", null, name),
        this.statusEl,
        h("span", { class: "spacer" }),
        h("a", { href: `#/dead-letters/${encodeURIComponent(name)}`, class: "button-link", "data-testid": "dead-letters-link" }, "Dead letters"),
        this.pauseButton,
        editButton,
        deleteButton,
      ),
      this.errorEl,
      this.flowEl,
      this.changeEl,
      h(
        "div",
        { class: "stats" },
        tile("In", this.rateIn, "records/s", "in"),
        tile("Out", this.rateOut, "records/s", "out"),
        tile("Failed", this.rateFailed, "records/s", "failed"),
        tile("Lag", this.lagEl, "records"),
        tile("Batch latency", this.latencyEl, ""),
        tile("Totals", this.totalsEl, "in / out / failed / dead letters", undefined, true),
        tile("Swaps", this.swapsEl, "count · longest pause", undefined, true),
        tile("State", this.stateEl, "tasks · restoring · changes logged", undefined, true),
      ),
      this.chartEl,
      this.fleetEl,
      h(
        "table",
        { class: "slots", "data-testid": "slots" },
        h("caption", null, "Transform chain"),
        h("thead", null, h("tr", null, h("th", null, "#"), h("th", null, "Module"), h("th", null, "Version"), h("th", null, "Config"), h("th", null, "Deploy"))),
        this.slotsBody,
      ),
      this.messageEl,
    );
    this.update(pipeline);
  }

  /** Starts the chart once the card is in the document (uPlot measures its container). */
  mount(): void {
    if (!this.chart) this.chart = new ThroughputChart(this.chartEl, history(this.pipeline.name));
  }

  update(p: Pipeline): void {
    this.pipeline = p;
    this.showStatus(p.status);
    replace(this.errorEl, p.error ? notice("error", p.error) : null);
    replace(
      this.flowEl,
      h("span", { class: "muted" }, "from "),
      p.inputs.map((t, i) => [i ? ", " : "", h("code", null, t)]),
      h("span", { class: "muted" }, " to "),
      p.outputs.map((t, i) => [i ? ", " : "", h("code", null, t)]),
      p.dead_letter ? [h("span", { class: "muted" }, " · dead letters to "), h("code", null, p.dead_letter)] : h("span", { class: "muted" }, " · no dead-letter topic"),
      h("span", { class: "muted" }, " · "),
      h("span", { class: "guarantee", title: guaranteeTitle(p) }, p.guarantee),
    );
    const change = p.last_change;
    replace(this.changeEl, change ? `latest change: ${change.what}, by ${change.by}, ${new Date(change.at).toLocaleString()}` : null);
    this.showRates(p.fleet?.rates ?? p.rates, p.fleet?.lag ?? p.lag, p.batch_latency_ms);
    this.showFleet(p.fleet);
    this.showCounts(p.totals, p.swaps, p.state);
    this.renderSlots();
  }

  live(stats: PipelineStats): void {
    this.showStatus(stats.status);
    this.showRates(stats.fleet?.rates ?? stats.rates, stats.fleet?.lag ?? stats.lag, stats.batch_latency_ms);
    this.showFleet(stats.fleet);
    this.showCounts(stats.totals, stats.swaps, stats.state);
    this.chart?.update();
  }

  /** Each live member's share of the fleet's totals; nothing for a process running alone. */
  private showFleet(fleet: FleetPipelineStats | null | undefined): void {
    this.el.dataset.fleet = fleet ? "true" : "false";
    if (!fleet) {
      replace(this.fleetEl);
      return;
    }
    const n = fleet.members.length;
    replace(
      this.fleetEl,
      h(
        "table",
        { class: "members small", "data-testid": "fleet-members", "data-count": n },
        h("caption", null, `Rates, lag and the chart are the fleet's, over ${n} live member${n === 1 ? "" : "s"} (totals, swaps and state are this member's); each member's share:`),
        h("thead", null, h("tr", null, ["Member", "Partitions", "In/s", "Out/s", "Failed/s", "Lag"].map((t) => h("th", null, t)))),
        h(
          "tbody",
          null,
          fleet.members.map((m) =>
            h(
              "tr",
              { "data-testid": `share-${m.member}`, "data-member": m.member },
              h("td", null, h("code", null, m.member)),
              h("td", { class: "num", "data-testid": "share-partitions" }, String(m.partitions)),
              h("td", { class: "num", "data-testid": "share-in", "data-value": m.rates.in }, formatRate(m.rates.in)),
              h("td", { class: "num" }, formatRate(m.rates.out)),
              h("td", { class: "num" }, formatRate(m.rates.failed)),
              h("td", { class: "num" }, formatCount(m.lag)),
            ),
          ),
        ),
      ),
    );
  }

  private showCounts(totals: Pipeline["totals"], swaps: Pipeline["swaps"], state: Pipeline["state"]): void {
    setText(this.totalsEl, `${formatCount(totals.in)} / ${formatCount(totals.out)} / ${formatCount(totals.failed)} / ${formatCount(totals.dead_letters)}`);
    setText(this.swapsEl, `${formatCount(swaps.count)} · ${formatMs(swaps.max_pause_ms)}`);
    // Stateless pipelines have no state to show.
    const stateful = state.tasks > 0 || state.changelog_records > 0;
    setText(this.stateEl, stateful ? `${formatCount(state.tasks)} · ${formatCount(state.restoring)} · ${formatCount(state.changelog_records)}` : "none");
    this.stateEl.title = `${formatCount(state.restored_records)} changelog records read to restore state`;
  }

  private showStatus(status: string): void {
    this.pipeline.status = status as Pipeline["status"];
    setText(this.statusEl, status);
    this.statusEl.className = `badge status-${status}`;
    const paused = status === "paused";
    setText(this.pauseButton, paused ? "Resume" : "Pause");
    this.pauseButton.dataset.testid = paused ? "resume" : "pause";
    this.pauseButton.disabled = this.busy || status === "stopped" || status === "stopping";
  }

  private showRates(rates: { in: number; out: number; failed: number }, lag: number, latency: number): void {
    setText(this.rateIn, formatRate(rates.in));
    this.rateIn.dataset.value = String(rates.in);
    setText(this.rateOut, formatRate(rates.out));
    this.rateOut.dataset.value = String(rates.out);
    setText(this.rateFailed, formatRate(rates.failed));
    this.rateFailed.dataset.value = String(rates.failed);
    setText(this.lagEl, formatCount(lag));
    setText(this.latencyEl, formatMs(latency));
  }

  /** Redraws the chain when the slots or the modules changed, so open selections survive polls. */
  renderSlots(force = false): void {
    const modules = currentModules();
    const key = JSON.stringify([this.pipeline.slots, modules.map((m) => [m.name, m.versions.map((v) => v.version)]), this.busy]);
    if (!force && key === this.slotsKey) return;
    this.slotsKey = key;
    replace(
      this.slotsBody,
      this.pipeline.slots.length === 0 ? h("tr", null, h("td", { colspan: 5, class: "muted" }, "no transforms")) : this.pipeline.slots.map((s) => this.slotRow(s, modules)),
    );
  }

  private slotRow(slot: Slot, modules: Module[]): HTMLElement {
    const draft = this.drafts.get(slot.index) ?? {};
    const moduleSelect = h("select", { "data-testid": "deploy-module", "aria-label": `module for slot ${slot.index}` });
    const versionSelect = h("select", { "data-testid": "deploy-version", "aria-label": `version for slot ${slot.index}` });
    const configInput = h("input", {
      type: "text",
      "data-testid": "deploy-config",
      "aria-label": `config for slot ${slot.index}`,
      placeholder: "config: the slot's, or a new module's defaults",
      value: draft.config ?? "",
    });
    const chosenModule = draft.module ?? (modules.some((m) => m.name === slot.module) ? slot.module : modules[0]?.name);
    moduleOptions(moduleSelect, modules, chosenModule);
    const findModule = () => modules.find((m) => m.name === moduleSelect.value);
    versionOptions(versionSelect, findModule(), draft.version);
    moduleSelect.addEventListener("change", () => {
      this.drafts.set(slot.index, { ...this.drafts.get(slot.index), module: moduleSelect.value, version: undefined });
      versionOptions(versionSelect, findModule());
    });
    versionSelect.addEventListener("change", () => {
      this.drafts.set(slot.index, { ...this.drafts.get(slot.index), module: moduleSelect.value, version: Number(versionSelect.value) });
    });
    configInput.addEventListener("input", () => {
      this.drafts.set(slot.index, { ...this.drafts.get(slot.index), config: configInput.value });
    });
    const deploy = h("button", { type: "button", "data-testid": "deploy", disabled: this.busy || modules.length === 0 }, "Deploy");
    deploy.addEventListener("click", () => {
      const version = Number(versionSelect.value);
      if (!moduleSelect.value || !version) return;
      let config: Record<string, string> | undefined;
      try {
        config = configInput.value.trim() ? parseConfig(configInput.value) : undefined;
      } catch (e) {
        this.message("error", errorText(e));
        return;
      }
      void this.act(`Deployed ${moduleSelect.value} v${version} into slot ${slot.index}`, () =>
        api.deploy(this.pipeline.name, slot.index, moduleSelect.value, version, config),
      ).then((ok) => {
        if (ok) this.drafts.delete(slot.index);
        this.renderSlots(true);
      });
    });
    const rollback = h(
      "button",
      { type: "button", class: "secondary", "data-testid": "rollback", disabled: this.busy || !slot.can_rollback, title: slot.can_rollback ? "back to the previous version" : "nothing to roll back to" },
      "Rollback",
    );
    rollback.addEventListener("click", () => {
      void this.act(`Rolled back slot ${slot.index}`, () => api.rollback(this.pipeline.name, slot.index));
    });
    return h(
      "tr",
      { "data-testid": `slot-${slot.index}`, "data-module": slot.module, "data-version": slot.version },
      h("td", null, String(slot.index)),
      h("td", null, h("strong", { "data-testid": "slot-module" }, slot.module)),
      h("td", null, h("span", { "data-testid": "slot-version" }, `v${slot.version}`), " ", h("code", { class: "muted sha", title: slot.sha256 }, slot.sha256.slice(0, 12))),
      h("td", { class: "config" }, formatConfig(slot.config) || h("span", { class: "muted" }, "none")),
      h(
        "td",
        { class: "deploy" },
        modules.length === 0 ? h("span", { class: "muted" }, h("a", { href: "#/modules" }, "Upload a module"), " to deploy it") : [moduleSelect, versionSelect, configInput, deploy],
        rollback,
      ),
    );
  }

  private togglePause(): void {
    const name = this.pipeline.name;
    if (this.pipeline.status === "paused") void this.act("Resumed", () => api.resume(name));
    else void this.act("Paused", () => api.pause(name));
  }

  /** Runs a mutating call; the pipeline it answers replaces this card's. */
  private async act(done: string, call: () => Promise<Pipeline>): Promise<boolean> {
    this.busy = true;
    this.showStatus(this.pipeline.status);
    this.renderSlots(true);
    this.message("info", "Working…");
    try {
      const p = await call();
      this.busy = false;
      this.update(p);
      this.message("ok", done);
      return true;
    } catch (e) {
      this.busy = false;
      this.message("error", errorText(e));
      return false;
    } finally {
      this.busy = false;
      this.showStatus(this.pipeline.status);
      this.renderSlots(true);
    }
  }

  private message(kind: "error" | "ok" | "info", text: string): void {
    replace(this.messageEl, notice(kind, text, kind === "error" ? "error" : kind === "ok" ? "ok" : undefined));
  }

  destroy(): void {
    this.chart?.destroy();
  }
}

function tile(label: string, value: HTMLElement, unit: string, series?: string, wide = false): HTMLElement {
  return h("div", { class: `tile${series ? " series-" + series : ""}${wide ? " wide" : ""}` }, h("span", { class: "label" }, label), value, unit ? h("span", { class: "unit" }, unit) : null);
}

export function pipelinesPage(): Page {
  const list = h("div", { class: "pipelines", "data-testid": "pipelines" });
  const status = h("div");
  const formArea = h("div");
  const doneEl = h("div");
  const newButton = h("button", { type: "button", "data-testid": "new-pipeline" }, "New pipeline");
  const el = h("div", { class: "page" }, h("div", { class: "page-head" }, h("h1", null, "Pipelines"), h("span", { class: "spacer" }), newButton), status, doneEl, formArea, list);
  const cards = new Map<string, PipelineCard>();
  let destroyed = false;
  let timer = 0;

  /** Opens the form for `p` (null: a new pipeline), with the modules as they are now. */
  const openForm = (p: Pipeline | null) => {
    const close = () => replace(formArea);
    replace(doneEl);
    void refreshModules()
      .catch(() => undefined)
      .then(() => {
        replace(
          formArea,
          pipelineForm(
            p?.definition ?? null,
            (saved) => {
              close();
              replace(doneEl, notice("ok", `${p ? "Saved" : "Created"} ${saved.name}`, "form-done"));
              void load();
            },
            close,
          ),
        );
        formArea.scrollIntoView({ block: "nearest" });
      });
  };
  newButton.addEventListener("click", () => openForm(null));

  const load = async () => {
    try {
      const pipelines = await api.pipelines();
      if (destroyed) return;
      replace(status, pipelines.length === 0 ? notice("info", "No pipelines yet: create one with New pipeline, `sluice apply -f pipelines.toml`, or [[pipeline]] in sluice.toml.") : null);
      const seen = new Set<string>();
      pipelines.forEach((p, i) => {
        seen.add(p.name);
        let card = cards.get(p.name);
        if (!card) {
          card = new PipelineCard(p, openForm);
          cards.set(p.name, card);
          list.insertBefore(card.el, list.children[i] ?? null);
          card.mount();
        } else {
          card.update(p);
        }
      });
      for (const [name, card] of cards) {
        if (!seen.has(name)) {
          card.destroy();
          card.el.remove();
          cards.delete(name);
        }
      }
    } catch (e) {
      if (!destroyed) replace(status, notice("error", errorText(e), "pipelines-error"));
    }
  };

  const tick = () => {
    void load().finally(() => {
      if (!destroyed) timer = window.setTimeout(tick, POLL_MS);
    });
  };
  tick();
  refreshModules().catch(() => undefined);
  const offModules = onModules(() => cards.forEach((c) => c.renderSlots()));
  const offStats = onStats((event) => {
    for (const s of event.pipelines) cards.get(s.name)?.live(s);
  });

  return {
    el,
    destroy() {
      destroyed = true;
      window.clearTimeout(timer);
      offModules();
      offStats();
      cards.forEach((c) => c.destroy());
    },
  };
}

/// What the guarantee means, with the transactions of an exactly-once pipeline.
function guaranteeTitle(p: Pipeline): string {
  const t = p.transactions;
  if (!t) return "after a crash, the records since the last commit are processed again";
  const age = t.last_commit_age_ms === null ? "none yet" : `${Math.round(t.last_commit_age_ms)} ms ago`;
  const abort = t.last_abort ? `; last abort: ${t.last_abort}` : "";
  return `read_committed readers see each input's outputs once; ${t.committed} transactions committed (last ${age}), ${t.aborted} aborted${abort}`;
}
