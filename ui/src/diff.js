// A line diff (longest common subsequence) for comparing two workflow versions' specs.

export const MAX_DIFF_LINES = 4000;

/** [{op: ' '|'-'|'+', text}] turning a into b; null when either side is too long. */
export function diffLines(a, b) {
  if (a.length > MAX_DIFF_LINES || b.length > MAX_DIFF_LINES) return null;
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) start++;
  let ea = a.length;
  let eb = b.length;
  while (ea > start && eb > start && a[ea - 1] === b[eb - 1]) {
    ea--;
    eb--;
  }
  const x = a.slice(start, ea);
  const y = b.slice(start, eb);
  const n = x.length;
  const m = y.length;
  const table = new Uint32Array((n + 1) * (m + 1));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      table[i * (m + 1) + j] =
        x[i] === y[j]
          ? table[(i + 1) * (m + 1) + j + 1] + 1
          : Math.max(table[(i + 1) * (m + 1) + j], table[i * (m + 1) + j + 1]);
    }
  }
  const out = a.slice(0, start).map((text) => ({ op: ' ', text }));
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && x[i] === y[j]) {
      out.push({ op: ' ', text: x[i] });
      i++;
      j++;
    } else if (j < m && (i === n || table[i * (m + 1) + j + 1] >= table[(i + 1) * (m + 1) + j])) {
      out.push({ op: '+', text: y[j++] });
    } else {
      out.push({ op: '-', text: x[i++] });
    }
  }
  return out.concat(a.slice(ea).map((text) => ({ op: ' ', text })));
}

/** Stable, readable JSON: keys sorted, two-space indent. */
export function canonical(value) {
  const sort = (v) => {
    if (Array.isArray(v)) return v.map(sort);
    if (v && typeof v === 'object') {
      return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sort(v[k])]));
    }
    return v;
  };
  return JSON.stringify(sort(value), null, 2).split('\n');
}
