// Schedules: the list with enable/disable, a form to create or edit one with a live preview of
// its next fire times (DST gaps and repeats noted), and backfills with their progress.
import { useEffect, useState } from 'preact/hooks';
import { del, get, post, put } from '../api.js';
import { isoToLocal, localToIso, time } from '../fmt.js';
import { Link, setQuery, useQuery } from '../router.js';
import { usePoll } from '../poll.js';
import { PRIORITIES } from '../states.js';
import { ErrorBox, Field, Loading, StateBadge } from '../components/bits.jsx';

const EMPTY = {
  workflow_id: '', cron: '0 0 2 * * ? *', timezone: Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC',
  start: '', end: '', failure_strategy: 'END', priority: 'MEDIUM', worker_group: '', misfire: 'FIRE_ONCE', enabled: true,
};

function Preview({ expr, timezone }) {
  const [out, setOut] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    if (!expr.trim()) return undefined;
    const ctrl = new AbortController();
    const t = setTimeout(() => {
      get('/cron/preview', { expr, timezone: timezone || 'UTC', count: 6 }, ctrl.signal)
        .then((d) => { setOut(d); setError(null); })
        .catch((e) => { if (e.name !== 'AbortError') { setError(e); setOut(null); } });
    }, 350);
    return () => { clearTimeout(t); ctrl.abort(); };
  }, [expr, timezone]);
  return (
    <div class="preview" aria-live="polite" aria-label="next fire times">
      <h3>Next fire times</h3>
      <ErrorBox error={error} />
      {out ? (
        <ol>
          {out.items.map((f) => (
            <li key={f.utc} data-fire={f.utc}>
              {f.time} <span class="muted small">({f.utc} UTC)</span>
              {f.dst ? <span class="badge tone-warn">DST {f.dst}</span> : null}
              {f.note ? <div class="small">{f.note}</div> : null}
            </li>
          ))}
        </ol>
      ) : null}
      {out ? <p class="muted small">{out.kind} expression in {out.timezone}</p> : null}
    </div>
  );
}

function ScheduleForm({ workflows, initial, onDone }) {
  const [f, setF] = useState(initial);
  const [error, setError] = useState(null);
  const set = (k) => (e) => setF({ ...f, [k]: e.currentTarget.type === 'checkbox' ? e.currentTarget.checked : e.currentTarget.value });
  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    const body = { ...f, workflow_id: Number(f.workflow_id), start: localToIso(f.start) || null, end: localToIso(f.end) || null, worker_group: f.worker_group || null };
    delete body.id;
    try {
      if (f.id) await put(`/schedules/${f.id}`, body);
      else await post('/schedules', body);
      onDone();
    } catch (exc) {
      setError(exc);
    }
  };
  return (
    <form class="card" onSubmit={submit} aria-label={f.id ? `edit schedule ${f.id}` : 'new schedule'}>
      <h2>{f.id ? `Edit schedule ${f.id}` : 'New schedule'}</h2>
      <div class="grid2">
        <div>
          <Field label="Workflow">
            <select required value={String(f.workflow_id)} onChange={set('workflow_id')}>
              <option value="">choose…</option>
              {workflows.map((w) => <option key={w.id} value={String(w.id)}>{w.name}</option>)}
            </select>
          </Field>
          <Field label="Cron" hint="5-field cron or 7-field Quartz, e.g. 0 0 2 * * ? * or 30 2 * * *">
            <input required value={f.cron} onInput={set('cron')} class="mono" name="cron" />
          </Field>
          <Field label="Time zone"><input value={f.timezone} onInput={set('timezone')} name="timezone" /></Field>
          <Field label="Start (local time, optional)"><input type="datetime-local" value={f.start} onInput={set('start')} /></Field>
          <Field label="End (local time, optional)"><input type="datetime-local" value={f.end} onInput={set('end')} /></Field>
          <Field label="Failure strategy">
            <select value={f.failure_strategy} onChange={set('failure_strategy')}><option>END</option><option>CONTINUE</option></select>
          </Field>
          <Field label="Priority">
            <select value={f.priority} onChange={set('priority')}>{PRIORITIES.map((p) => <option key={p}>{p}</option>)}</select>
          </Field>
          <Field label="Worker group (optional)"><input value={f.worker_group || ''} onInput={set('worker_group')} /></Field>
          <Field label="Misfire">
            <select value={f.misfire} onChange={set('misfire')}><option>FIRE_ONCE</option><option>SKIP</option><option>FIRE_ALL</option></select>
          </Field>
          <label class="inline"><input type="checkbox" checked={f.enabled} onChange={set('enabled')} /> enabled</label>
        </div>
        <Preview expr={f.cron} timezone={f.timezone} />
      </div>
      <ErrorBox error={error} prefix="not saved" />
      <div class="buttons">
        <button type="submit" class="primary">{f.id ? 'Save' : 'Create'}</button>
        <button type="button" onClick={() => onDone(true)}>Cancel</button>
      </div>
    </form>
  );
}

