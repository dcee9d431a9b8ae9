// Small shared pieces: state icon and badge, error box, loading line, action button that stays
// focusable when disabled and tells why.
import { useState } from 'preact/hooks';
import { look } from '../states.js';

const PATHS = {
  check: 'M3 8.5 6.5 12 13 4.5',
  cross: 'M4 4 12 12M12 4 4 12',
  play: 'M5 3.5v9l7-4.5z',
  pause: 'M5 3.5v9M11 3.5v9',
  stop: 'M4 4h8v8H4z',
  clock: 'M8 2.5a5.5 5.5 0 1 0 0 11 5.5 5.5 0 0 0 0-11zM8 5v3.5l2.5 1.5',
  arrow: 'M3 8h9M9 5l3 3-3 3',
  skip: 'M3 4l5 4-5 4zM9 4l5 4-5 4z',
  warn: 'M8 2.5 14 13H2zM8 6.5v3M8 11.2v.3',
  dot: 'M8 5.5a2.5 2.5 0 1 0 0 5 2.5 2.5 0 0 0 0-5z',
};

export function Icon({ name, x, y, size = 14 }) {
  const filled = name === 'play' || name === 'stop' || name === 'skip' || name === 'dot';
  return (
    <svg class={`icon icon-${name}`} width={size} height={size} viewBox="0 0 16 16" x={x} y={y}
      aria-hidden="true" focusable="false">
      <path d={PATHS[name] || PATHS.dot} fill={filled ? 'currentColor' : 'none'}
        stroke="currentColor" stroke-width="1.8" stroke-linecap="round" stroke-linejoin="round" />
    </svg>
  );
}

export function StateBadge({ state }) {
  const l = look(state);
  return (
    <span class={`badge tone-${l.tone}`} data-state={state}>
      <Icon name={l.icon} />
      <span>{state || 'NOT_STARTED'}</span>
    </span>
  );
}

export function ErrorBox({ error, prefix }) {
  if (!error) return null;
  return (
    <p class="error" role="alert">
      {prefix ? `${prefix}: ` : ''}
      {error.message || String(error)}
    </p>
  );
}

export function Loading({ what }) {
  return <p class="muted" aria-live="polite">Loading {what}…</p>;
}

/**
 * A button for a control request. When `allow.allowed` is false it is aria-disabled (still
 * reachable by keyboard), carries the reason, and a click shows the reason instead of acting.
 */
export function ActionButton({ name, label, allow, onRun, onRefused, danger }) {
  const [busy, setBusy] = useState(false);
  const ok = !allow || allow.allowed;
  const click = async () => {
    if (!ok) {
      onRefused && onRefused(allow.reason);
      return;
    }
    setBusy(true);
    try {
      await onRun();
    } finally {
      setBusy(false);
    }
  };
  return (
    <button type="button" class={danger ? 'danger' : ''} data-action={name}
      aria-disabled={ok ? undefined : 'true'} data-reason={ok ? undefined : allow.reason}
      title={ok ? label : allow.reason} disabled={busy} onClick={click}>
      {label}
    </button>
  );
}

export function Field({ label, hint, children, id }) {
  return (
    <label class="field" for={id}>
      <span class="field-label">{label}</span>
      {children}
      {hint ? <span class="hint">{hint}</span> : null}
    </label>
  );
}
