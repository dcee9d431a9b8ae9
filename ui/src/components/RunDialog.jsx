// The Run dialog: parameters, start nodes and depend mode, failure strategy, priority, worker
// group, dry run and backfill dates; it posts POST /workflows/{id}/runs and opens the instance.
import { useEffect, useRef, useState } from 'preact/hooks';
import { post } from '../api.js';
import { localToIso } from '../fmt.js';
import { navigate } from '../router.js';
import { PRIORITIES } from '../states.js';
import { ErrorBox, Field } from './bits.jsx';

function initialParams(workflow, given) {
  const merged = { ...(workflow.params || {}), ...(given || {}) };
  const rows = Object.entries(merged).map(([k, v]) => ({ k, v: String(v) }));
  return rows.length ? rows : [{ k: '', v: '' }];
}

export function RunDialog({ workflow, preset, onClose }) {
  const ref = useRef(null);
  const tasks = (workflow.tasks || []).map((t) => t.name);
  const [params, setParams] = useState(initialParams(workflow, preset && preset.params));
  const [startNodes, setStartNodes] = useState((preset && preset.start_nodes) || []);
  const [dependMode, setDependMode] = useState((preset && preset.depend_mode) || 'TASK_POST');
  const [failure, setFailure] = useState('');
  const [priority, setPriority] = useState('');
  const [group, setGroup] = useState('');
  const [dryRun, setDryRun] = useState(false);
  const [backfill, setBackfill] = useState(false);
  const [bf, setBf] = useState({ start: '', end: '', dates: '', mode: 'SERIAL', parallelism: 1 });
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    const d = ref.current;
    if (d && !d.open) d.showModal();
    const onCancel = (e) => {
      e.preventDefault();
      onClose();
    };
    d.addEventListener('cancel', onCancel);
    return () => d.removeEventListener('cancel', onCancel);
  }, []);

  const body = () => {
    const out = { params: {} };
    for (const { k, v } of params) if (k.trim()) out.params[k.trim()] = v;
    if (startNodes.length) {
      out.start_nodes = startNodes;
      out.depend_mode = dependMode;
    }
    if (failure) out.failure_strategy = failure;
    if (priority) out.priority = priority;
    if (group.trim()) out.worker_group = group.trim();
    if (dryRun) out.dry_run = true;
    if (backfill) {
      const b = { mode: bf.mode, parallelism: Number(bf.parallelism) || 1 };
      const dates = bf.dates.split(/[\s,]+/).filter(Boolean);
      if (dates.length) b.dates = dates.map((d) => (d.length <= 10 ? `${d}T00:00:00Z` : d));
      else {
        b.start = localToIso(bf.start);
        b.end = localToIso(bf.end);
      }
      out.backfill = b;
    }
    return out;
  };

  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const r = await post(`/workflows/${workflow.id}/runs`, body());
      onClose();
      navigate(`/ui/instances/${r.instance_id}`);
    } catch (exc) {
      setError(exc);
    } finally {
      setBusy(false);
    }
  };

  const setParam = (i, key, value) =>
    setParams((rows) => rows.map((r, j) => (j === i ? { ...r, [key]: value } : r)));
  const toggleNode = (name) =>
    setStartNodes((s) => (s.includes(name) ? s.filter((n) => n !== name) : [...s, name]));

  return (
    <dialog ref={ref} class="run-dialog" aria-labelledby="run-title">
      <form onSubmit={submit}>
        <h2 id="run-title">Run {workflow.name}</h2>
        <fieldset>
          <legend>Parameters</legend>
          {params.map((r, i) => (
            <div class="param-row" key={i}>
              <input aria-label={`parameter ${i + 1} name`} placeholder="name" value={r.k}
                onInput={(e) => setParam(i, 'k', e.currentTarget.value)} />
              <input aria-label={`parameter ${i + 1} value`} placeholder="value" value={r.v}
                onInput={(e) => setParam(i, 'v', e.currentTarget.value)} />
              <button type="button" aria-label={`remove parameter ${i + 1}`}
                onClick={() => setParams((rows) => rows.filter((_, j) => j !== i))}>×</button>
            </div>
          ))}
          <button type="button" onClick={() => setParams((rows) => [...rows, { k: '', v: '' }])}>
            Add parameter
          </button>
        </fieldset>
        <fieldset>
          <legend>Start nodes (none: the whole DAG)</legend>
          <div class="checks">
            {tasks.map((n) => (
              <label class="inline" key={n}>
                <input type="checkbox" checked={startNodes.includes(n)} onChange={() => toggleNode(n)} /> {n}
              </label>
            ))}
          </div>
          <Field label="Depend mode">
            <select value={dependMode} disabled={!startNodes.length}
              onChange={(e) => setDependMode(e.currentTarget.value)}>
              <option value="TASK_POST">TASK_POST: the nodes and everything downstream</option>
              <option value="TASK_PRE">TASK_PRE: the nodes and everything upstream</option>
              <option value="TASK_ONLY">TASK_ONLY: just the nodes</option>
            </select>
          </Field>
        </fieldset>
        <div class="grid2">
          <Field label="Failure strategy">
            <select value={failure} onChange={(e) => setFailure(e.currentTarget.value)}>
              <option value="">workflow default</option>
              <option value="END">END</option>
              <option value="CONTINUE">CONTINUE</option>
            </select>
          </Field>
          <Field label="Priority">
            <select value={priority} onChange={(e) => setPriority(e.currentTarget.value)}>
              <option value="">workflow default</option>
              {PRIORITIES.map((p) => <option key={p} value={p}>{p}</option>)}
            </select>
          </Field>
          <Field label="Worker group" hint="empty: each task's own group">
            <input value={group} onInput={(e) => setGroup(e.currentTarget.value)} />
          </Field>
          <label class="inline">
            <input type="checkbox" checked={dryRun} onChange={(e) => setDryRun(e.currentTarget.checked)} />
            Dry run (tasks succeed without running)
          </label>
        </div>
        <fieldset>
          <legend>
            <label class="inline">
              <input type="checkbox" checked={backfill} onChange={(e) => setBackfill(e.currentTarget.checked)} />
              Backfill over dates
            </label>
          </legend>
          {backfill ? (
            <div class="grid2">
              <Field label="From (local time)">
                <input type="datetime-local" value={bf.start} onInput={(e) => setBf({ ...bf, start: e.currentTarget.value })} />
              </Field>
              <Field label="To (local time)">
                <input type="datetime-local" value={bf.end} onInput={(e) => setBf({ ...bf, end: e.currentTarget.value })} />
              </Field>
              <Field label="Or these dates" hint="comma or space separated, e.g. 2026-01-01 2026-01-02">
                <input value={bf.dates} onInput={(e) => setBf({ ...bf, dates: e.currentTarget.value })} />
              </Field>
              <Field label="Mode">
                <select value={bf.mode} onChange={(e) => setBf({ ...bf, mode: e.currentTarget.value })}>
                  <option value="SERIAL">SERIAL</option>
                  <option value="PARALLEL">PARALLEL</option>
                </select>
              </Field>
              <Field label="Parallelism">
                <input type="number" min="1" max="1000" value={bf.parallelism}
                  onInput={(e) => setBf({ ...bf, parallelism: e.currentTarget.value })} />
              </Field>
            </div>
          ) : null}
        </fieldset>
        <ErrorBox error={error} prefix="not started" />
        <div class="buttons">
          <button type="submit" class="primary" disabled={busy} data-action="submit-run">
            {busy ? 'Starting…' : dryRun ? 'Start dry run' : 'Start run'}
          </button>
          <button type="button" onClick={onClose}>Cancel</button>
        </div>
      </form>
    </dialog>
  );
}