function Backfills({ names }) {
  const [data, setData] = useState(null);
  const [open, setOpen] = useState(null);
  const [error, setError] = useState(null);
  const kick = usePoll(
    async (signal) => {
      const d = await get('/ui/backfills', { limit: 20 }, signal);
      setData(d);
      if (open) setOpen(await get(`/backfills/${open.id}`, null, signal));
      return d;
    },
    (d) => (d.items.some((b) => b.state === 'RUNNING') ? 3000 : 15000),
    [open && open.id],
  );
  if (!data) return <Loading what="backfills" />;
  if (!data.items.length) return <p class="muted">No backfills. Start one from a workflow's Run dialog.</p>;
  return (
    <>
      <ErrorBox error={error} />
      <div class="table-wrap"><table class="list" aria-label="backfills">
        <thead><tr><th>Id</th><th>Workflow</th><th>Mode</th><th>State</th><th>Progress</th><th><span class="sr">Actions</span></th></tr></thead>
        <tbody>
          {data.items.map((b) => (
            <tr key={b.id} data-backfill={b.id}>
              <td>{b.id}</td>
              <td>{b.workflow_name || names[b.workflow_id] || b.workflow_id}</td>
              <td>{b.mode}{b.mode === 'PARALLEL' ? ` ×${b.parallelism}` : ''}</td>
              <td>{b.state}</td>
              <td>
                <progress max={b.total || 1} value={b.finished} aria-label={`backfill ${b.id}: ${b.finished} of ${b.total} dates finished`} />{' '}
                {b.finished}/{b.total} finished{b.failed ? `, ${b.failed} failed` : ''} · {b.submitted} submitted
              </td>
              <td class="row-actions">
                <button type="button" onClick={() => get(`/backfills/${b.id}`).then(setOpen).catch(setError)}>Dates</button>
                {b.state === 'RUNNING' ? <button type="button" class="danger" onClick={() => post(`/backfills/${b.id}/stop`).then(kick).catch(setError)}>Stop</button> : null}
              </td>
            </tr>
          ))}
        </tbody>
      </table></div>
      {open ? (
        <div class="card">
          <h3>Backfill {open.id}: {open.finished} of {open.total} finished</h3>
          <ul class="plain columns">
            {open.runs.map((r) => (
              <li key={r.seq}>
                {time(r.schedule_time)}{' '}
                {r.instance_id ? <Link href={`/ui/instances/${r.instance_id}`}>#{r.instance_id}</Link> : <span class="muted">waiting</span>}{' '}
                {r.state ? <StateBadge state={r.state} /> : null}
              </li>
            ))}
          </ul>
          <button type="button" onClick={() => setOpen(null)}>Close</button>
        </div>
      ) : null}
    </>
  );
}

export function Schedules() {
  const q = useQuery();
  const [list, setList] = useState(null);
  const [workflows, setWorkflows] = useState([]);
  const [editing, setEditing] = useState(null);
  const [error, setError] = useState(null);
  const load = () => get('/schedules', { limit: 200 }).then(setList).catch(setError);
  useEffect(() => {
    load();
    get('/workflows', { limit: 1000 }).then((d) => setWorkflows(d.items)).catch(setError);
    const preset = q.get('new');
    if (preset) setEditing({ ...EMPTY, workflow_id: preset });
  }, []);
  const names = Object.fromEntries(workflows.map((w) => [w.id, w.name]));
  const toggle = (s) => put(`/schedules/${s.id}`, { enabled: !s.enabled }).then(load).catch(setError);
  const remove = (s) => {
    if (window.confirm(`Delete schedule ${s.id} (${s.cron})?`)) del(`/schedules/${s.id}`).then(load).catch(setError);
  };
  return (
    <section>
      <div class="page-head">
        <h1>Schedules</h1>
        <button type="button" class="primary" onClick={() => { setEditing({ ...EMPTY }); setQuery({ new: '' }); }}>New schedule</button>
      </div>
      <ErrorBox error={error} />
      {editing ? (
        <ScheduleForm key={editing.id || 'new'} workflows={workflows} initial={editing}
          onDone={() => { setEditing(null); load(); }} />
      ) : null}
      {!list ? <Loading what="schedules" /> : list.items.length === 0 ? <p class="muted">No schedules.</p> : (
        <div class="table-wrap">
          <table class="list" aria-label="schedules">
            <thead><tr><th>Id</th><th>Workflow</th><th>Cron</th><th>Time zone</th><th>Next fire</th><th>Enabled</th><th><span class="sr">Actions</span></th></tr></thead>
            <tbody>
              {list.items.map((s) => (
                <tr key={s.id} data-schedule={s.id}>
                  <td>{s.id}</td>
                  <td><Link href={`/ui/workflows/${s.workflow_id}`}>{names[s.workflow_id] || s.workflow_id}</Link></td>
                  <td><code>{s.cron}</code> <span class="muted small">{s.kind}</span></td>
                  <td>{s.timezone}</td>
                  <td title={s.next_fire_time || ''}>{s.enabled ? time(s.next_fire_time) : '—'}</td>
                  <td>{s.enabled ? 'yes' : 'no'}</td>
                  <td class="row-actions">
                    <button type="button" onClick={() => toggle(s)}>{s.enabled ? 'Disable' : 'Enable'}</button>
                    <button type="button" onClick={() => setEditing({ ...EMPTY, ...s, workflow_id: String(s.workflow_id), start: isoToLocal(s.start), end: isoToLocal(s.end), worker_group: s.worker_group || '' })}>Edit</button>
                    <button type="button" class="danger" onClick={() => remove(s)}>Delete</button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <h2>Backfills</h2>
      <Backfills names={names} />
    </section>
  );
}
