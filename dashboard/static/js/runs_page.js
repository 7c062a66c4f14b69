// Runs page (#/runs): status, last step, last values and firing-alert badges per channel;
// search and filter by project, tag and status.

import { api, ApiError } from "./api.js";
import { formatTime, formatValue, h, replaceChildren } from "./dom.js";

export async function mountRunsPage(container, { params, poller, showError }) {
  const filters = {
    q: params.get("q") ?? "",
    project: params.get("project") ?? "",
    tag: params.get("tag") ?? "",
    status: params.get("status") ?? "",
  };
  const projectSelect = h("select", { id: "filter-project", "aria-label": "project" });
  const tagSelect = h("select", { id: "filter-tag", "aria-label": "tag" });
  const statusSelect = h("select", { id: "filter-status", "aria-label": "status" });
  const search = h("input", { id: "filter-q", type: "search", placeholder: "search name or key", value: filters.q });
  const count = h("span", { className: "muted", id: "runs-count" });
  const tbody = h("tbody", { id: "runs-body" });
  replaceChildren(
    container,
    h(
      "section",
      { className: "runs-page" },
      h("div", { className: "filters" }, search, projectSelect, tagSelect, statusSelect, count),
      h(
        "table",
        { className: "runs-table" },
        h("thead", {}, h("tr", {}, ["run", "project", "tags", "status", "last step", "updated", "last values", "firing alerts"].map((t) => h("th", { text: t })))),
        tbody,
      ),
    ),
  );

  let allRuns = [];
  let alertsAvailable = true;

  function fillOptions(select, values, current, anyLabel) {
    const options = [h("option", { value: "", text: anyLabel }), ...[...values].sort().map((v) => h("option", { value: v, text: v }))];
    replaceChildren(select, options);
    select.value = values.has(current) ? current : "";
  }

  function syncHash() {
    const query = new URLSearchParams();
    for (const [k, v] of Object.entries(filters)) if (v) query.set(k, v);
    const text = query.toString();
    history.replaceState(null, "", `#/runs${text ? `?${text}` : ""}`);
  }

  async function firingAlerts() {
    if (!alertsAvailable) return [];
    try {
      return (await api.alerts({ state: "firing" })).data;
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        alertsAvailable = false;
        return [];
      }
      throw err;
    }
  }

  function lastValues(latest) {
    const chips = [];
    const runLoss = latest.run?.lm_loss;
    if (runLoss) chips.push(h("span", { className: "value-chip", text: `lm_loss ${formatValue(Number(runLoss.value))}` }));
    for (const [channel, metrics] of Object.entries(latest.channels ?? {})) {
      if (metrics.loss) chips.push(h("span", { className: "value-chip", dataset: { channel }, text: `${channel} ${formatValue(Number(metrics.loss.value))}` }));
    }
    return chips;
  }

  function badges(runAlerts) {
    const perChannel = new Map();
    for (const alert of runAlerts) {
      const key = alert.channel ?? "(run)";
      perChannel.set(key, (perChannel.get(key) ?? 0) + 1);
    }
    return [...perChannel.entries()].map(([channel, n]) =>
      h("span", { className: "badge badge-firing", dataset: { channel }, title: `${n} firing`, text: n > 1 ? `${channel} ×${n}` : channel }),
    );
  }

  async function load() {
    allRuns = (await api.listRuns()).data;
    const projects = new Set(allRuns.map((r) => r.project).filter(Boolean));
    const tags = new Set(allRuns.flatMap((r) => r.tags || []));
    fillOptions(projectSelect, projects, filters.project, "any project");
    fillOptions(tagSelect, tags, filters.tag, "any tag");
    fillOptions(statusSelect, new Set(allRuns.map((r) => r.status)), filters.status, "any status");
    const query = {};
    for (const [k, v] of Object.entries(filters)) if (v) query[k] = v;
    const [listed, alerts] = await Promise.all([api.listRuns(query), firingAlerts()]);
    const latest = await Promise.all(listed.data.map((run) => api.latest(run.id)));
    count.textContent = `${listed.count} run${listed.count === 1 ? "" : "s"}`;
    const rows = listed.data.map((run, i) =>
      h(
        "tr",
        { dataset: { runId: String(run.id) } },
        h("td", {}, h("a", { href: `#/runs/${run.id}`, text: run.name || run.key }), h("div", { className: "muted small", text: run.key })),
        h("td", { text: run.project ?? "–" }),
        h("td", {}, (run.tags || []).map((t) => h("span", { className: "chip", text: t }))),
        h("td", {}, h("span", { className: `status status-${run.status}`, text: run.status })),
        h("td", { text: formatValue(run.last_step) }),
        h("td", { text: formatTime(run.last_step_at ?? run.updated_at) }),
        h("td", { className: "values" }, lastValues(latest[i])),
        h("td", { className: "badges" }, badges(alerts.filter((a) => a.run_id === run.id))),
      ),
    );
    replaceChildren(tbody, rows.length ? rows : h("tr", {}, h("td", { colspan: "8", className: "muted", text: "No runs match." })));
  }

  const onFilter = (key, value) => {
    filters[key] = value;
    syncHash();
    load().catch(showError);
  };
  projectSelect.addEventListener("change", () => onFilter("project", projectSelect.value));
  tagSelect.addEventListener("change", () => onFilter("tag", tagSelect.value));
  statusSelect.addEventListener("change", () => onFilter("status", statusSelect.value));
  let typing = null;
  search.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => onFilter("q", search.value.trim()), 250);
  });

  await load();
  poller.start(load);
  return { unmount() {} };
}
