// A live throughput chart (records per second in, out and failed) drawn with uPlot.

import uPlot from "uplot";
import { History } from "./live";
import { formatRate } from "./dom";

/** Seconds shown on the x axis. */
const WINDOW_SECONDS = 120;
const COLORS = { in: "#2563eb", out: "#16a34a", failed: "#dc2626" };

export class ThroughputChart {
  private plot: uPlot;
  private observer: ResizeObserver;

  constructor(
    private container: HTMLElement,
    private data: History,
  ) {
    const options: uPlot.Options = {
      width: Math.max(container.clientWidth, 280),
      height: 180,
      cursor: { drag: { x: false, y: false } },
      legend: { live: true },
      // The last WINDOW_SECONDS at most (30 s at least), so that the chart scrolls rather than stretches.
      scales: {
        x: {
          time: true,
          range: (_u, min, max) => {
            // No sample yet (a pipeline just created): the last 30 s up to now.
            if (min == null || max == null) return [Date.now() / 1000 - 30, Date.now() / 1000];
            return [max - Math.min(WINDOW_SECONDS, Math.max(30, max - min)), max];
          },
        },
        y: { range: (_u, _min, max) => [0, Math.max(1, (max ?? 0) * 1.1)] },
      },
      axes: [
        { stroke: "#64748b", grid: { stroke: "#e2e8f0" }, ticks: { stroke: "#e2e8f0" } },
        { stroke: "#64748b", grid: { stroke: "#e2e8f0" }, ticks: { stroke: "#e2e8f0" }, size: 56, values: (_u, vals) => vals.map((v) => formatRate(v)) },
      ],
      series: [
        {},
        { label: "in/s", stroke: COLORS.in, width: 2, points: { show: false }, value: (_u, v) => (v == null ? "–" : formatRate(v)) },
        { label: "out/s", stroke: COLORS.out, width: 2, points: { show: false }, value: (_u, v) => (v == null ? "–" : formatRate(v)) },
        { label: "failed/s", stroke: COLORS.failed, width: 2, points: { show: false }, value: (_u, v) => (v == null ? "–" : formatRate(v)) },
      ],
    };
    this.plot = new uPlot(options, this.columns(), container);
    this.observer = new ResizeObserver(() => {
      const width = Math.max(container.clientWidth, 280);
      if (Math.abs(width - this.plot.width) > 2) this.plot.setSize({ width, height: 180 });
    });
    this.observer.observe(container);
    this.mark();
  }

  private columns(): uPlot.AlignedData {
    // Copies: uPlot keeps the arrays it is given, and the history goes on changing.
    return [this.data.t.slice(), this.data.in.slice(), this.data.out.slice(), this.data.failed.slice()];
  }

  /** The number of points drawn, for tests and for the eye. */
  private mark(): void {
    this.container.dataset.points = String(this.data.t.length);
  }

  update(): void {
    this.plot.setData(this.columns());
    this.mark();
  }

  destroy(): void {
    this.observer.disconnect();
    this.plot.destroy();
  }
}
