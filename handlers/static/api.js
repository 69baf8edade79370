// The API client: every request the app makes goes through `request`.
// Cookies carry the session (credentials: same-origin); unsafe methods echo the
// ywm_csrf cookie in X-CSRF-Token (API.md §3). An expired access token is refreshed once
// and the request retried. Failures become ApiError with the API's own `message` in plain
// words, never raw JSON.

const BASE = "/api/v1";
const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);

export class ApiError extends Error {
  constructor(status, code, message, details = [], retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
    this.retryAfter = retryAfter;
  }
}

const listeners = {unauthorized: []};

/** Called when the session is gone for good (the app shows Sign in). */
export function onUnauthorized(callback) {
  listeners.unauthorized.push(callback);
}

export function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return "";
}

function queryString(query) {
  if (!query) return "";
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `?${text}` : "";
}

/** Turn a field path like "$.first_name" into "First name". */
function fieldLabel(path) {
  const name = String(path || "").replace(/^\$\.?/, "").replace(/\[\d+\]/g, "").split(".").pop();
  if (!name) return "";
  const words = name.replace(/_/g, " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** The sentence to show for an error body; details become "Field: problem." lines. */
export function describe(body, status) {
  const error = body && body.error;
  if (!error) {
    if (status === 0) return "Can't reach the server. Check the connection and try again.";
    if (status >= 500) return "Something went wrong on our side. Try again in a moment.";
    return "The request did not work. Try again.";
  }
  const details = Array.isArray(error.details) ? error.details : [];
  if (error.code === "validation_failed" && details.length) {
    return details.map((d) => {
      const label = fieldLabel(d.field);
      return label ? `${label}: ${d.message}` : d.message;
    }).join(" ");
  }
  return error.message || "The request did not work. Try again.";
}

let refreshing = null;

async function refreshSession() {
  // One refresh at a time: parallel 401s share it (the old refresh token dies on use).
  if (!refreshing) {
    refreshing = send("POST", "/auth/refresh", {body: {}}).then(() => true, () => false)
      .finally(() => { setTimeout(() => { refreshing = null; }, 0); });
  }
  return refreshing;
}

async function send(method, path, {body, query, headers = {}, contentType} = {}) {
  const init = {method, credentials: "same-origin", headers: {Accept: "application/json", ...headers}};
  if (body !== undefined) {
    if (contentType) {
      init.headers["Content-Type"] = contentType;
      init.body = body;
    } else {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
  }
  if (UNSAFE.has(method)) {
    const csrf = cookie("ywm_csrf");
    if (csrf) init.headers["X-CSRF-Token"] = csrf;
  }
  let response;
  try {
    response = await fetch(BASE + path + queryString(query), init);
  } catch (_networkError) {
    throw new ApiError(0, "network", describe(null, 0));
  }
  let payload = null;
  if ((response.headers.get("Content-Type") || "").startsWith("application/json")) {
    try { payload = await response.json(); } catch (_badJson) { payload = null; }
  }
  if (!response.ok) {
    const error = (payload && payload.error) || {};
    throw new ApiError(response.status, error.code || "http_error", describe(payload, response.status),
      error.details || [], response.headers.get("Retry-After"));
  }
  return payload || {data: null, meta: {}};
}

/** Make a request; returns {data, meta}. Throws ApiError. */
export async function request(method, path, options = {}) {
  try {
    return await send(method, path, options);
  } catch (err) {
    const isAuthRoute = path.startsWith("/auth/login") || path.startsWith("/auth/refresh");
    if (err.status !== 401 || isAuthRoute) throw err;
    if (await refreshSession()) return send(method, path, options);
    for (const callback of listeners.unauthorized) callback(err);
    throw err;
  }
}

export const api = {
  get: (path, query) => request("GET", path, {query}),
  post: (path, body, options = {}) => request("POST", path, {...options, body}),
  patch: (path, body) => request("PATCH", path, {body}),
  del: (path) => request("DELETE", path),
  /** Every page of a list, up to `max` items (for small lists such as groups). */
  async all(path, query = {}, max = 1000) {
    const items = [];
    let cursor = null;
    do {
      const page = await request("GET", path, {query: {...query, limit: 200, cursor}});
      items.push(...page.data);
      cursor = page.meta && page.meta.next_cursor;
    } while (cursor && items.length < max);
    return items;
  },
};
