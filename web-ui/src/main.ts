// Sluice dashboard: the shell (navigation, API token, live-feed indicator) and the hash router.

import "uplot/dist/uPlot.min.css";
import "./app.css";
import { errorText, getToken, setToken } from "./api";
import { h, replace } from "./dom";
import { connect, onConnection, reconnect } from "./live";
import { deadLettersPage } from "./pages/deadletters";
import { fleetPage } from "./pages/fleet";
import { modulesPage } from "./pages/modules";
import { Page } from "./pages/page";
import { pipelinesPage } from "./pages/pipelines";
import { tryPage } from "./pages/try";
import { info, loadInfo, parseRoute, Route } from "./store";

const PAGES: Record<string, { title: string; make: (route: Route) => Page }> = {
  pipelines: { title: "Pipelines", make: pipelinesPage },
  modules: { title: "Modules", make: modulesPage },
  try: { title: "Try it", make: tryPage },
  "dead-letters": { title: "Dead letters", make: deadLettersPage },
  fleet: { title: "Fleet", make: fleetPage },
};

const main = h("main", { id: "main", "data-testid": "main" });
const nav = h(
  "nav",
  { "aria-label": "pages" },
  Object.entries(PAGES).map(([key, p]) => h("a", { href: `#/${key}`, "data-testid": `nav-${key}`, "data-page": key }, p.title)),
);
const live = h("span", { class: "live", "data-testid": "live", title: "live feed" }, "offline");
const version = h("span", { class: "muted small", "data-testid": "version" });
const authBadge = h("span", { class: "badge", "data-testid": "auth" });
const token = h("input", {
  type: "password",
  id: "token",
  "data-testid": "token",
  placeholder: "API token",
  autocomplete: "off",
  value: getToken(),
  "aria-label": "API token, sent with changes when the API requires one",
});
token.addEventListener("change", () => {
  setToken(token.value.trim());
  // A read token opens the live feed too.
  if (info?.read_auth_required) reconnect();
});
token.addEventListener("input", () => setToken(token.value.trim()));

const banner = h("div", { "data-testid": "banner" });

document.body.append(
  h(
    "header",
    { class: "top" },
    h("a", { class: "brand", href: "#/pipelines" }, h("span", { class: "logo", "aria-hidden": "true" }, "≋"), "Sluice"),
    nav,
    h("span", { class: "spacer" }),
    live,
    version,
    h("label", { class: "token" }, authBadge, token),
  ),
  banner,
  main,
);

onConnection((connected) => {
  live.textContent = connected ? "live" : "offline";
  live.classList.toggle("on", connected);
});

let current: Page | null = null;

function render(): void {
  const route = parseRoute(location.hash);
  const page = PAGES[route.page] ? route.page : "pipelines";
  current?.destroy?.();
  current = PAGES[page].make(route);
  replace(main, current.el);
  document.title = `${PAGES[page].title} · Sluice`;
  for (const a of nav.querySelectorAll("a")) {
    if (a.dataset.page === page) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

window.addEventListener("hashchange", render);

async function start(): Promise<void> {
  try {
    const info = await loadInfo();
    version.textContent = `v${info.version}`;
    authBadge.textContent = info.auth_required ? "auth required" : "open";
    authBadge.className = `badge ${info.auth_required ? "status-paused" : "status-running"}`;
    authBadge.title = info.read_auth_required
      ? "reads need the read token or the API token; changes need the API token"
      : info.auth_required
        ? "changes need the API token"
        : "the API needs no token";
    token.hidden = !info.auth_required && !getToken();
  } catch (e) {
    replace(banner, h("div", { class: "notice notice-error", role: "alert" }, `Cannot load the API's info: ${errorText(e)}`));
  }
  document.body.dataset.ready = "true";
  render();
  connect();
}

void start();
