// Workflows: search by name, the state of each one's last runs as dots (click one to open
// that instance), and a Run button.
import { useEffect, useState } from 'preact/hooks';
import { get } from '../api.js';
import { look } from '../states.js';
import { time } from '../fmt.js';
import { Link, setQuery, useQuery } from '../router.js';
import { usePoll } from '../poll.js';
import { ErrorBox, Icon, Loading } from '../components/bits.jsx';
import { RunDialog } from '../components/RunDialog.jsx';

const PAGE = 50;

export function RunDots({ runs }) {
  if (!runs.length) return <span class="muted">never run</span>;
  return (
    <span class="dots">
      {runs.slice().reverse().map((r) => {
        const l = look(r.state);
        return (
          <Link key={r.id} href={`/ui/instances/${r.id}`} class={`dot tone-${l.tone}`}
            data-state={r.state} aria-label={`instance ${r.id}: ${r.state}`}
            title={`#${r.id} ${r.state} · ${time(r.submit_time)}`}>
            <Icon name={l.icon} size={10} />
          </Link>
        );
      })}
    </span>
  );
}

export function WorkflowList() {
  const q = useQuery();
  const name = q.get('q') || '';
  const offset = Number(q.get('offset') || 0);
  const [text, setText] = useState(name);
  const [data, setData] = useState(null);
  const [error, setError] = useState(null);
  const [running, setRunning] = useState(null);

  useEffect(() => {
    const t = setTimeout(() => {
      if (text !== name) setQuery({ q: text, offset: '' });
    }, 300);
    return () => clearTimeout(t);
  }, [text]);

  usePoll(
    async (signal) => {
      try {
        const d = await get('/ui/workflows', { name, limit: PAGE, offset, runs: 10 }, signal);
        setData(d);
        setError(null);
      } catch (exc) {
        if (exc.name !== 'AbortError') setError(exc);
        throw exc;
      }
    },
    () => 10000,
    [name, offset],
  );

  const openRun = async (id) => {
    try {
      setRunning(await get(`/workflows/${id}`));
    } catch (exc) {
      setError(exc);
    }
  };

  return (
    <section>
      <div class="page-head">
        <h1>Workflows</h1>
        <label class="search">
          <span class="sr">Search workflows by name</span>
          <input type="search" placeholder="Search by name" value={text}
            onInput={(e) => setText(e.currentTarget.value)} />
        </label>
      </div>
      <ErrorBox error={error} />
      {!data ? <Loading what="workflows" /> : data.items.length === 0 ? (
        <p class="muted">{name ? `No workflow name contains “${name}”.` : 'No workflows yet: create one with POST /api/v1/workflows.'}</p>
      ) : (
        <div class="table-wrap">
          <table class="list" aria-label="workflows">
            <thead>
              <tr><th>Name</th><th>Version</th><th>Last runs (oldest → newest)</th><th>Updated</th><th><span class="sr">Actions</span></th></tr>
            </thead>
            <tbody>
              {data.items.map((w) => (
                <tr key={w.id} data-workflow={w.name}>
                  <td>
                    <Link href={`/ui/workflows/${w.id}`}>{w.name}</Link>
                    {w.description ? <div class="muted small">{w.description}</div> : null}
                  </td>
                  <td>v{w.version}</td>
                  <td><RunDots runs={w.last_runs} /></td>
                  <td title={w.updated_at}>{time(w.updated_at)}</td>
                  <td><button type="button" data-action="run" onClick={() => openRun(w.id)}>Run…</button></td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {data && data.total > PAGE ? (
        <div class="pager">
          <button type="button" disabled={offset === 0} onClick={() => setQuery({ offset: Math.max(0, offset - PAGE) || '' })}>Previous</button>
          <span>{offset + 1}–{Math.min(offset + PAGE, data.total)} of {data.total}</span>
          <button type="button" disabled={offset + PAGE >= data.total} onClick={() => setQuery({ offset: offset + PAGE })}>Next</button>
        </div>
      ) : null}
      {running ? <RunDialog workflow={running} onClose={() => setRunning(null)} /> : null}
    </section>
  );
}
