// Cluster: masters (the cron leader marked), workers with groups, capacity, load, epoch and log
// server, queue depth per group, leases, and task groups with their slots in use.
import { useState } from 'preact/hooks';
import { get } from '../api.js';
import { time } from '../fmt.js';
import { usePoll } from '../poll.js';
import { ErrorBox, Loading } from '../components/bits.jsx';

function Meter({ used, of, label }) {
  if (of === null || of === undefined) return <span>{used ?? '?'}</span>;
  return (
    <span class="meter-wrap">
      <meter min="0" max={of || 1} value={used || 0} high={Math.max(1, of * 0.9)} aria-label={label} /> {used ?? 0}/{of}
    </span>
  );
}

export function Cluster() {
  const [c, setC] = useState(null);
  const [groups, setGroups] = useState(null);
  const [error, setError] = useState(null);
  usePoll(
    async (signal) => {
      try {
        const [cl, tg] = await Promise.all([
          get('/cluster', null, signal),
          get('/task-groups', { limit: 200 }, signal).catch(() => null),
        ]);
        setC(cl);
        setGroups(tg);
        setError(null);
      } catch (exc) {
        if (exc.name !== 'AbortError') setError(exc);
        throw exc;
      }
    },
    () => 5000,
    [],
  );
  if (!c) return error ? <ErrorBox error={error} /> : <Loading what="the cluster" />;
  const leader = c.cron_leader || '';
  const queues = Object.entries(c.queues || {});
  return (
    <section>
      <div class="page-head"><h1>Cluster</h1></div>
      <ErrorBox error={error} prefix="refresh failed" />
      <p>
        {c.masters.length} master{c.masters.length === 1 ? '' : 's'} · {c.workers.length} worker{c.workers.length === 1 ? '' : 's'} · {c.leases} task{c.leases === 1 ? '' : 's'} leased · cron leader: <strong>{leader || 'none'}</strong>
      </p>
      <h2>Masters</h2>
      {c.masters.length === 0 ? <p class="error">No master is registered: nothing will be scheduled.</p> : (
        <div class="table-wrap">
          <table class="list" aria-label="masters">
            <thead><tr><th>Id</th><th>Host</th><th>PID</th><th>Epoch</th><th>Started</th><th>Cron</th></tr></thead>
            <tbody>
              {c.masters.map((m) => (
                <tr key={m.id} data-master={m.id}>
                  <td class="mono small">{m.id}</td><td>{m.host}</td><td>{m.pid}</td><td>{m.epoch}</td>
                  <td>{typeof m.start_time === 'string' ? time(m.start_time) : m.start_time}</td>
                  <td>{leader && leader.includes(m.id) ? 'leader' : ''}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <h2>Workers</h2>
      {c.workers.length === 0 ? <p class="error">No worker is registered: tasks will wait in their queues.</p> : (
        <div class="table-wrap">
          <table class="list" aria-label="workers">
            <thead><tr><th>Id</th><th>Host</th><th>Groups</th><th>Load / capacity</th><th>Epoch</th><th>Log server</th></tr></thead>
            <tbody>
              {c.workers.map((w) => (
                <tr key={w.id} data-worker={w.id}>
                  <td class="mono small">{w.id}</td><td>{w.host}</td><td>{w.groups.join(', ')}</td>
                  <td><Meter used={w.load} of={w.capacity} label={`worker ${w.id} load`} /></td>
                  <td>{w.epoch}</td><td class="mono small">{(w.data && w.data.log_server) || '—'}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <h2>Queues</h2>
      {queues.length === 0 ? <p class="muted">No queue has been used yet.</p> : (
        <div class="table-wrap"><table class="list" aria-label="queues">
          <thead><tr><th>Worker group</th><th>Queued tasks</th><th>Live workers</th></tr></thead>
          <tbody>
            {queues.map(([g, n]) => (
              <tr key={g} data-queue={g}>
                <td>{g}</td><td>{n}</td><td>{c.workers.filter((w) => w.groups.includes(g)).length}</td>
              </tr>
            ))}
          </tbody>
        </table></div>
      )}
      <h2>Task groups</h2>
      {!groups ? <p class="muted">Task groups could not be read.</p> : groups.items.length === 0 ? <p class="muted">No task groups.</p> : (
        <div class="table-wrap"><table class="list" aria-label="task groups">
          <thead><tr><th>Name</th><th>Slots in use</th><th>Description</th></tr></thead>
          <tbody>
            {groups.items.map((g) => (
              <tr key={g.name} data-task-group={g.name}>
                <td>{g.name}</td><td><Meter used={g.in_use} of={g.capacity} label={`task group ${g.name} slots`} /></td><td>{g.description}</td>
              </tr>
            ))}
          </tbody>
        </table></div>
      )}
    </section>
  );
}
