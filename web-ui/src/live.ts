// The live feed: `GET /api/v1/events` (Server-Sent Events, event `stats`, about once a second),
// kept as a rolling history per pipeline for the charts, whichever page is showing.

import { api, PipelineStats, StatsEvent } from "./api";

/** Seconds of history kept per pipeline. */
export const HISTORY_SECONDS = 300;

export interface History {
  /** uPlot's columns: time in seconds, then in, out and failed per second. */
  t: number[];
  in: number[];
  out: number[];
  failed: number[];
  latest: PipelineStats | null;
}

type Listener = (event: StatsEvent) => void;
type StateListener = (connected: boolean) => void;

const histories = new Map<string, History>();
const listeners = new Set<Listener>();
const stateListeners = new Set<StateListener>();
let source: EventSource | null = null;
let connected = false;
let events = 0;

export function history(name: string): History {
  let h = histories.get(name);
  if (!h) {
    h = { t: [], in: [], out: [], failed: [], latest: null };
    histories.set(name, h);
  }
  return h;
}

export function onStats(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function onConnection(listener: StateListener): () => void {
  stateListeners.add(listener);
  listener(connected);
  return () => stateListeners.delete(listener);
}

export function eventCount(): number {
  return events;
}

function setConnected(value: boolean): void {
  if (connected === value) return;
  connected = value;
  for (const l of stateListeners) l(value);
}

function record(event: StatsEvent): void {
  const t = (event.time ?? Date.now()) / 1000;
  for (const p of event.pipelines ?? []) {
    const h = history(p.name);
    // A reconnect may replay a second already seen; keep time increasing for the chart.
    if (h.t.length && t <= h.t[h.t.length - 1]) continue;
    h.t.push(t);
    // In a fleet, the chart shows the fleet's totals.
    const rates = p.fleet?.rates ?? p.rates;
    h.in.push(rates?.in ?? 0);
    h.out.push(rates?.out ?? 0);
    h.failed.push(rates?.failed ?? 0);
    h.latest = p;
    while (h.t.length > 1 && h.t[0] < t - HISTORY_SECONDS) {
      h.t.shift();
      h.in.shift();
      h.out.shift();
      h.failed.shift();
    }
  }
}

/** Connects again, with the token as it is now. */
export function reconnect(): void {
  source?.close();
  source = null;
  connect();
}

export function connect(): void {
  if (source || typeof EventSource === "undefined") return;
  source = new EventSource(api.eventsUrl());
  source.addEventListener("open", () => setConnected(true));
  // EventSource reconnects by itself after an error.
  source.addEventListener("error", () => setConnected(false));
  source.addEventListener("stats", (message) => {
    let event: StatsEvent;
    try {
      event = JSON.parse((message as MessageEvent<string>).data);
    } catch {
      return;
    }
    events++;
    setConnected(true);
    record(event);
    for (const l of listeners) l(event);
  });
}
