// A small history router: the pages live under /ui/, links change history without reloads.
import { useEffect, useState } from 'preact/hooks';
import { jsx } from 'preact/jsx-runtime';

export const BASE = '/ui';
const listeners = new Set();

export function navigate(to, { replace = false } = {}) {
  const url = to.startsWith('/') ? to : `${BASE}/${to}`;
  if (url === location.pathname + location.search) return;
  history[replace ? 'replaceState' : 'pushState'](null, '', url);
  listeners.forEach((f) => f());
}

export function useLocation() {
  const [loc, setLoc] = useState(location.pathname + location.search);
  useEffect(() => {
    const f = () => setLoc(location.pathname + location.search);
    listeners.add(f);
    window.addEventListener('popstate', f);
    return () => {
      listeners.delete(f);
      window.removeEventListener('popstate', f);
    };
  }, []);
  return loc;
}

export function useQuery() {
  const loc = useLocation();
  const i = loc.indexOf('?');
  return new URLSearchParams(i >= 0 ? loc.slice(i) : '');
}

/** Replace some query parameters of the current page (empty values are dropped). */
export function setQuery(changes, { replace = true } = {}) {
  const q = new URLSearchParams(location.search);
  for (const [k, v] of Object.entries(changes)) {
    if (v === undefined || v === null || v === '') q.delete(k);
    else q.set(k, String(v));
  }
  const s = q.toString();
  navigate(location.pathname + (s ? `?${s}` : ''), { replace });
}

/** '/ui/instances/:id' against a path -> {id} or null. */
export function match(pattern, path) {
  const p = pattern.split('/');
  const a = path.split('?')[0].replace(/\/+$/, '').split('/');
  if (p.length !== a.length) return null;
  const out = {};
  for (let i = 0; i < p.length; i++) {
    if (p[i].startsWith(':')) out[p[i].slice(1)] = decodeURIComponent(a[i]);
    else if (p[i] !== a[i]) return null;
  }
  return out;
}

export function Link({ href, children, ...rest }) {
  const onClick = (e) => {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(href);
  };
  return jsx('a', { href, onClick, ...rest, children });
}
