// Hierarchical channel names ("finance/slow/credit"): the tree, folding, and colours.

const PALETTE = [
  "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
  "#bcbd22", "#17becf", "#393b79", "#ad494a", "#637939", "#7b4173", "#3182bd", "#e6550d",
];

/** Stable colour of the i-th channel. */
export function colorAt(index) {
  return PALETTE[index % PALETTE.length];
}

/**
 * Tree of channel names split on "/". Node: {path, label, isChannel, children: Node[]}.
 * A name can be both a channel and a parent ("finance" and "finance/slow").
 */
export function buildTree(names) {
  const root = { path: "", label: "", isChannel: false, children: [] };
  const byPath = new Map([["", root]]);
  for (const name of names) {
    const parts = name.split("/");
    let parent = root;
    for (let i = 0; i < parts.length; i++) {
      const path = parts.slice(0, i + 1).join("/");
      let node = byPath.get(path);
      if (!node) {
        node = { path, label: parts[i], isChannel: false, children: [] };
        byPath.set(path, node);
        parent.children.push(node);
      }
      parent = node;
    }
    parent.isChannel = true;
  }
  return root;
}

/** All channel names at or under `node`. */
export function channelsUnder(node) {
  const out = node.isChannel ? [node.path] : [];
  for (const child of node.children) out.push(...channelsUnder(child));
  return out;
}

/**
 * The curves to draw: one per visible channel, except that a folded parent draws a single
 * curve for all channels under it. Returns [{name, channels: string[], folded: bool}].
 * `hidden`: channel/parent paths switched off.
 */
export function visibleCurves(root, folded, hidden) {
  const out = [];
  const walk = (node) => {
    if (node.path && hidden.has(node.path)) return;
    if (node.path && node.children.length > 0 && folded.has(node.path)) {
      const channels = channelsUnder(node).filter((c) => !hidden.has(c));
      if (channels.length > 0) out.push({ name: node.path, channels, folded: true });
      return;
    }
    if (node.isChannel) out.push({ name: node.path, channels: [node.path], folded: false });
    for (const child of node.children) walk(child);
  };
  walk(root);
  return out;
}
