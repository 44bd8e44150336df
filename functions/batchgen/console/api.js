// The batchgen HTTP API from the browser: same origin as the console, bearer token from sessionStorage.

const TOKEN_KEY = "batchgen.token";
// The console lives at <api>/console/, so the API is one folder up (a stage prefix included).
export const API_BASE = new URL("../", window.location.href);

export class ApiError extends Error {
  constructor(status, body) {
    const message = (body && body.message) || `The service answered ${status}.`;
    super(message);
    this.status = status;
    this.body = body || {};
  }
}

export function token() {
  return window.sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) window.sessionStorage.setItem(TOKEN_KEY, value);
  else window.sessionStorage.removeItem(TOKEN_KEY);
}

/** The token's claims, for display only (the API checks the signature and the role itself). */
export function claims() {
  try {
    const part = token().split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
  } catch {
    return {};
  }
}

export function isAdmin() {
  return claims().role === "admin";
}

function newKey() {
  if (window.crypto && window.crypto.randomUUID) return window.crypto.randomUUID();
  return `${Date.now()}-${Math.random().toString(16).slice(2)}`;
}

/** One API call; an error answer throws ApiError carrying the API's error body. */
export async function call(method, path, { body, query, headers } = {}) {
  const url = new URL(path.replace(/^\//, ""), API_BASE);
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
  }
  const init = { method, headers: { Authorization: `Bearer ${token()}`, ...(headers || {}) } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch {
    throw new ApiError(0, { error: "Network error", message: "The service could not be reached; check your connection." });
  }
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = { message: text.slice(0, 300) };
  }
  if (!response.ok) throw new ApiError(response.status, parsed);
  return { body: parsed, next: response.headers.get("X-Next-Cursor") };
}

const batchPath = (id, rest = "") => `batch/${encodeURIComponent(id)}${rest}`;

export const api = {
  credits: () => call("GET", "credits").then((r) => r.body),
  catalog: () => call("GET", "catalog").then((r) => r.body),
  create: (body) => call("POST", "batch/create", { body, headers: { "Idempotency-Key": newKey() } }).then((r) => r.body),
  status: (id) => call("GET", `batch/status/${encodeURIComponent(id)}`).then((r) => r.body),
  items: (id, query) => call("GET", batchPath(id, "/items"), { query }),
  results: (id) => call("GET", batchPath(id, "/results")).then((r) => r.body),
  retry: (id) => call("POST", batchPath(id, "/retry"), { headers: { "Idempotency-Key": newKey() } }).then((r) => r.body),
  cancel: (id) => call("POST", batchPath(id, "/cancel")).then((r) => r.body),
  history: (query) => call("GET", "batch/history", { query }),
  adminBatches: (query) => call("GET", "admin/batches", { query }),
  grant: (body) => call("POST", "admin/credits", { body }).then((r) => r.body),
  upload: () => call("POST", "batch/uploads").then((r) => r.body),
  endpoints: () => call("GET", "webhooks/endpoints").then((r) => r.body.endpoints),
  addEndpoint: (body) => call("POST", "webhooks/endpoints", { body }).then((r) => r.body),
  deleteEndpoint: (id) => call("DELETE", `webhooks/endpoints/${encodeURIComponent(id)}`),
  testEndpoint: (id) => call("POST", `webhooks/endpoints/${encodeURIComponent(id)}/test`).then((r) => r.body),
  deliveries: (query) => call("GET", "webhooks/deliveries", { query }).then((r) => r.body),
  templates: () => call("GET", "batch/templates").then((r) => r.body),
  addTemplate: (body) => call("POST", "batch/templates", { body }).then((r) => r.body),
  deleteTemplate: (id) => call("DELETE", `batch/templates/${encodeURIComponent(id)}`),
  usage: (userId, query) => call("GET", `admin/users/${encodeURIComponent(userId)}/usage`, { query }).then((r) => r.body),
};

/** Sends a bulk batch's file where POST /batch/uploads said: the one place that speaks the upload
 * protocol (a form POST with the policy `fields` first when present, else `method` with `headers`). */
export async function sendUpload(ticket, file) {
  let response;
  try {
    if (ticket.fields) {
      const form = new FormData();
      for (const [name, value] of Object.entries(ticket.fields)) form.append(name, value);
      form.append("file", file, "requests.jsonl");
      response = await fetch(ticket.uploadUrl, { method: ticket.method || "POST", headers: ticket.headers || {}, body: form });
    } else {
      response = await fetch(ticket.uploadUrl, { method: ticket.method, headers: ticket.headers || {}, body: file });
    }
  } catch {
    throw new ApiError(0, { error: "Upload failed", message: "The file could not be sent to the upload URL." });
  }
  if (!response.ok) throw new ApiError(response.status, { error: "Upload failed", message: `The upload was refused (${response.status}).` });
}

/** Credits in hundredths, so prices add up without float drift (the API's amounts have two decimals). */
export function cents(amount) {
  return Math.round(Number(amount) * 100);
}

export function formatCredits(hundredths) {
  const sign = hundredths < 0 ? "-" : "";
  const value = Math.abs(hundredths);
  const whole = Math.floor(value / 100);
  const rest = value % 100;
  return sign + (rest ? `${whole}.${String(rest).padStart(2, "0").replace(/0$/, "")}` : String(whole));
}
