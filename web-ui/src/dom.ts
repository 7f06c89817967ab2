// A tiny DOM builder: h("div", { class: "x", "data-testid": "y", onclick: f }, child, ...).

export type Child = Node | string | number | null | undefined | false | Child[];
type Handler = (event: any) => void;
export type Attrs = Record<string, string | number | boolean | Handler | null | undefined>;

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs?: Attrs | null, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith("on") && typeof value === "function") {
        el.addEventListener(key.slice(2), value as Handler);
      } else if (key === "value" && "value" in el) {
        (el as unknown as HTMLInputElement).value = String(value);
      } else if (value === true) {
        el.setAttribute(key, "");
      } else {
        el.setAttribute(key, String(value));
      }
    }
  }
  append(el, children);
  return el;
}

export function append(parent: Node, children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(parent, child);
    else if (child instanceof Node) parent.appendChild(child);
    else parent.appendChild(document.createTextNode(String(child)));
  }
}

/** Replaces every child of `parent`. */
export function replace(parent: Node, ...children: Child[]): void {
  while (parent.firstChild) parent.removeChild(parent.firstChild);
  append(parent, children);
}

export function setText(el: Element, text: string): void {
  if (el.textContent !== text) el.textContent = text;
}

/** A message box: `kind` is "error", "ok" or "info". Its text is the message exactly. */
export function notice(kind: "error" | "ok" | "info", text: string, testid?: string): HTMLElement {
  return h("div", { class: `notice notice-${kind}`, role: kind === "error" ? "alert" : "status", "data-testid": testid }, text);
}

export function formatRate(n: number): string {
  if (!isFinite(n)) return "–";
  if (n === 0) return "0";
  if (n >= 1e6) return (n / 1e6).toFixed(2) + " M";
  if (n >= 1e4) return (n / 1e3).toFixed(1) + " k";
  if (n >= 100) return n.toFixed(0);
  return n.toFixed(1);
}

export function formatCount(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "–";
}

export function formatBytes(n: number): string {
  if (n >= 1 << 20) return (n / (1 << 20)).toFixed(2) + " MiB";
  if (n >= 1024) return (n / 1024).toFixed(1) + " KiB";
  return n + " B";
}

export function formatMs(n: number): string {
  if (!Number.isFinite(n)) return "–";
  return n >= 100 ? n.toFixed(0) + " ms" : n.toFixed(1) + " ms";
}

/** Parses `key=value` pairs, one per line or separated by commas; blank input is no config. */
export function parseConfig(text: string): Record<string, string> {
  const config: Record<string, string> = {};
  for (const raw of text.split(/[\n,]/)) {
    const part = raw.trim();
    if (!part) continue;
    const eq = part.indexOf("=");
    if (eq <= 0) throw new Error(`config: expected key=value, got \`${part}\``);
    config[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  return config;
}

export function formatConfig(config: Record<string, string> | null | undefined): string {
  return Object.entries(config ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(", ");
}
