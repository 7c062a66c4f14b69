// Client-side series store and math: merging polls and zoom detail, EMA, channel folding.

/** Key of one series: metric and channel (null = run level). */
export function seriesKey(metric, channel) {
  return `${metric}\u0000${channel ?? ""}`;
}

/** Sorted points of many series, filled from /series responses. */
export class SeriesStore {
  constructor() {
    this.series = new Map(); // key -> {steps: number[], values: number[]}
    this.lastStep = null;
    this.downsampled = false;
  }

  get(metric, channel) {
    return this.series.get(seriesKey(metric, channel)) || null;
  }

  /** Replace everything with a full response (the overview, or a zoom window). */
  replace(body) {
    this.series.clear();
    this.downsampled = false;
    for (const s of body.series) {
      this.series.set(seriesKey(s.metric, s.channel), { steps: s.steps.slice(), values: s.values.slice() });
      this.downsampled ||= Boolean(s.downsampled);
    }
    this.lastStep = body.last_step ?? null;
  }

  /** Merge a response (e.g. an `after_step` poll): a step already present is overwritten. */
  merge(body) {
    for (const s of body.series) {
      const key = seriesKey(s.metric, s.channel);
      let target = this.series.get(key);
      if (!target) {
        target = { steps: [], values: [] };
        this.series.set(key, target);
      }
      for (let i = 0; i < s.steps.length; i++) insertPoint(target, s.steps[i], s.values[i]);
    }
    if (body.last_step !== null && body.last_step !== undefined) {
      this.lastStep = Math.max(this.lastStep ?? body.last_step, body.last_step);
    }
  }

  /** Number of points appended since `replace` would be: total points over all series. */
  pointCount() {
    let n = 0;
    for (const s of this.series.values()) n += s.steps.length;
    return n;
  }
}

function insertPoint(target, step, value) {
  const { steps, values } = target;
  if (steps.length === 0 || step > steps[steps.length - 1]) {
    steps.push(step);
    values.push(value);
    return;
  }
  let lo = 0;
  let hi = steps.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (steps[mid] < step) lo = mid + 1;
    else hi = mid;
  }
  if (steps[lo] === step) values[lo] = value;
  else {
    steps.splice(lo, 0, step);
    values.splice(lo, 0, value);
  }
}

/**
 * Overview points outside [start, end] joined with the detailed points inside it, so a zoomed
 * window shows every point while panning out still shows the overview.
 */
export function withDetail(overview, detail, start, end) {
  if (!detail) return overview;
  const steps = [];
  const values = [];
  const pushRange = (s, from, to) => {
    if (!s) return;
    for (let i = 0; i < s.steps.length; i++) {
      if (s.steps[i] >= from && s.steps[i] <= to) {
        steps.push(s.steps[i]);
        values.push(s.values[i]);
      }
    }
  };
  pushRange(overview, -Infinity, start - 1e-9);
  pushRange(detail, start, end);
  pushRange(overview, end + 1e-9, Infinity);
  return { steps, values };
}

/**
 * Debiased exponential moving average (as TensorBoard's smoothing):
 * m_t = a m_{t-1} + (1 - a) x_t,  s_t = m_t / (1 - a^n_t),
 * with n_t the count of finite values so far. Non-finite values pass through unsmoothed and do
 * not enter the average. a = 0 returns the input.
 */
export function ema(values, alpha) {
  if (!(alpha > 0)) return values.slice();
  const out = new Array(values.length);
  let acc = 0;
  let n = 0;
  for (let i = 0; i < values.length; i++) {
    const x = values[i];
    if (!Number.isFinite(x)) {
      out[i] = x;
      continue;
    }
    acc = alpha * acc + (1 - alpha) * x;
    n += 1;
    out[i] = acc / (1 - alpha ** n);
  }
  return out;
}

/** Plotly cannot draw NaN/Inf: they become gaps (null). */
export function plottable(values) {
  return values.map((v) => (Number.isFinite(v) ? v : null));
}

/**
 * How a folded parent combines its channels' values at one step (exact on raw data):
 * loss:             sum_c loss_c tokens_c / sum_c tokens_c          (token-weighted mean)
 * loss_sample_mean: sum_c lsm_c samples_c / sum_c samples_c         (mean over all samples)
 * weight:           sum_c weight_c tokens_c / sum_c tokens_c        (effective channel weight)
 * token_share, tokens, samples: sum_c value_c
 * Steps where a channel has a value but no weight (count) point are left out for the weighted
 * metrics; on downsampled data only steps the channels share contribute.
 */
const COMBINE = {
  loss: "tokens",
  loss_sample_mean: "samples",
  weight: "tokens",
  token_share: null,
  tokens: null,
  samples: null,
};

/** Combined series of `channels` for `metric`; `lookup(metric, channel)` gives {steps, values}. */
export function combineChannels(metric, channels, lookup) {
  if (channels.length === 1) return lookup(metric, channels[0]) || { steps: [], values: [] };
  const weightMetric = COMBINE[metric];
  const num = new Map();
  const den = new Map();
  for (const channel of channels) {
    const s = lookup(metric, channel);
    if (!s) continue;
    let weights = null;
    if (weightMetric) {
      const w = lookup(weightMetric, channel);
      if (!w) continue;
      weights = new Map();
      for (let i = 0; i < w.steps.length; i++) weights.set(w.steps[i], w.values[i]);
    }
    for (let i = 0; i < s.steps.length; i++) {
      const step = s.steps[i];
      const weight = weights ? weights.get(step) : 1;
      if (weight === undefined) continue;
      const value = weightMetric ? s.values[i] * weight : s.values[i];
      num.set(step, (num.get(step) ?? 0) + value);
      den.set(step, (den.get(step) ?? 0) + weight);
    }
  }
  const steps = [...num.keys()].sort((a, b) => a - b);
  const values = steps.map((step) => (weightMetric ? num.get(step) / den.get(step) : num.get(step)));
  return { steps, values };
}
