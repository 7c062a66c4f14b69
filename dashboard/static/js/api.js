// REST client for /api/v1 (docs/architecture.md). The read token lives in localStorage.

const TOKEN_KEY = "lossradar.readToken";
const API = "/api/v1";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function getToken() {
  return localStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(token) {
  if (token) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
}

/** API numbers arrive as numbers or as "NaN" / "Infinity" / "-Infinity". */
export function toNumber(value) {
  return typeof value === "number" ? value : Number(value);
}

function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null) continue;
    if (Array.isArray(value)) for (const item of value) search.append(key, String(item));
    else search.append(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

async function get(path, params = {}) {
  const headers = { Accept: "application/json" };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(`${API}${path}${query(params)}`, { headers });
  if (!response.ok) {
    let detail = response.statusText;
    try {
      const body = await response.json();
      if (body && body.detail !== undefined) detail = JSON.stringify(body.detail);
    } catch {
      // not JSON: keep the status text
    }
    throw new ApiError(response.status, `${response.status} ${detail} (GET ${path})`);
  }
  return response.json();
}

/** Series response with values parsed to numbers (NaN/Inf included). */
function parseSeries(body) {
  for (const series of body.series) {
    series.values = series.values.map(toNumber);
  }
  return body;
}

export const api = {
  listRuns: (params = {}) => get("/runs", { limit: 200, ...params }),
  getRun: (runId) => get(`/runs/${encodeURIComponent(runId)}`),
  latest: (runId) => get(`/runs/${encodeURIComponent(runId)}/latest`),
  /**
   * opts: metrics (array), channels (array; "" selects run-level), startStep, endStep,
   * afterStep, maxPoints.
   */
  series: async (runId, opts) =>
    parseSeries(
      await get(`/runs/${encodeURIComponent(runId)}/series`, {
        metric: opts.metrics,
        channel: opts.channels,
        start_step: opts.startStep,
        end_step: opts.endStep,
        after_step: opts.afterStep,
        max_points: opts.maxPoints,
      }),
    ),
  alerts: (params = {}) => get("/alerts", params),
};
