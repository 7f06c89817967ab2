// State shared by the pages: the API's info and the list of modules.

import { api, Info, Module, setAuthRequired } from "./api";

export let info: Info | null = null;

export async function loadInfo(): Promise<Info> {
  info = await api.info();
  setAuthRequired(info.auth_required, info.read_auth_required);
  return info;
}

let modules: Module[] = [];
let loaded = false;
const listeners = new Set<(modules: Module[]) => void>();

export function currentModules(): Module[] {
  return modules;
}

export function modulesLoaded(): boolean {
  return loaded;
}

export async function refreshModules(): Promise<Module[]> {
  const list = await api.modules();
  list.sort((a, b) => a.name.localeCompare(b.name));
  for (const m of list) m.versions.sort((a, b) => b.version - a.version);
  modules = list;
  loaded = true;
  for (const l of listeners) l(modules);
  return modules;
}

export function onModules(listener: (modules: Module[]) => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** Fills `select` with the versions of `module`, newest first, keeping `selected` if it is there. */
export function versionOptions(select: HTMLSelectElement, module: Module | undefined, selected?: number): void {
  while (select.firstChild) select.removeChild(select.firstChild);
  for (const v of module?.versions ?? []) {
    const option = document.createElement("option");
    option.value = String(v.version);
    option.textContent = `v${v.version} · ${v.sha256.slice(0, 8)}`;
    if (v.version === selected) option.selected = true;
    select.appendChild(option);
  }
  select.disabled = !module || module.versions.length === 0;
}

export function moduleOptions(select: HTMLSelectElement, list: Module[], selected?: string): void {
  while (select.firstChild) select.removeChild(select.firstChild);
  for (const m of list) {
    const option = document.createElement("option");
    option.value = m.name;
    option.textContent = m.name;
    if (m.name === selected) option.selected = true;
    select.appendChild(option);
  }
  select.disabled = list.length === 0;
}

/** The part of the location after `#/`: the route, its path segments and its query. */
export interface Route {
  page: string;
  args: string[];
  query: URLSearchParams;
}

export function parseRoute(hash: string): Route {
  const raw = hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?", 2);
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { page: parts[0] ?? "pipelines", args: parts.slice(1), query: new URLSearchParams(query) };
}
