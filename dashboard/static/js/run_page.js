// Run page (#/runs/{id}?channel=&step=): loss curves, token share vs target, weights, alerts,
// metadata. Polls with after_step; zooming fetches the window at full detail.

import { api, ApiError } from "./api.js";
import { h, replaceChildren } from "./dom.js";
import { buildTree, colorAt, visibleCurves } from "./channels.js";
import { SeriesStore, withDetail } from "./series.js";
import { baseLayout, draw, plotlyReady, relayoutXRange } from "./plot.js";
import { alertOverlay, lossTraces, shareTraces, weightTraces } from "./run_charts.js";
import { alertsPanel, channelTree, lossControls, metadataPanel, runHeader } from "./run_panels.js";
import { maxPoints } from "./settings.js";

const METRICS = ["loss", "loss_sample_mean", "tokens", "samples", "token_share", "weight"];

export async function mountRunPage(container, { runId, params, poller, showError }) {
  const state = {
    run: null,
    alerts: [],
    alertsAvailable: true,
    overview: new SeriesStore(),
    detail: null, // {start, end, store}
    appendedSinceOverview: 0,
    lossMetric: "loss",
    smoothing: 0,
    logY: false,
    folded: new Set(),
    hidden: new Set(),
    xRange: null,
    highlight: params.get("channel"),
  };

  const header = h("div");
  const sidebar = h("aside", { className: "sidebar" });
  const lossChart = h("div", { id: "loss-chart", className: "chart" });
  const shareChart = h("div", { id: "share-chart", className: "chart" });
  const weightChart = h("div", { id: "weight-chart", className: "chart" });
  const weightNote = h("p", { className: "muted", id: "weight-note", hidden: true, text: "No reweighting weights logged in this run." });
  const alertsBox = h("div", { id: "alerts-box" });
  const metaBox = h("div", { id: "meta-box" });
  replaceChildren(
    container,
    h(
      "section",
      { className: "run-page" },
      header,
      h(
        "div",
        { className: "run-layout" },
        sidebar,
        h(
          "div",
          { className: "run-main" },
          h("h2", { text: "Channel loss" }),
          lossChart,
          h(
            "div",
            { className: "chart-pair" },
            h("div", {}, h("h2", { text: "Token share vs target" }), shareChart),
            h("div", {}, h("h2", { text: "Reweighting weights" }), weightNote, weightChart),
          ),
          alertsBox,
          metaBox,
        ),
      ),
    ),
  );

  const lookup = (metric, channel) => {
    const overview = state.overview.get(metric, channel);
    if (!state.detail) return overview;
    return withDetail(overview, state.detail.store.get(metric, channel), state.detail.start, state.detail.end);
  };

  const colors = () => {
    const map = new Map();
    state.run.channels.forEach((c, i) => map.set(c.name, colorAt(i)));
    // a parent takes the colour of its first channel
    for (const c of state.run.channels) {
      const parts = c.name.split("/");
      for (let i = 1; i < parts.length; i++) {
        const parent = parts.slice(0, i).join("/");
        if (!map.has(parent)) map.set(parent, map.get(c.name));
      }
    }
    return map;
  };

  let sidebarChannels = null;
  function renderSidebar() {
    sidebarChannels = state.run.channels.map((c) => c.name).join("\n");
    const tree = buildTree(state.run.channels.map((c) => c.name));
    replaceChildren(
      sidebar,
      lossControls(state, (patch) => {
        Object.assign(state, patch);
        renderCharts();
      }),
      channelTree(tree, state, colors(), (what, path) => {
        const set = what === "fold" ? state.folded : state.hidden;
        if (set.has(path)) set.delete(path);
        else set.add(path);
        renderSidebar();
        renderCharts();
      }),
    );
  }

  function renderInfo() {
    replaceChildren(header, runHeader(state.run));
    if (sidebarChannels !== state.run.channels.map((c) => c.name).join("\n")) renderSidebar();
    replaceChildren(alertsBox, alertsPanel(state.alerts, state.alertsAvailable, jumpTo));
    const shares = new Map();
    for (const c of state.run.channels) {
      const s = state.overview.get("token_share", c.name);
      if (s && s.values.length > 0) shares.set(c.name, s.values[s.values.length - 1]);
    }
    replaceChildren(metaBox, metadataPanel(state.run, shares));
  }

  /** What every chart draws from: the visible curves, their colours, the highlighted one. */
  function chartInputs() {
    const tree = buildTree(state.run.channels.map((c) => c.name));
    const curves = visibleCurves(tree, state.folded, state.hidden);
    const palette = colors();
    const highlight = state.highlight && curves.find((c) => c.channels.includes(state.highlight))?.name;
    return { curves, palette, highlight };
  }

  /** Draw the loss chart (curves and alert overlay); resolves once Plotly has drawn it. */
  function renderLossChart({ curves, palette, highlight }) {
    const loss = lossTraces({ curves, lookup, metric: state.lossMetric, smoothing: state.smoothing, colors: palette, highlight });
    const overlay = alertOverlay({ alerts: state.alerts, curves, lookup, metric: state.lossMetric });
    const lossLayout = baseLayout({ yTitle: state.lossMetric === "loss" ? "loss (token-weighted)" : "loss (sample mean)", logY: state.logY, xRange: state.xRange, height: 420 });
    lossLayout.shapes = overlay.shapes;
    return drawSynced(lossChart, [...loss, ...overlay.traces], lossLayout);
  }

  /** Draw the token share and weight charts. */
  function renderSideCharts({ curves, palette }) {
    const targets = new Map(state.run.channels.map((c) => [c.name, c.target_share]));
    drawSynced(shareChart, shareTraces({ curves, lookup, colors: palette, targets }), baseLayout({ yTitle: "token share", xRange: state.xRange, height: 300 }));
    const weights = weightTraces({ curves, lookup, colors: palette });
    const hasWeights = weights.some((t) => t.x.length > 0);
    weightNote.hidden = hasWeights;
    weightChart.hidden = !hasWeights;
    if (hasWeights) drawSynced(weightChart, weights, baseLayout({ yTitle: "weight", xRange: state.xRange, height: 300 }));
  }

  function renderCharts() {
    const inputs = chartInputs();
    renderLossChart(inputs);
    renderSideCharts(inputs);
  }

  // The charts share one x range: zooming any of them zooms all and fetches detail.
  const listening = new WeakSet();
  function drawSynced(node, traces, layout) {
    const drawn = draw(node, traces, layout);
    if (!listening.has(node)) {
      listening.add(node);
      node.on("plotly_relayout", (event) => {
        const range = relayoutXRange(event);
        if (range !== undefined) setRange(range);
      });
    }
    return drawn;
  }

  async function loadOverview() {
    const body = await api.series(runId, { metrics: METRICS, maxPoints: maxPoints() });
    state.overview.replace(body);
    state.appendedSinceOverview = 0;
  }

  async function loadDetail() {
    if (!state.xRange || !state.overview.downsampled) {
      state.detail = null;
      return;
    }
    const start = Math.max(0, Math.floor(state.xRange[0]));
    const end = Math.ceil(state.xRange[1]);
    const body = await api.series(state.run.id, { metrics: METRICS, startStep: start, endStep: end, maxPoints: maxPoints() });
    const store = new SeriesStore();
    store.replace(body);
    state.detail = { start, end, store };
  }

  async function loadAlerts() {
    if (!state.alertsAvailable) return;
    try {
      const body = await api.alerts({ run_id: runId });
      state.alerts = body.data.slice().sort((a, b) => a.start_step - b.start_step);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) state.alertsAvailable = false;
      else throw err;
    }
  }

  function jumpTo(alert) {
    const span = Math.max(20, Math.round((state.overview.lastStep ?? 0) * 0.05));
    setRange([Math.max(0, alert.start_step - span), alert.start_step + span]);
    state.highlight = alert.channel;
    const query = new URLSearchParams();
    if (alert.channel !== null) query.set("channel", alert.channel);
    query.set("step", String(alert.start_step));
    history.replaceState(null, "", `#/runs/${state.run.id}?${query}`);
    renderCharts();
    lossChart.scrollIntoView({ block: "nearest" });
  }

  let zoomSeq = 0;
  async function setRange(range) {
    state.xRange = range;
    const seq = ++zoomSeq;
    renderCharts();
    try {
      await loadDetail();
      if (seq === zoomSeq) renderCharts();
    } catch (err) {
      showError(err);
    }
  }

  /** Apply an after_step poll: append, or downsample again when the new points are many. */
  async function applyNewPoints(body) {
    if (body.series.some((s) => s.downsampled)) return loadOverview();
    state.overview.merge(body);
    if (state.detail) state.detail.store.merge(body);
    state.appendedSinceOverview += body.series.reduce((n, s) => n + s.steps.length, 0);
    // raw points appended to a downsampled overview pile up: downsample again
    if (state.overview.downsampled && state.appendedSinceOverview > maxPoints() * METRICS.length) {
      return loadOverview();
    }
    return undefined;
  }

  async function refresh() {
    const before = state.overview.lastStep;
    const newPoints =
      before === null
        ? loadOverview()
        : api.series(runId, { metrics: METRICS, afterStep: before, maxPoints: maxPoints() }).then(applyNewPoints);
    const [run] = await Promise.all([api.getRun(runId), newPoints, loadAlerts()]);
    state.run = run;
    // the run may have been read before the newest points: show the newest step either told
    state.run.last_step = Math.max(run.last_step ?? -1, state.overview.lastStep ?? -1);
    renderInfo();
    renderCharts();
  }

  // all first requests at once; plotly.js compiles meanwhile
  [state.run] = await Promise.all([api.getRun(runId), loadOverview(), loadAlerts()]);
  performance.mark("lossradar:run-data-ready");
  await plotlyReady;
  renderInfo();
  // the loss chart first (what an alert link is opened for); the share and weight charts once
  // the browser has painted it
  const inputs = chartInputs();
  await renderLossChart(inputs);
  performance.mark("lossradar:run-page-drawn"); // read by benchmarks/dashboard_load.py
  await afterPaint();
  renderSideCharts(inputs);
  const step = params.get("step");
  if (step !== null && Number.isFinite(Number(step))) {
    jumpTo({ start_step: Number(step), channel: params.get("channel") });
  }
  poller.start(refresh);
  return {
    unmount() {
      for (const chart of [lossChart, shareChart, weightChart]) window.Plotly?.purge(chart);
    },
  };
}

/**
 * Resolves after the browser has painted what is drawn so far: the task after the next animation
 * frame, or after 100 ms in a hidden tab, which runs no animation frames.
 */
function afterPaint() {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, 100);
    requestAnimationFrame(() =>
      setTimeout(() => {
        clearTimeout(timer);
        resolve();
      }, 0),
    );
  });
}
