// Every /v1 call goes through here: the optional bearer token, JSON in and out, and errors as
// ApiError carrying the API's `{"detail": [{loc, msg, type}]}` so forms can place them.

const TOKEN_KEY = "glidepath.token";

export function getToken() {
  return localStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(token) {
  if (token) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  constructor(status, detail) {
    super(ApiError.describe(status, detail));
    this.status = status;
    // Always a list of {loc, msg, type}, whatever shape the server sent.
    this.items = Array.isArray(detail)
      ? detail
      : [{ loc: [], msg: typeof detail === "string" ? detail : JSON.stringify(detail), type: "error" }];
  }

  static describe(status, detail) {
    if (Array.isArray(detail)) return detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("\n");
    return `HTTP ${status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`;
  }
}

// Pages subscribe to learn that a call was refused for want of a token (the top bar opens its
// token prompt).
const unauthorizedListeners = new Set();
export function onUnauthorized(fn) {
  unauthorizedListeners.add(fn);
}

export async function request(method, path, body) {
  const headers = { Accept: "application/json" };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError(0, `the service is unreachable (${err.message})`);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!response.ok) {
    if (response.status === 401) unauthorizedListeners.forEach((fn) => fn());
    throw new ApiError(response.status, data && data.detail !== undefined ? data.detail : data);
  }
  return data;
}

// A file (a run's final model) as a Blob, sent with the token as every other call; errors as
// in `request`.
export async function download(path) {
  const headers = {};
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, { headers });
  } catch (err) {
    throw new ApiError(0, `the service is unreachable (${err.message})`);
  }
  if (!response.ok) {
    if (response.status === 401) unauthorizedListeners.forEach((fn) => fn());
    const text = await response.text();
    let data = text;
    try {
      data = JSON.parse(text);
    } catch {
      // not JSON (a proxy's page): shown as it is
    }
    throw new ApiError(response.status, data && data.detail !== undefined ? data.detail : data);
  }
  return response.blob();
}

function query(params) {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === "") continue;
    q.set(key, String(value));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

export const api = {
  listExperiments: (filters = {}) => request("GET", `/v1/experiments${query(filters)}`),
  experiment: (id) => request("GET", `/v1/experiments/${id}`),
  metrics: (id, afterEpoch) => request("GET", `/v1/experiments/${id}/metrics${query({ after_epoch: afterEpoch })}`),
  decisions: (id) => request("GET", `/v1/experiments/${id}/decisions`),
  // A run's epochs for export: CSV as a file (sent with the token), JSON as metrics pages.
  metricsCsvUrl: (id) => `/v1/experiments/${id}/metrics.csv`,
  metricsCsv: (id) => download(`/v1/experiments/${id}/metrics.csv`),
  metricsPage: (id, afterEpoch, limit) => request("GET", `/v1/experiments/${id}/metrics${query({ after_epoch: afterEpoch, limit })}`),
  cancel: (id) => request("POST", `/v1/experiments/${id}/cancel`),
  // The final model (safetensors) of an ended run, verified by the service before it is sent.
  modelUrl: (id) => `/v1/experiments/${id}/model`,
  model: (id) => download(`/v1/experiments/${id}/model`),
  create: (spec) => request("POST", "/v1/experiments", spec),
  compare: (ids) => request("GET", `/v1/experiments/compare${query({ ids: ids.join(",") })}`),
  sweep: (id) => request("GET", `/v1/sweeps/${id}`),
  // A pruned sweep's decisions in the order taken, each with value, cutoff and reason.
  sweepDecisions: (id) => request("GET", `/v1/sweeps/${id}/decisions`),
  sweeps: () => request("GET", "/v1/sweeps?limit=100"),
  // LR range tests (docs/lr-range-test.md): the list, and one test's points from a step on.
  rangeTests: (params = {}) => request("GET", `/v1/lr-range-tests${query(params)}`),
  rangeTest: (id, fromStep) => request("GET", `/v1/lr-range-tests/${id}${query({ from_step: fromStep })}`),
  cancelRangeTest: (id) => request("POST", `/v1/lr-range-tests/${id}/cancel`),
  // An experiment's LR per epoch or per optimizer step (`resolution=step`), downsampled.
  lrTrace: (id, params = {}) => request("GET", `/v1/experiments/${id}/lr${query(params)}`),
  catalog: () => request("GET", "/v1/catalog"),
  datasets: () => request("GET", "/v1/datasets"),
  // The worker registry: what each worker offers (plugin models and datasets, their params).
  workers: () => request("GET", "/v1/workers"),
  preview: (body) => request("POST", "/v1/schedules/preview", body),
  // Tokens (docs/access.md): who the sent token is, and the admin's list, create and revoke.
  me: () => request("GET", "/v1/tokens/me"),
  tokens: () => request("GET", "/v1/tokens"),
  createToken: (name, role) => request("POST", "/v1/tokens", { name, role }),
  revokeToken: (name) => request("DELETE", `/v1/tokens/${encodeURIComponent(name)}`),
  // The spec's JSON schema is public (no /v1 prefix, so no token): the form is built from it.
  openapi: () => request("GET", "/openapi.json"),
};

// The service's run-status vocabulary, inlined into the page by service/dashboard/router.py.
const VOCABULARY = JSON.parse(document.getElementById("vocabulary")?.textContent ?? "{}");
export const STATUSES = VOCABULARY.statuses ?? [];
// An LR range test's: no sweep waits or prunes it, and it never ends early_stopped or diverged.
export const RANGE_TEST_STATUSES = VOCABULARY.range_test_statuses ?? [];
export const FINAL_STATUSES = new Set(VOCABULARY.final ?? []);
export const OK_STATUSES = new Set(VOCABULARY.ok ?? []);
