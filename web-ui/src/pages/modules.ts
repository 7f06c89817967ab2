// Modules: upload a component (drag and drop or a file picker) and list every module's versions.
// The API's validation errors are shown exactly as it words them.

import { api, errorText, Module } from "../api";
import { formatBytes, h, notice, replace } from "../dom";
import { currentModules, info, modulesLoaded, onModules, refreshModules } from "../store";
import { Page } from "./page";

/** A module name from a file name: `tz_normaliser.wasm` → `tz_normaliser`. */
export function nameFromFile(file: string): string {
  return file.replace(/\.wasm$/i, "");
}

export function modulesPage(): Page {
  const fileInput = h("input", { type: "file", id: "module-file", accept: ".wasm,application/wasm", "data-testid": "file-input", class: "visually-hidden" });
  const nameInput = h("input", {
    type: "text",
    id: "module-name",
    "data-testid": "module-name",
    placeholder: "from the file name",
    autocomplete: "off",
    spellcheck: "false",
  });
  const result = h("div", { "data-testid": "upload-result", "aria-live": "polite" });
  const dropzone = h(
    "div",
    { class: "dropzone", "data-testid": "dropzone", tabindex: 0, role: "button", "aria-label": "Drop a .wasm component here, or press Enter to choose a file" },
    h("div", { class: "dropzone-title" }, "Drop a ", h("code", null, ".wasm"), " component here"),
    h("div", { class: "muted" }, "or ", h("label", { for: "module-file", class: "link" }, "choose a file"), info ? ` · at most ${formatBytes(info.max_module_bytes)}` : ""),
    fileInput,
  );
  const listEl = h("div", { "data-testid": "module-list" });
  const el = h(
    "div",
    { class: "page" },
    h("h1", null, "Modules"),
    h(
      "section",
      { class: "card", "data-testid": "upload" },
      h("h2", null, "Upload"),
      h(
        "div",
        { class: "field-row" },
        h("label", { for: "module-name" }, "Module name"),
        nameInput,
        h("span", { class: "muted small" }, "letters, digits, _ and -; a new upload under an existing name is its next version"),
      ),
      dropzone,
      result,
    ),
    h("section", { class: "card" }, h("h2", null, "Stored modules"), listEl),
  );

  let uploading = false;
  const upload = async (file: File) => {
    if (uploading) return;
    uploading = true;
    dropzone.classList.add("busy");
    const name = nameInput.value.trim() || nameFromFile(file.name);
    replace(result, notice("info", `Uploading ${file.name} (${formatBytes(file.size)}) as ${name}…`, "upload-progress"));
    try {
      const { status, body } = await api.upload(name, file);
      const what = status === 201 ? "Uploaded" : "Already stored:";
      replace(
        result,
        notice("ok", `${what} ${body.name} version ${body.version} (${formatBytes(body.size)}, sha256 ${body.sha256.slice(0, 12)}…)`, "upload-ok"),
      );
      result.dataset.module = body.name;
      result.dataset.version = String(body.version);
      nameInput.value = "";
      await refreshModules().catch(() => undefined);
    } catch (e) {
      replace(result, h("div", { class: "notice notice-error", role: "alert" }, h("div", { class: "small" }, `${file.name} was refused:`), h("pre", { class: "error-text", "data-testid": "upload-error" }, errorText(e))));
    } finally {
      uploading = false;
      dropzone.classList.remove("busy");
      fileInput.value = "";
    }
  };

  fileInput.addEventListener("change", () => {
    const file = fileInput.files?.[0];
    if (file) void upload(file);
  });
  dropzone.addEventListener("click", (e) => {
    if (e.target === dropzone || (e.target as HTMLElement).closest(".dropzone-title")) fileInput.click();
  });
  dropzone.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      fileInput.click();
    }
  });
  for (const type of ["dragenter", "dragover"]) {
    dropzone.addEventListener(type, (e) => {
      e.preventDefault();
      (e as DragEvent).dataTransfer!.dropEffect = "copy";
      dropzone.classList.add("over");
    });
  }
  dropzone.addEventListener("dragleave", () => dropzone.classList.remove("over"));
  dropzone.addEventListener("drop", (e) => {
    e.preventDefault();
    dropzone.classList.remove("over");
    const file = (e as DragEvent).dataTransfer?.files?.[0];
    if (file) void upload(file);
  });

  const render = (modules: Module[]) => {
    if (modules.length === 0) {
      replace(listEl, h("p", { class: "muted" }, "No modules yet: upload one above."));
      return;
    }
    replace(
      listEl,
      modules.map((m) =>
        h(
          "div",
          { class: "module", "data-testid": `module-${m.name}`, "data-module": m.name },
          h("h3", null, m.name, " ", h("span", { class: "muted small" }, `${m.versions.length} version${m.versions.length === 1 ? "" : "s"}`)),
          h(
            "table",
            { class: "versions" },
            h("thead", null, h("tr", null, h("th", null, "Version"), h("th", null, "SHA-256"), h("th", null, "Size"), h("th", null, "Uploaded"), h("th", null, "Exports"), h("th", null, ""))),
            h(
              "tbody",
              null,
              m.versions.map((v) =>
                h(
                  "tr",
                  { "data-testid": `module-${m.name}-v${v.version}` },
                  h("td", null, h("strong", null, `v${v.version}`)),
                  h("td", null, h("code", { class: "sha", title: v.sha256 }, v.sha256.slice(0, 16))),
                  h("td", null, formatBytes(v.size)),
                  h("td", null, h("time", { datetime: v.uploaded_at }, formatTime(v.uploaded_at))),
                  h("td", null, v.exports.map((x) => h("code", { class: "export" }, x))),
                  h("td", null, h("a", { href: `#/try?module=${encodeURIComponent(m.name)}&version=${v.version}` }, "Try")),
                ),
              ),
            ),
          ),
        ),
      ),
    );
  };

  const off = onModules(render);
  if (modulesLoaded()) render(currentModules());
  refreshModules().catch((e) => replace(listEl, notice("error", errorText(e), "modules-error")));

  return { el, destroy: off };
}

function formatTime(rfc3339: string): string {
  const d = new Date(rfc3339);
  return isNaN(d.getTime()) ? rfc3339 : d.toLocaleString();
}
