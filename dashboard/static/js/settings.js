// User settings kept in localStorage: refresh interval and points per series.

const POLL_KEY = "lossradar.pollMs";
const MAX_POINTS_KEY = "lossradar.maxPoints";

/** Refresh interval in ms (0 = off). Default 5 s. */
export function pollMs() {
  const value = Number(localStorage.getItem(POLL_KEY) ?? 5000);
  return Number.isFinite(value) && value >= 0 ? value : 5000;
}

export function setPollMs(value) {
  localStorage.setItem(POLL_KEY, String(value));
}

/** Points per series asked of the server (min/max downsampling above it). Default 2000. */
export function maxPoints() {
  const value = Number(localStorage.getItem(MAX_POINTS_KEY) ?? 2000);
  return Number.isInteger(value) && value >= 10 ? value : 2000;
}
