// One workflow: its DAG drawn from the spec (any version), the tasks, every version with a diff
// between two of them, its recent runs and schedules, and the Run dialog.
import { useEffect, useMemo, useState } from 'preact/hooks';
import { get } from '../api.js';
import { canonical, diffLines } from '../diff.js';
import { span, time } from '../fmt.js';
import { Link, setQuery, useQuery } from '../router.js';
import { Dag } from '../components/Dag.jsx';
import { ErrorBox, Loading, StateBadge } from '../components/bits.jsx';
import { RunDialog } from '../components/RunDialog.jsx';

const SPEC_ONLY = ['id', 'version', 'latest_version', 'created_at', 'updated_at', 'version_created_at'];

function specOf(w) {
  const out = { ...w };
  SPEC_ONLY.forEach((k) => delete out[k]);
  return out;
}

function Diff({ id, from, to }) {
  const [pair, setPair] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    setPair(null);
    Promise.all([get(`/workflows/${id}/versions/${from}`), get(`/workflows/${id}/versions/${to}`)])
      .then(([a, b]) => setPair([a, b]))
      .catch(setError);
  }, [id, from, to]);
  const rows = useMemo(
    () => (pair ? diffLines(canonical(specOf(pair[0])), canonical(specOf(pair[1]))) : null),
    [pair],
  );
  if (error) return <ErrorBox error={error} />;
  if (!pair) return <Loading what="versions" />;
  if (!rows) return <p class="notice">These specs are too long to compare here.</p>;
  const changed = rows.filter((r) => r.op !== ' ').length;
  return (
    <div>
      <p>
        v{from} → v{to}: {changed ? `${changed} changed line${changed === 1 ? '' : 's'}` : 'no difference'}
      </p>
      <pre class="diff" aria-label={`diff of version ${from} and ${to}`}>
        {rows.map((r, i) => (
          <div key={i} class={r.op === '+' ? 'add' : r.op === '-' ? 'del' : 'same'}>
            <span class="sr">{r.op === '+' ? 'added: ' : r.op === '-' ? 'removed: ' : ''}</span>
            {`${r.op} ${r.text}`}
          </div>
        ))}
      </pre>
    </div>
  );
}

export function WorkflowDetail({ id }) {
  const q = useQuery();
  const [latest, setLatest] = useState(null);
  const [shown, setShown] = useState(null);
  const [versions, setVersions] = useState([]);
  const [recent, setRecent] = useState(null);
  const [schedules, setSchedules] = useState([]);
  const [error, setError] = useState(null);
  const [run, setRun] = useState(null);
  const v = Number(q.get('v') || 0);
  const diff = q.get('diff');

  useEffect(() => {
    get(`/workflows/${id}`).then(setLatest).catch(setError);
    get(`/workflows/${id}/versions`, { limit: 100 }).then((d) => setVersions(d.items)).catch(setError);
    get('/ui/instances', { workflow_id: id, limit: 10 }).then(setRecent).catch(setError);
    get('/schedules', { workflow_id: id }).then((d) => setSchedules(d.items)).catch(() => {});
  }, [id]);

  useEffect(() => {
    if (!latest) return;
    if (!v || v === latest.version) setShown(latest);
    else get(`/workflows/${id}/versions/${v}`).then(setShown).catch(setError);
  }, [latest, v]);

  if (error) return <ErrorBox error={error} />;
  if (!latest || !shown) return <Loading what="the workflow" />;
  const [dFrom, dTo] = (diff || '').split('..').map(Number);
  return (
    <section>
      <div class="page-head">
        <h1>
          {latest.name} <span class="muted">v{shown.version}{shown.version !== latest.version ? ` (latest v${latest.version})` : ''}</span>
        </h1>
        <button type="button" class="primary" data-action="run" onClick={() => setRun({})}>Run…</button>
      </div>
      {latest.description ? <p>{latest.description}</p> : null}
      <p class="muted small">
        priority {shown.priority} · time zone {shown.timezone} · {shown.tasks.length} tasks · version created {time(shown.version_created_at)}
      </p>
      <h2>Graph</h2>
      <Dag tasks={shown.tasks} label={`DAG of ${latest.name} v${shown.version}`}
        onSelect={(name) => setRun({ start_nodes: [name] })} />
      <p class="muted small">Choose a node (click or Enter) to run from it.</p>
      <h2>Tasks</h2>
      <div class="table-wrap">
        <table class="list" aria-label="tasks">
          <thead><tr><th>Name</th><th>Type</th><th>Depends on</th><th>Worker group</th><th>Retries</th><th>Timeout</th></tr></thead>
          <tbody>
            {shown.tasks.map((t) => (
              <tr key={t.name}>
                <td>{t.name}</td><td>{t.type}</td><td>{(t.depends_on || []).join(', ')}</td>
                <td>{t.worker_group || 'default'}</td><td>{t.retries || 0}</td>
                <td>{t.timeout_s ? `${t.timeout_s} s` : ''}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {Object.keys(shown.params || {}).length ? (
        <>
          <h2>Parameters</h2>
          <dl class="kv">{Object.entries(shown.params).map(([k, val]) => [<dt key={`k${k}`}>{k}</dt>, <dd key={`v${k}`}>{String(val)}</dd>])}</dl>
        </>
      ) : null}
      <h2>Versions</h2>
      <div class="table-wrap">
        <table class="list" aria-label="versions">
          <thead><tr><th>Version</th><th>Tasks</th><th>Created</th><th><span class="sr">Actions</span></th></tr></thead>
          <tbody>
            {versions.map((ver) => (
              <tr key={ver.version} aria-current={ver.version === shown.version ? 'true' : undefined}>
                <td>v{ver.version}</td><td>{ver.tasks}</td><td>{time(ver.created_at)}</td>
                <td class="row-actions">
                  <button type="button" onClick={() => setQuery({ v: ver.version })}>Show</button>
                  {ver.version > 1 ? (
                    <button type="button" data-action="diff" onClick={() => setQuery({ diff: `${ver.version - 1}..${ver.version}` })}>
                      Diff with v{ver.version - 1}
                    </button>
                  ) : null}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {dFrom && dTo ? <Diff id={id} from={dFrom} to={dTo} /> : null}
      <h2>Recent runs</h2>
      {!recent ? <Loading what="runs" /> : recent.items.length === 0 ? <p class="muted">Never run.</p> : (
        <ul class="plain">
          {recent.items.map((i) => (
            <li key={i.id}>
              <Link href={`/ui/instances/${i.id}`}>#{i.id}</Link> <StateBadge state={i.state} /> {time(i.submit_time)} {span(i.start_time, i.end_time)}
            </li>
          ))}
          <li><Link href={`/ui/instances?workflow_id=${id}`}>All runs of {latest.name}</Link></li>
        </ul>
      )}
      <h2>Schedules</h2>
      {schedules.length === 0 ? <p class="muted">None. <Link href={`/ui/schedules?new=${id}`}>Add a schedule</Link></p> : (
        <ul class="plain">
          {schedules.map((s) => (
            <li key={s.id}><code>{s.cron}</code> {s.timezone} · {s.enabled ? `next ${time(s.next_fire_time)}` : 'disabled'}</li>
          ))}
          <li><Link href="/ui/schedules">Manage schedules</Link></li>
        </ul>
      )}
      {run ? <RunDialog workflow={latest} preset={run} onClose={() => setRun(null)} /> : null}
    </section>
  );
}
