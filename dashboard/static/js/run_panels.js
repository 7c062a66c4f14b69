// Run page panels built from DOM nodes: header, controls, channel tree, alerts, metadata.

import { formatTime, formatValue, h } from "./dom.js";

export function runHeader(run) {
  return h(
    "div",
    { className: "run-header" },
    h("h1", { text: run.name || run.key }),
    h("span", { className: `status status-${run.status}`, text: run.status }),
    h("span", { className: "muted", text: `#${run.id}` }),
    run.project ? h("span", { className: "chip", text: `project: ${run.project}` }) : null,
    (run.tags || []).map((tag) => h("span", { className: "chip", text: tag })),
    h("span", { className: "muted", dataset: { testid: "last-step" }, text: `last step ${formatValue(run.last_step)}` }),
  );
}

/** Loss mode, smoothing and log-y controls; `onChange(patch)` is called with the new values. */
export function lossControls(state, onChange) {
  const modes = [
    ["loss", "token-weighted"],
    ["loss_sample_mean", "sample mean"],
  ];
  const smoothingValue = h("output", { id: "smoothing-value", text: state.smoothing.toFixed(2) });
  return h(
    "div",
    { className: "controls" },
    h(
      "fieldset",
      {},
      h("legend", { text: "Loss" }),
      modes.map(([value, label]) =>
        h(
          "label",
          {},
          h("input", {
            type: "radio",
            name: "loss-mode",
            value,
            checked: state.lossMetric === value,
            onChange: () => onChange({ lossMetric: value }),
          }),
          label,
        ),
      ),
    ),
    h(
      "label",
      { className: "slider" },
      "Smoothing ",
      h("input", {
        id: "smoothing",
        type: "range",
        min: "0",
        max: "0.99",
        step: "0.01",
        value: String(state.smoothing),
        onInput: (event) => {
          smoothingValue.textContent = Number(event.target.value).toFixed(2);
          onChange({ smoothing: Number(event.target.value) });
        },
      }),
      smoothingValue,
    ),
    h(
      "label",
      {},
      h("input", {
        id: "log-y",
        type: "checkbox",
        checked: state.logY,
        onChange: (event) => onChange({ logY: event.target.checked }),
      }),
      "log y",
    ),
  );
}

/** Channel tree with show/hide checkboxes and fold toggles on parents. */
export function channelTree(root, state, colors, onToggle) {
  const item = (node) => {
    const isParent = node.children.length > 0;
    const folded = state.folded.has(node.path);
    const row = h(
      "div",
      { className: "tree-row", dataset: { path: node.path } },
      isParent
        ? h("button", {
            className: "fold",
            type: "button",
            title: folded ? "unfold" : "fold into parent",
            "aria-expanded": String(!folded),
            text: folded ? "▸" : "▾",
            onClick: () => onToggle("fold", node.path),
          })
        : h("span", { className: "fold-spacer" }),
      h(
        "label",
        {},
        h("input", {
          type: "checkbox",
          checked: !state.hidden.has(node.path),
          onChange: () => onToggle("hide", node.path),
        }),
        h("span", { className: "swatch", style: `background:${colors.get(node.path) || "#999"}` }),
        h("span", { className: "channel-name", text: node.label }),
      ),
    );
    const children = isParent && !folded ? h("div", { className: "tree-children" }, node.children.map(item)) : null;
    return h("div", { className: "tree-node" }, row, children);
  };
  return h("div", { className: "channel-tree" }, h("h3", { text: "Channels" }), root.children.map(item));
}

/** Alert list; a click on a row calls `onJump(alert)`. */
export function alertsPanel(alerts, available, onJump) {
  if (!available) {
    return h("section", { className: "alerts" }, h("h2", { text: "Alerts" }), h("p", { className: "muted", text: "The server has no alert API." }));
  }
  const rows = alerts.map((alert) =>
    h(
      "tr",
      { className: `alert-row state-${alert.state}`, dataset: { alertId: String(alert.id) }, onClick: () => onJump(alert) },
      h("td", {}, h("span", { className: `badge badge-${alert.state}`, text: alert.state })),
      h("td", { text: alert.channel ?? "(run)" }),
      h("td", { text: alert.rule }),
      h("td", { text: formatValue(alert.start_step) }),
      h("td", { text: formatValue(alert.last_step) }),
      h("td", { text: formatValue(alert.value === null ? null : Number(alert.value)) }),
      h("td", { text: alert.summary ?? "" }),
      h("td", {}, h("button", { type: "button", className: "jump", text: "show" })),
    ),
  );
  return h(
    "section",
    { className: "alerts" },
    h("h2", { text: `Alerts (${alerts.length})` }),
    alerts.length === 0
      ? h("p", { className: "muted", text: "No alerts." })
      : h(
          "table",
          { className: "alerts-table" },
          h("thead", {}, h("tr", {}, ["state", "channel", "rule", "start", "last", "value", "summary", ""].map((t) => h("th", { text: t })))),
          h("tbody", {}, rows),
        ),
  );
}

/** Run metadata: identity, channels with target shares, config as JSON text. */
export function metadataPanel(run, latestShares) {
  const channelRows = run.channels.map((c) =>
    h(
      "tr",
      {},
      h("td", { text: String(c.index) }),
      h("td", { text: c.name }),
      h("td", { text: c.target_share === null || c.target_share === undefined ? "–" : formatValue(c.target_share) }),
      h("td", { text: formatValue(latestShares.get(c.name) ?? null) }),
    ),
  );
  const facts = [
    ["key", run.key],
    ["project", run.project ?? "–"],
    ["status", run.status],
    ["created", formatTime(run.created_at)],
    ["updated", formatTime(run.updated_at)],
    ["last step at", formatTime(run.last_step_at)],
  ];
  return h(
    "section",
    { className: "metadata" },
    h("h2", { text: "Run" }),
    h("dl", {}, facts.map(([k, v]) => [h("dt", { text: k }), h("dd", { text: v })])),
    h(
      "table",
      { className: "channels-table" },
      h("thead", {}, h("tr", {}, ["id", "channel", "target share", "last share"].map((t) => h("th", { text: t })))),
      h("tbody", {}, channelRows),
    ),
    h("h3", { text: "Config" }),
    h("pre", { className: "config", text: JSON.stringify(run.config ?? {}, null, 2) }),
  );
}
