// Calls to the service's public API, relative to the page (works under a proxy prefix),
// and its errors in words. Nothing else here knows about HTTP.
import * as session from "./session.js";

// Seconds a first load or a zoom may take when the service's spec does not say its ceiling
// (a cold first load reads every point of its runs from MLflow: the longest the operator
// allows is asked, see ceiling()).
const FALLBACK_TIMEOUT = 60;
// A longer query string (many runs, a long cursor) goes as a POST body instead: proxies
// refuse long request lines (nginx: 8 KB). A POST is never a 304, but answers the same.
const MAX_QUERY = 6000;

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// What a person should read for an error answer: the API's own message, in a sentence
// that says what kind of failure it is (never a blank chart).
export function words(status, message) {
  const detail = message ? `: ${message}` : "";
  switch (status) {
    case 401: return "Wrong MLflow user or password (401)";
    case 403: return `No permission${detail} (403)`;
    case 404: return `Not found${detail} (404)`;
    case 422: return `The request was refused${detail} (422)`;
    case 429: return `Too many requests; wait a moment${detail} (429)`;
    case 502: return `MLflow unreachable or failing${detail} (502)`;
    case 504: return "MLflow took too long (504)";
    case 0: return `The service did not answer (network error${detail})`;
    default: return `The service answered ${status}${detail}`;
  }
}

function query(fields) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(fields)) {
    for (const one of [].concat(value)) params.append(key, String(one));
  }
  return params.toString();
}

// One call: {status, json, etag, bytes}; a 304 has json null. Errors throw ApiError.
async function call(path, {connection, method = "GET", fields = {}, etag = null, signal}) {
  const all = Object.fromEntries(Object.entries({...session.fields(connection), ...fields})
    .filter(([, value]) => value !== undefined && value !== null));  // left out: defaults
  const headers = {Accept: "application/json"};
  const auth = session.authorization(connection);
  if (auth) headers.Authorization = auth;
  let url = path, body;
  const params = method === "GET" ? query(all) : null;
  if (params !== null && params.length <= MAX_QUERY) {
    url += "?" + params;
    if (etag) headers["If-None-Match"] = etag;
  } else {
    method = "POST";
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(all);
  }
  let response;
  try {
    // no-store: the page keeps answers itself; a 304 must reach it as a 304.
    response = await fetch(url, {method, headers, body, signal, cache: "no-store",
                                 credentials: "omit", referrerPolicy: "no-referrer"});
  } catch (error) {
    if (error.name === "AbortError") throw error;  // the page left that view: no error
    throw new ApiError(0, words(0, error.message));
  }
  const buffer = await response.arrayBuffer();
  const text = new TextDecoder().decode(buffer);
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!response.ok && response.status !== 304)
    throw new ApiError(response.status, words(response.status, json && json.message));
  return {status: response.status, json, etag: response.headers.get("ETag"),
          bytes: buffer.byteLength};
}

export async function experiments(connection) {
  const answer = await call("../mlflow/experiments", {connection, method: "POST"});
  return answer.json.experiments;
}

// An experiment's runs without histories, newest first (the run picker).
export async function runList(connection, experimentId, status) {
  const fields = {experiment_id: experimentId, include_metric_history: false, limit: 500};
  if (status && status !== "all") fields.run_status = [status];
  const answer = await call("../mlflow/runs", {connection, method: "POST", fields});
  return answer.json.runs;
}

// Histories for charts: the GET form, so a poll can be a conditional request.
// view: {runIds, metrics, maxPoints, cursor, sinceStep, maxStep};
// how: {etag, signal (to abort it), timeout (the request's http_timeout, seconds)}.
export function histories(connection, view, {etag = null, signal, timeout} = {}) {
  const fields = {run_ids: view.runIds, metric_keys: view.metrics, max_points: view.maxPoints,
                  cursor: view.cursor, since_step: view.sinceStep, max_step: view.maxStep,
                  http_timeout: timeout};
  return call("../mlflow/runs", {connection, fields, etag, signal});
}

// The longest http_timeout the operator allows (MAX_HTTP_TIMEOUT), as the service's OpenAPI
// spec states it: the schema's maximum of /mlflow/runs' http_timeout. Asked once (no
// credentials: the spec is public); FALLBACK_TIMEOUT when it cannot be read.
let spec = null;
export function ceiling() {
  spec ??= fetch("../openapi.json", {headers: {Accept: "application/json"},
                                      credentials: "omit", referrerPolicy: "no-referrer"})
    .then(response => (response.ok ? response.json() : null))
    .then(maxTimeout)
    .catch(() => {
      spec = null;  // not cached: asked again with the next view
      return FALLBACK_TIMEOUT;
    });
  return spec;
}

export function maxTimeout(openapi) {
  const parameters = openapi?.paths?.["/mlflow/runs"]?.get?.parameters ?? [];
  const maximum = Number(parameters.find(p => p.name === "http_timeout")?.schema?.maximum);
  return Number.isFinite(maximum) && maximum > 0 ? maximum : FALLBACK_TIMEOUT;
}
