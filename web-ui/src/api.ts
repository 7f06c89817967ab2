// The Sluice HTTP API (`/api/v1`): types and a small client. Errors come back as
// `{"error": "message"}`; ApiError carries that message unchanged.
//
// The types are generated (src/api.gen.ts, by build.sh) from the OpenAPI document that the
// runtime serves, which is generated from its Rust types: a change to the API that the dashboard
// does not follow fails `tsc`.

import type { components } from "./api.gen";

type Schemas = components["schemas"];

export type Info = Schemas["Info"];
export type ModuleVersion = Schemas["ModuleVersion"];
export type Module = Schemas["Module"];
export type Uploaded = Schemas["Uploaded"];
export type Rates = Schemas["Rates"];
export type Status = Schemas["Status"];
export type Slot = Schemas["Slot"];
export type Pipeline = Schemas["Pipeline"];
export type PipelineDefinition = Schemas["PipelineDefinition"];
export type TransformDefinition = Schemas["TransformDefinition"];
export type RecordBytes = Schemas["RecordBytes"];
export type TryRequest = Schemas["TryRequest"];
export type TryOutput = Schemas["TryOutput"];
export type TryResult = Schemas["TryResult"];
export type TryResponse = Schemas["TryResponse"];
export type DeployRequest = Schemas["Deploy"];
export type DeadLetter = Schemas["DeadLetter"];
export type DeadLetters = Schemas["DeadLetters"];
export type PipelineStats = Schemas["PipelineStats"];
export type StatsEvent = Schemas["Stats"];
export type Fleet = Schemas["Fleet"];
export type FleetMember = Schemas["FleetMember"];
export type FleetPipelineStats = Schemas["FleetPipelineStats"];

/** Record bytes as text: UTF-8 as it is, anything else as `hex …`; null when absent. */
export function bytesText(bytes: RecordBytes | null | undefined): string | null {
  if (bytes === null || bytes === undefined) return null;
  return typeof bytes === "string" ? bytes : `hex ${bytes.hex}`;
}

export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
  ) {
    super(message);
  }
}

const TOKEN_KEY = "sluice.token";

export function getToken(): string {
  try {
    return localStorage.getItem(TOKEN_KEY) ?? "";
  } catch {
    return "";
  }
}

export function setToken(token: string): void {
  try {
    if (token) localStorage.setItem(TOKEN_KEY, token);
    else localStorage.removeItem(TOKEN_KEY);
  } catch {
    /* storage disabled: the token lasts for this page only */
  }
}

let authRequired: boolean | null = null;
let readAuthRequired = false;

/** What the API needs a token for: changes, and (with `api.read_token`) reads too. */
export function setAuthRequired(required: boolean, reads = false): void {
  authRequired = required;
  readAuthRequired = reads;
}

const BASE = "api/v1";

async function request<T>(method: string, path: string, body?: BodyInit, contentType?: string): Promise<T> {
  return (await requestWithStatus<T>(method, path, body, contentType)).body;
}

async function requestWithStatus<T>(method: string, path: string, body?: BodyInit, contentType?: string): Promise<{ status: number; body: T }> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (contentType) headers["Content-Type"] = contentType;
  const token = getToken();
  // Mutating routes carry the token when the API requires one (or before we know whether it
  // does); reads too when the API has a read token.
  const needed = method === "GET" ? readAuthRequired : authRequired !== false;
  if (token && needed) headers["Authorization"] = `Bearer ${token}`;
  let response: Response;
  try {
    response = await fetch(`${BASE}${path}`, { method, headers, body });
  } catch (e) {
    throw new ApiError(0, `cannot reach the Sluice API: ${(e as Error).message}`);
  }
  const text = await response.text();
  let json: unknown = null;
  if (text) {
    try {
      json = JSON.parse(text);
    } catch {
      json = null;
    }
  }
  if (!response.ok) {
    const message =
      json && typeof json === "object" && typeof (json as { error?: unknown }).error === "string"
        ? (json as { error: string }).error
        : text.trim() || `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, message);
  }
  return { status: response.status, body: json as T };
}

const seg = encodeURIComponent;
const jsonBody = <T>(value: T) => JSON.stringify(value);
const JSON_TYPE = "application/json";

export const api = {
  info: () => request<Info>("GET", "/info"),
  modules: () => request<Schemas["ModuleList"]>("GET", "/modules").then((r) => r.modules),
  module: (name: string) => request<Module>("GET", `/modules/${seg(name)}`),
  /** Status 201: a new version; 200: these exact bytes were already stored under that name. */
  upload: (name: string, bytes: Blob) => requestWithStatus<Uploaded>("POST", `/modules?name=${seg(name)}`, bytes, "application/wasm"),
  try: (name: string, version: number, records: string[], config: Record<string, string>) =>
    request<TryResponse>("POST", `/modules/${seg(name)}/versions/${version}/try`, jsonBody<TryRequest>({ records, config }), JSON_TYPE),
  pipelines: () => request<Schemas["PipelineList"]>("GET", "/pipelines").then((r) => r.pipelines),
  pipeline: (name: string) => request<Pipeline>("GET", `/pipelines/${seg(name)}`),
  /** Creates or replaces the pipeline `definition.name`. */
  putPipeline: (definition: PipelineDefinition) => request<Pipeline>("PUT", `/pipelines/${seg(definition.name)}`, jsonBody(definition), JSON_TYPE),
  deletePipeline: (name: string) => request<null>("DELETE", `/pipelines/${seg(name)}`),
  deploy: (pipeline: string, index: number, module: string, version: number, config?: Record<string, string>) =>
    request<Pipeline>(
      "PUT",
      `/pipelines/${seg(pipeline)}/transforms/${index}`,
      jsonBody<DeployRequest>(config ? { module, version, config } : { module, version }),
      JSON_TYPE,
    ),
  rollback: (pipeline: string, index: number) => request<Pipeline>("POST", `/pipelines/${seg(pipeline)}/transforms/${index}/rollback`),
  pause: (pipeline: string) => request<Pipeline>("POST", `/pipelines/${seg(pipeline)}/pause`),
  resume: (pipeline: string) => request<Pipeline>("POST", `/pipelines/${seg(pipeline)}/resume`),
  deadLetters: (pipeline: string, limit: number) => request<DeadLetters>("GET", `/pipelines/${seg(pipeline)}/dead-letters?limit=${limit}`),
  fleet: () => request<Fleet>("GET", "/fleet"),
  /** The event stream; EventSource sends no headers, so a read token goes in the query. */
  eventsUrl: () => {
    const token = getToken();
    return readAuthRequired && token ? `${BASE}/events?access_token=${seg(token)}` : `${BASE}/events`;
  },
};

/** The message to show for a failed call; a 401 says where the token goes. */
export function errorText(e: unknown): string {
  if (e instanceof ApiError) {
    if (e.status === 401 && !getToken()) return `${e.message} (enter the API token at the top right)`;
    return e.message;
  }
  return e instanceof Error ? e.message : String(e);
}
