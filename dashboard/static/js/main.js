// Entry point: hash router (#/runs, #/runs/{id}?channel=&step=, #/compare?runs=1,2), the read
// token form, the refresh selector and the error banner.

import { ApiError, getToken, setToken } from "./api.js";
import { h, replaceChildren } from "./dom.js";
import { Poller } from "./poller.js";
import { mountComparePage } from "./compare_page.js";
import { mountRunPage } from "./run_page.js";
import { mountRunsPage } from "./runs_page.js";
import { pollMs, setPollMs } from "./settings.js";

const page = document.getElementById("page");
const banner = document.getElementById("banner");

function showError(err) {
  const message = err instanceof Error ? err.message : String(err);
  const hint =
    err instanceof ApiError && (err.status === 401 || err.status === 403)
      ? " Enter a read token (top right) and save it."
      : "";
  replaceChildren(banner, h("span", { text: `${message}.${hint}` }));
  banner.hidden = false;
}

function clearError() {
  banner.hidden = true;
  replaceChildren(banner);
}

const poller = new Poller(showError);
let current = null;
let routeSeq = 0;

/** Parse location.hash into {name, runId, params}. */
export function parseRoute(hash) {
  const text = hash.replace(/^#/, "") || "/runs";
  const [path, query = ""] = text.split("?");
  const params = new URLSearchParams(query);
  const parts = path.split("/").filter(Boolean);
  if (parts[0] === "runs" && parts.length === 2) return { name: "run", runId: Number(parts[1]), params };
  if (parts[0] === "compare") return { name: "compare", params };
  return { name: "runs", params };
}

async function route() {
  const seq = ++routeSeq;
  poller.stop();
  if (current) current.unmount();
  current = null;
  clearError();
  const { name, runId, params } = parseRoute(location.hash);
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", link.dataset.route === (name === "run" ? "runs" : name));
  }
  replaceChildren(page, h("p", { className: "muted", text: "Loading…" }));
  const context = { params, poller, showError, runId };
  try {
    let mounted;
    if (name === "run") {
      if (!Number.isInteger(runId) || runId <= 0) throw new Error(`"${location.hash}" has no valid run id`);
      mounted = await mountRunPage(page, context);
    } else if (name === "compare") mounted = await mountComparePage(page, context);
    else mounted = await mountRunsPage(page, context);
    if (seq === routeSeq) current = mounted;
    else mounted.unmount();
    document.body.dataset.ready = name;
  } catch (err) {
    if (seq === routeSeq) {
      replaceChildren(page);
      showError(err);
    }
  }
}

function setupTools() {
  const select = document.getElementById("refresh-interval");
  const interval = String(pollMs());
  if (![...select.options].some((o) => o.value === interval)) {
    select.append(h("option", { value: interval, text: `${interval} ms` }));
  }
  select.value = interval;
  select.addEventListener("change", () => {
    setPollMs(Number(select.value));
    poller.reschedule();
  });
  const form = document.getElementById("token-form");
  const input = document.getElementById("token-input");
  input.placeholder = getToken() ? "read token (saved)" : "read token";
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    setToken(input.value.trim());
    input.value = "";
    input.placeholder = getToken() ? "read token (saved)" : "read token";
    route();
  });
}

setupTools();
window.addEventListener("hashchange", () => {
  delete document.body.dataset.ready;
  route();
});
route();
