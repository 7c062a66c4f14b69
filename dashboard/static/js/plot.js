// Plotly helpers. Plotly renders trace names, titles and hover text as a small HTML subset;
// every API string goes through `escapeText` first so it is shown, never interpreted.

/** Escape &, <, > and the %{...} template opener for Plotly text. */
export function escapeText(text) {
  return String(text)
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/%\{/g, "%&#123;");
}

/**
 * Resolves once plotly.js (served from the installed plotly package) has run. index.html loads
 * it as an async script, streamed and compiled off the main thread while the modules load;
 * without that tag (a page of our own that lacks it) it is added here.
 */
export const plotlyReady = new Promise((resolve, reject) => {
  const ready = () => {
    performance.mark("lossradar:plotly-ready");
    resolve(window.Plotly);
  };
  if (window.Plotly) {
    ready();
    return;
  }
  let script = document.getElementById("plotly-js");
  if (!script) {
    script = document.createElement("script");
    script.id = "plotly-js";
    script.src = "/static/vendor/plotly.min.js";
    document.head.appendChild(script);
  }
  script.addEventListener("load", ready);
  script.addEventListener("error", () => reject(new Error("could not load /static/vendor/plotly.min.js")));
});

export const PLOT_CONFIG = { responsive: true, displaylogo: false, scrollZoom: false };

/**
 * Layout with a constant uirevision (zoom and legend clicks survive refreshes); `xRange`
 * (null = autorange) keeps the charts of a page on the same steps.
 */
export function baseLayout({ yTitle, logY = false, xRange = null, height = 380 }) {
  return {
    uirevision: "lossradar",
    height,
    margin: { l: 60, r: 20, t: 30, b: 45 },
    xaxis: xRange
      ? { title: { text: "step" }, range: xRange.slice(), autorange: false }
      : { title: { text: "step" }, autorange: true },
    yaxis: {
      title: { text: escapeText(yTitle) },
      type: logY ? "log" : "linear",
      uirevision: logY ? "log" : "linear",
      autorange: true,
    },
    legend: { orientation: "h", x: 0, y: 1.0, yanchor: "bottom" },
    hovermode: "closest",
    showlegend: true,
  };
}

/** Draw (or update in place) a chart. */
export function draw(node, traces, layout) {
  return window.Plotly.react(node, traces, layout, PLOT_CONFIG);
}

/** The x range of a plotly_relayout event: [start, end], null (autorange), or undefined. */
export function relayoutXRange(event) {
  if (event["xaxis.autorange"]) return null;
  if (Array.isArray(event["xaxis.range"])) return event["xaxis.range"].map(Number);
  if (event["xaxis.range[0]"] !== undefined && event["xaxis.range[1]"] !== undefined) {
    return [Number(event["xaxis.range[0]"]), Number(event["xaxis.range[1]"])];
  }
  return undefined;
}
