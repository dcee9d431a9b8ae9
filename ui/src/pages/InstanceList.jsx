// Instances: filters (workflow, state, submitted between) in the URL, pages fetched by id
// cursor from /ui/instances (an index range per page, never an offset scan), a capped count.
import { useEffect, useState } from 'preact/hooks';
import { get } from '../api.js';
import { isoToLocal, localToIso, span, time } from '../fmt.js';
import { Link, setQuery, useQuery } from '../router.js';
import { usePoll } from '../poll.js';
import { WORKFLOW_STATES } from '../states.js';
import { ErrorBox, Field, Loading, StateBadge } from '../components/bits.jsx';

const PAGE = 50;

export function InstanceList() {
  const q = useQuery();
  const filters = {
    workflow_id: q.get('workflow_id') || '',
    state: q.get('state') || '',
    since: q.get('since') || '',
    until: q.get('until') || '',
  };
  const before = q.get('before') || '';
  const [workflows, setWorkflows] = useState([]);
  const [data, setData] = useState(null);
  const [error, setError] = useState(null);
  const [stack, setStack] = useState([]);
  const [draft, setDraft] = useState(filters);
  const [elapsed, setElapsed] = useState(null);
  const key = JSON.stringify(filters);

  useEffect(() => {
    get('/workflows', { limit: 1000 }).then((d) => setWorkflows(d.items)).catch(() => {});
  }, []);
  useEffect(() => {
    setDraft(filters);
  }, [key]);

  usePoll(
    async (signal) => {
      const t0 = performance.now();
      try {
        const d = await get('/ui/instances', { ...filters, before_id: before, limit: PAGE }, signal);
        setElapsed(performance.now() - t0);
        setData(d);
        setError(null);
        return d;
      } catch (exc) {
        if (exc.name !== 'AbortError') setError(exc);
        throw exc;
      }
    },
    () => (before ? null : 5000), // the newest page stays live; older pages do not change much
    [key, before],
  );

  const apply = (e) => {
    e.preventDefault();
    setStack([]);
    setQuery({ ...draft, before: '' });
  };
  const older = () => {
    setStack((s) => [...s, before]);
    setQuery({ before: data.next_before_id }, { replace: false });
  };
  const newer = () => {
    const s = stack.slice();
    const prev = s.pop();
    setStack(s);
    setQuery({ before: prev || '' }, { replace: false });
  };
  const pageNo = stack.length;

  return (
    <section>
      <div class="page-head"><h1>Instances</h1></div>
      <form class="filters" onSubmit={apply} aria-label="filter instances">
        <Field label="Workflow">
          <select value={draft.workflow_id} onChange={(e) => setDraft({ ...draft, workflow_id: e.currentTarget.value })}>
            <option value="">any</option>
            {workflows.map((w) => <option key={w.id} value={String(w.id)}>{w.name}</option>)}
          </select>
        </Field>
        <Field label="State">
          <select value={draft.state} onChange={(e) => setDraft({ ...draft, state: e.currentTarget.value })}>
            <option value="">any</option>
            <option value="SUBMITTED,RUNNING,READY_PAUSE,READY_STOP,SERIAL_WAIT,FAILOVER">active</option>
            <option value="FAILURE,STOP">failed or stopped</option>
            {WORKFLOW_STATES.map((s) => <option key={s} value={s}>{s}</option>)}
          </select>
        </Field>
        <Field label="Submitted from">
          <input type="datetime-local" value={isoToLocal(draft.since)}
            onInput={(e) => setDraft({ ...draft, since: localToIso(e.currentTarget.value) })} />
        </Field>
        <Field label="until">
          <input type="datetime-local" value={isoToLocal(draft.until)}
            onInput={(e) => setDraft({ ...draft, until: localToIso(e.currentTarget.value) })} />
        </Field>
        <div class="buttons">
          <button type="submit" class="primary">Filter</button>
          <button type="button" onClick={() => { setStack([]); setQuery({ workflow_id: '', state: '', since: '', until: '', before: '' }); }}>Clear</button>
        </div>
      </form>
      <ErrorBox error={error} />
      {!data ? <Loading what="instances" /> : (
        <>
          <p class="muted small" aria-live="polite">
            {data.items.length ? `${pageNo * PAGE + 1}–${pageNo * PAGE + data.items.length}` : '0'} of{' '}
            {data.total_exact ? data.total : `${data.total}+`} · answered in {elapsed ? Math.round(elapsed) : '?'} ms
          </p>
          {data.items.length === 0 ? <p class="muted">No instance matches.</p> : (
            <div class="table-wrap">
              <table class="list" aria-label="instances">
                <thead><tr><th>Id</th><th>Workflow</th><th>State</th><th>Submitted</th><th>Duration</th><th>Kind</th><th>Owner</th></tr></thead>
                <tbody>
                  {data.items.map((i) => (
                    <tr key={i.id} data-instance={i.id}>
                      <td><Link href={`/ui/instances/${i.id}`}>#{i.id}</Link></td>
                      <td>{i.workflow_name ? <Link href={`/ui/workflows/${i.workflow_id}`}>{i.workflow_name}</Link> : i.workflow_id} <span class="muted">v{i.version}</span></td>
                      <td><StateBadge state={i.state} /></td>
                      <td title={i.submit_time}>{time(i.submit_time)}</td>
                      <td>{span(i.start_time, i.end_time)}</td>
                      <td class="small">{i.command_type}{i.schedule_id ? ` (schedule ${i.schedule_id})` : ''}</td>
                      <td class="small">{i.owner || ''}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
          <div class="pager">
            <button type="button" disabled={!before} onClick={newer}>Newer</button>
            <button type="button" disabled={!data.next_before_id} onClick={older}>Older</button>
          </div>
        </>
      )}
    </section>
  );
}
