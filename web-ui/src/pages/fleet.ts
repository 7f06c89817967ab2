// Fleet: every member of this process's fleet as its heartbeats say (id, address, uptime,
// partitions, rates, lag, what each slot runs, last heartbeat), so that a rollout's convergence
// is visible: the summary says whether every live member runs the same versions.

import { api, errorText, Fleet, FleetMember } from "../api";
import { formatCount, formatRate, h, notice, replace } from "../dom";
import { Page } from "./page";

/** How often the page asks again: members write a heartbeat every `heartbeat_ms`. */
const POLL_MS = 1000;

/** "pipeline slot: module@version" for each slot a member runs. */
function slots(m: FleetMember): string[] {
  return m.pipelines.flatMap((p) => p.slots.map((s, i) => `${p.name} ${i}: ${s.module}@${s.version}`));
}

function formatDuration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  const hours = Math.floor(s / 3600);
  return hours < 48 ? `${hours} h ${Math.floor((s % 3600) / 60)} min` : `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

/** What the live members run: converged when every one runs the same thing in every slot. */
function convergence(fleet: Fleet): HTMLElement {
  const live = fleet.members.filter((m) => m.alive);
  const missing = fleet.members.length - live.length;
  const variants = new Map<string, number>();
  for (const m of live) {
    const key = slots(m).join(", ");
    variants.set(key, (variants.get(key) ?? 0) + 1);
  }
  const who = `${live.length} live member${live.length === 1 ? "" : "s"}${missing ? `, ${missing} missing` : ""}`;
  if (variants.size <= 1) {
    const [what] = variants.keys();
    return h("div", { class: "notice notice-ok", role: "status", "data-testid": "convergence", "data-converged": "true" }, `${who}, all running ${what || "no transforms"}`);
  }
  return h(
    "div",
    { class: "notice notice-info", role: "status", "data-testid": "convergence", "data-converged": "false" },
    `${who}, rollout in progress: `,
    [...variants].map(([what, n], i) => [i ? "; " : "", `${n} running ${what}`]),
  );
}

function memberRow(m: FleetMember): HTMLElement {
  const partitions = m.pipelines.flatMap((p) => p.partitions.map((t) => `${t.topic}-${t.partition}`));
  const rateIn = m.pipelines.reduce((sum, p) => sum + p.rates.in, 0);
  const lag = m.pipelines.reduce((sum, p) => sum + p.lag, 0);
  const state = m.alive ? "live" : "missing";
  return h(
    "tr",
    { "data-testid": `member-${m.id}`, "data-member": m.id, "data-alive": String(m.alive), class: m.alive ? "" : "muted" },
    h("td", null, h("code", null, m.id), m.this_member ? h("span", { class: "badge small", title: "the member serving this page" }, "this") : null),
    h("td", null, m.address ? h("a", { href: m.address, "data-testid": "address" }, m.address) : "–"),
    h("td", { "data-testid": "uptime" }, formatDuration(m.heartbeat_at - m.started_at)),
    h("td", { "data-testid": "partitions", "data-count": partitions.length, title: partitions.join(", ") || "none" }, String(partitions.length)),
    h("td", { class: "num", "data-testid": "member-rate-in", "data-value": rateIn }, formatRate(rateIn)),
    h("td", { class: "num", "data-testid": "member-lag" }, formatCount(lag)),
    h("td", { "data-testid": "member-slots" }, slots(m).map((s) => h("div", null, h("code", null, s)))),
    h("td", { "data-testid": "heartbeat" }, h("span", { class: `badge status-${m.alive ? "running" : "failed"}`, "data-testid": "member-state" }, state), ` ${formatDuration(m.heartbeat_age_ms)} ago`),
  );
}

export function fleetPage(): Page {
  const summary = h("div", { "data-testid": "fleet-summary" });
  const body = h("tbody");
  const error = h("div", { "aria-live": "polite" });
  const el = h(
    "div",
    { class: "page" },
    h("h1", { "data-testid": "fleet-title" }, "Fleet"),
    error,
    summary,
    h(
      "section",
      { class: "card" },
      h(
        "table",
        { class: "members", "data-testid": "members" },
        h("caption", null, "Members, as their heartbeats say"),
        h(
          "thead",
          null,
          h("tr", null, ["Member", "Address", "Uptime", "Partitions", "In/s", "Lag", "Running", "Last heartbeat"].map((t) => h("th", null, t))),
        ),
        body,
      ),
    ),
  );

  let timer: number | undefined;
  let stopped = false;
  const refresh = async () => {
    try {
      const fleet = await api.fleet();
      if (stopped) return;
      replace(error);
      replace(
        summary,
        h(
          "p",
          { class: "muted" },
          fleet.name
            ? ["Fleet ", h("code", { "data-testid": "fleet-name" }, fleet.name), `: members share each pipeline's partitions through its consumer group, and one control plane kept in Kafka. A member is missing after ${fleet.member_timeout_ms / 1000} s without a heartbeat.`]
            : "This process runs alone ([fleet] is not configured): it is the only member, and keeps its modules and deployments in its state_dir.",
        ),
        convergence(fleet),
      );
      replace(body, fleet.members.map(memberRow));
    } catch (e) {
      if (!stopped) replace(error, notice("error", `Cannot load the fleet: ${errorText(e)}`));
    }
    if (!stopped) timer = window.setTimeout(refresh, POLL_MS);
  };
  void refresh();
  return {
    el,
    destroy() {
      stopped = true;
      window.clearTimeout(timer);
    },
  };
}
