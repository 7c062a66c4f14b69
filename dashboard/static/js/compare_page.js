// Compare page (#/compare?runs=1,2): several runs side by side, one chart per channel with one
// trace per run.

import { api } from "./api.js";
import { h, replaceChildren } from "./dom.js";
import { colorAt } from "./channels.js";
import { SeriesStore, ema, plottable, withDetail } from "./series.js";
import { baseLayout, draw, escapeText, plotlyReady, relayoutXRange } from "./plot.js";
import { maxPoints } from "./settings.js";

const METRICS = [
  ["loss", "loss (token-weighted)"],
  ["loss_sample_mean", "loss (sample mean)"],
  ["token_share", "token share"],
  ["weight", "weight"],
];

/** Run ids from "1,2,3" (invalid entries dropped, order kept, no duplicates). */
export function parseRunIds(text) {
  const ids = [];
  for (const part of (text || "").split(",")) {
    const id = Number(part.trim());
    if (part.trim() !== "" && Number.isInteger(id) && id > 0 && !ids.includes(id)) ids.push(id);
  }
  return ids;
}

export async function mountComparePage(container, { params, poller, showError }) {
  const state = {
    ids: parseRunIds(params.get("runs")),
    metric: "loss",
    smoothing: 0,
    logY: false,
    xRange: null, // shared by every chart: zooming one zooms all
    runs: new Map(),
    stores: new Map(), // run id -> overview SeriesStore
    details: new Map(), // run id -> {start, end, store}: the zoomed window at full detail
  };
  const listening = new WeakSet();
  const picker = h("div", { className: "run-picker", id: "run-picker" });
  const grid = h("div", { className: "compare-grid", id: "compare-grid" });
  const smoothingValue = h("output", { text: "0.00" });
  const controls = h(
    "div",
    { className: "controls compare-controls" },
    h(
      "select",
      { id: "compare-metric", "aria-label": "metric", onChange: (e) => { state.metric = e.target.value; reloadAll().catch(showError); } },
      METRICS.map(([value, label]) => h("option", { value, text: label })),
    ),
    h(
      "label",
      { className: "slider" },
      "Smoothing ",
      h("input", {
        id: "compare-smoothing",
        type: "range", min: "0", max: "0.99", step: "0.01", value: "0",
        onInput: (e) => { state.smoothing = Number(e.target.value); smoothingValue.textContent = state.smoothing.toFixed(2); render(); },
      }),
      smoothingValue,
    ),
    h("label", {}, h("input", { id: "compare-log-y", type: "checkbox", onChange: (e) => { state.logY = e.target.checked; render(); } }), "log y"),
  );
  replaceChildren(container, h("section", { className: "compare-page" }, h("h1", { text: "Compare runs" }), picker, controls, grid));

  const label = (id) => {
    const run = state.runs.get(id);
    return run ? `${run.name || run.key} #${id}` : `#${id}`;
  };

  function renderPicker(allRuns) {
    const boxes = allRuns.map((run) =>
      h(
        "label",
        { className: "pick" },
        h("input", {
          type: "checkbox",
          value: String(run.id),
          checked: state.ids.includes(run.id),
          onChange: (e) => {
            state.ids = e.target.checked ? [...state.ids, run.id] : state.ids.filter((i) => i !== run.id);
            history.replaceState(null, "", `#/compare?runs=${state.ids.join(",")}`);
            reloadAll().catch(showError);
          },
        }),
        `${run.name || run.key} #${run.id}`,
      ),
    );
    replaceChildren(picker, h("strong", { text: "Runs: " }), boxes);
  }

  async function loadRun(id) {
    const run = await api.getRun(id);
    state.runs.set(id, run);
    const body = await api.series(id, { metrics: [state.metric], maxPoints: maxPoints() });
    const store = new SeriesStore();
    store.replace(body);
    state.stores.set(id, store);
  }

  /** Fetch the zoomed window at full detail for the runs whose overview is downsampled. */
  async function loadDetails() {
    state.details.clear();
    if (!state.xRange) return;
    const start = Math.max(0, Math.floor(state.xRange[0]));
    const end = Math.ceil(state.xRange[1]);
    await Promise.all(
      state.ids
        .filter((id) => state.stores.get(id)?.downsampled)
        .map(async (id) => {
          const body = await api.series(id, { metrics: [state.metric], startStep: start, endStep: end, maxPoints: maxPoints() });
          const store = new SeriesStore();
          store.replace(body);
          state.details.set(id, { start, end, store });
        }),
    );
  }

  function lookup(id, channel) {
    const overview = state.stores.get(id)?.get(state.metric, channel) ?? { steps: [], values: [] };
    const detail = state.details.get(id);
    if (!detail) return overview;
    return withDetail(overview, detail.store.get(state.metric, channel), detail.start, detail.end);
  }

  let zoomSeq = 0;
  async function setRange(range) {
    state.xRange = range;
    const seq = ++zoomSeq;
    render();
    await loadDetails();
    if (seq === zoomSeq) render();
  }

  async function reloadAll() {
    await Promise.all(state.ids.map(loadRun));
    await loadDetails();
    await plotlyReady;
    render();
  }

  async function refresh() {
    await Promise.all(
      state.ids.map(async (id) => {
        const store = state.stores.get(id);
        if (!store || store.lastStep === null) return loadRun(id);
        const body = await api.series(id, { metrics: [state.metric], afterStep: store.lastStep, maxPoints: maxPoints() });
        if (body.series.some((s) => s.downsampled)) return loadRun(id);
        store.merge(body);
        state.details.get(id)?.store.merge(body);
        return undefined;
      }),
    );
    await plotlyReady;
    render();
  }

  function render() {
    const channels = [];
    for (const id of state.ids) {
      for (const c of state.runs.get(id)?.channels ?? []) if (!channels.includes(c.name)) channels.push(c.name);
    }
    const existing = new Map([...grid.children].map((node) => [node.dataset.channel, node]));
    const cells = channels.map((channel) => {
      let cell = existing.get(channel);
      if (!cell) {
        cell = h("div", { className: "compare-cell", dataset: { channel } }, h("h3", { text: channel }), h("div", { className: "chart" }));
      }
      return cell;
    });
    for (const [channel, node] of existing) if (!channels.includes(channel)) window.Plotly?.purge(node.lastChild);
    replaceChildren(grid, cells.length ? cells : h("p", { className: "muted", text: "Pick two or more runs to compare." }));
    const yTitle = METRICS.find(([m]) => m === state.metric)[1];
    cells.forEach((cell, ci) => {
      const channel = channels[ci];
      const traces = state.ids.map((id, i) => {
        const s = lookup(id, channel);
        return {
          type: "scatter",
          mode: "lines",
          x: s.steps,
          y: plottable(ema(s.values, state.smoothing)),
          name: escapeText(label(id)),
          line: { color: colorAt(i), width: 1.5 },
          meta: { kind: "compare", run: id, channel },
        };
      });
      const chart = cell.lastChild;
      draw(chart, traces, baseLayout({ yTitle, logY: state.logY, xRange: state.xRange, height: 300 }));
      if (!listening.has(chart)) {
        listening.add(chart);
        chart.on("plotly_relayout", (event) => {
          const range = relayoutXRange(event);
          if (range !== undefined) setRange(range).catch(showError);
        });
      }
    });
  }

  renderPicker((await api.listRuns()).data);
  await reloadAll();
  poller.start(refresh);
  return {
    unmount() {
      for (const node of grid.querySelectorAll(".chart")) window.Plotly?.purge(node);
    },
  };
}
