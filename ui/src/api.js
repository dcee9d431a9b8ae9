// The one way the UI talks to dagkeeper: fetch() on this origin's /api/v1 with the bearer token,
// which lives in sessionStorage (never in a URL). Errors carry the API's own code and message.

const TOKEN_KEY = 'dagkeeper.token';
const BASE = '/api/v1';

export const session = {
  token: () => sessionStorage.getItem(TOKEN_KEY),
  save: (t) => sessionStorage.setItem(TOKEN_KEY, t),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v === undefined || v === null || v === '') continue;
    if (Array.isArray(v)) v.forEach((x) => q.append(k, x));
    else q.append(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

function headers(extra, token) {
  const h = { Accept: 'application/json', ...extra };
  const t = token ?? session.token();
  if (t) h.Authorization = `Bearer ${t}`;
  return h;
}

async function failure(res) {
  let body = null;
  try {
    body = await res.json();
  } catch {
    /* not JSON */
  }
  const e = body && body.error;
  const err = new ApiError(
    res.status,
    (e && e.code) || `http_${res.status}`,
    (e && e.message) || `${res.status} ${res.statusText || 'error'}`,
    e && e.details,
  );
  if (res.status === 401) window.dispatchEvent(new CustomEvent('dk-unauthorized', { detail: err }));
  return err;
}

/** fetch with the token; resolves to the parsed JSON (null for 204), rejects with ApiError. */
export async function raw(path, { method = 'GET', body, params, signal, token, accept } = {}) {
  const init = { method, signal, headers: headers(accept ? { Accept: accept } : {}, token) };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  let res;
  try {
    res = await fetch(BASE + path + query(params), init);
  } catch (exc) {
    if (exc && exc.name === 'AbortError') throw exc;
    throw new ApiError(0, 'unreachable', 'the API did not answer (is `dagkeeper api` running?)');
  }
  if (!res.ok) throw await failure(res);
  return res;
}

export async function api(path, opts) {
  const res = await raw(path, opts);
  if (res.status === 204) return null;
  return res.json();
}

export const get = (path, params, signal) => api(path, { params, signal });
export const post = (path, body) => api(path, { method: 'POST', body: body ?? {} });
export const put = (path, body) => api(path, { method: 'PUT', body });
export const del = (path) => api(path, { method: 'DELETE' });

/** Check a token: GET /me where it exists, else a cheap authenticated read. */
export async function whoAmI(token) {
  try {
    return await api('/me', { token });
  } catch (exc) {
    if (!(exc instanceof ApiError) || exc.status !== 404) throw exc;
  }
  await api('/workflows', { token, params: { limit: 1 } });
  return { name: 'API token', role: 'admin', bootstrap: true };
}

/** Save a response body (a log) with the token: fetch it, then hand the browser a blob. */
export async function download(path, filename) {
  const res = await raw(path, { accept: 'text/plain' });
  const blob = await res.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
