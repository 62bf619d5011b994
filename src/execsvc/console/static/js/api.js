// The public REST API with the session's bearer token (in a header, never in a URL).
const TOKEN_KEY = "execsvc.console.token";

export const session = {
  get token() { return sessionStorage.getItem(TOKEN_KEY); },
  set token(value) {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  },
  accountId: null,
  scopes: [],
  get admin() { return this.scopes.includes("admin"); },
};

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

export async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${session.token}`, Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "omit",
    referrerPolicy: "no-referrer", cache: "no-store",
  });
  if (response.status === 401) window.dispatchEvent(new CustomEvent("execsvc:unauthorized"));
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  const payload = type.includes("json") ? await response.json() : await response.blob();
  if (!response.ok) throw new ApiError(response.status, type.includes("json") ? payload : null);
  return payload;
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body ?? {});
export const put = (path, body) => api("PUT", path, body);
export const del = (path) => api("DELETE", path);

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
}
