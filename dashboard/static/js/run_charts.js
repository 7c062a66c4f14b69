// Traces of the run page: loss curves (+ faint raw), alert markers, token share vs target,
// reweighting weights. Every trace carries meta {kind, channel} so tests and handlers can tell
// them apart.

import { combineChannels, ema, plottable } from "./series.js";
import { escapeText } from "./plot.js";

const ALERT_COLORS = { firing: "#d62728", pending: "#ff7f0e", resolved: "#7f7f7f" };

/** Loss traces: one per curve; with smoothing, the raw curve is drawn faintly under it. */
export function lossTraces({ curves, lookup, metric, smoothing, colors, highlight }) {
  const traces = [];
  for (const curve of curves) {
    const s = combineChannels(metric, curve.channels, lookup);
    const color = colors.get(curve.name);
    const name = escapeText(curve.folded ? `${curve.name}/*` : curve.name);
    const width = highlight === curve.name ? 3.5 : 1.6;
    if (smoothing > 0) {
      traces.push({
        type: "scatter",
        mode: "lines",
        x: s.steps,
        y: plottable(s.values),
        name,
        legendgroup: curve.name,
        showlegend: false,
        hoverinfo: "skip",
        opacity: 0.25,
        line: { color, width: 1 },
        meta: { kind: "raw", channel: curve.name },
      });
    }
    traces.push({
      type: "scatter",
      mode: "lines",
      x: s.steps,
      y: plottable(ema(s.values, smoothing)),
      name,
      legendgroup: curve.name,
      line: { color, width },
      meta: { kind: "loss", channel: curve.name },
    });
  }
  return traces;
}

/** The curve that shows `channel` (itself, or the folded parent that holds it). */
function curveOf(curves, channel) {
  return curves.find((c) => c.channels.includes(channel)) || null;
}

/**
 * Where to mark an alert that began at `step`: [step, y] with y the curve's value there, or the
 * nearest finite value before it (a NaN loss has no height of its own), else after it.
 */
function markAt(series, step) {
  let before = null;
  for (let i = 0; i < series.steps.length; i++) {
    if (!Number.isFinite(series.values[i])) continue;
    if (series.steps[i] === step) return [step, series.values[i]];
    if (series.steps[i] < step) before = series.values[i];
    else return [step, before ?? series.values[i]];
  }
  return before === null ? null : [step, before];
}

/**
 * Alert overlay: a marker on the curve at each alert's start step (channel alerts), and a
 * vertical line at the start step for every alert (run-level ones included).
 */
export function alertOverlay({ alerts, curves, lookup, metric }) {
  const x = [];
  const y = [];
  const text = [];
  const color = [];
  const shapes = [];
  for (const alert of alerts) {
    const stateColor = ALERT_COLORS[alert.state] || "#7f7f7f";
    shapes.push({
      type: "line",
      xref: "x",
      yref: "paper",
      x0: alert.start_step,
      x1: alert.start_step,
      y0: 0,
      y1: 1,
      line: { color: stateColor, width: 1, dash: "dot" },
    });
    const curve = alert.channel === null ? null : curveOf(curves, alert.channel);
    if (!curve) continue;
    const point = markAt(combineChannels(metric, curve.channels, lookup), alert.start_step);
    if (!point) continue;
    x.push(point[0]);
    y.push(point[1]);
    color.push(stateColor);
    text.push(escapeText(`${alert.state} ${alert.rule} on ${alert.channel} at step ${alert.start_step}: ${alert.summary ?? ""}`));
  }
  const trace = {
    type: "scatter",
    mode: "markers",
    x,
    y,
    text,
    hoverinfo: "text",
    name: "alerts",
    marker: { symbol: "x-thin-open", size: 14, line: { width: 3 }, color },
    meta: { kind: "alert" },
  };
  return { traces: x.length > 0 ? [trace] : [], shapes };
}

/** Token share per curve (solid) against its target share (dotted, when one is set). */
export function shareTraces({ curves, lookup, colors, targets }) {
  const traces = [];
  for (const curve of curves) {
    const s = combineChannels("token_share", curve.channels, lookup);
    const color = colors.get(curve.name);
    const name = escapeText(curve.folded ? `${curve.name}/*` : curve.name);
    traces.push({
      type: "scatter",
      mode: "lines",
      x: s.steps,
      y: plottable(s.values),
      name,
      legendgroup: curve.name,
      line: { color, width: 1.4 },
      meta: { kind: "share", channel: curve.name },
    });
    const own = curve.channels.map((c) => targets.get(c)).filter((t) => t !== null && t !== undefined);
    if (own.length > 0 && s.steps.length > 0) {
      const target = own.reduce((a, b) => a + b, 0);
      traces.push({
        type: "scatter",
        mode: "lines",
        x: [s.steps[0], s.steps[s.steps.length - 1]],
        y: [target, target],
        name: `${name} target`,
        legendgroup: curve.name,
        showlegend: false,
        hoverinfo: "name+y",
        line: { color, width: 1, dash: "dot" },
        meta: { kind: "target", channel: curve.name },
      });
    }
  }
  return traces;
}

/** Reweighting weight per curve over time. */
export function weightTraces({ curves, lookup, colors }) {
  return curves.map((curve) => {
    const s = combineChannels("weight", curve.channels, lookup);
    return {
      type: "scatter",
      mode: "lines",
      x: s.steps,
      y: plottable(s.values),
      name: escapeText(curve.folded ? `${curve.name}/*` : curve.name),
      legendgroup: curve.name,
      line: { color: colors.get(curve.name), width: 1.4 },
      meta: { kind: "weight", channel: curve.name },
    };
  });
}
