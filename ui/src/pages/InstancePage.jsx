// One workflow instance, live: the DAG coloured by state, the Gantt chart of every attempt, the
// task list with why each task waits, the selected task's parameters, outputs and log, and the
// actions its state allows (refused ones stay visible with the API's reason).
import { useEffect, useMemo, useState } from 'preact/hooks';
import { get, post } from '../api.js';
import { span, time } from '../fmt.js';
import { Link, setQuery, useQuery } from '../router.js';
import { usePoll } from '../poll.js';
import { NOT_STARTED, TASK_SUCCESSFUL, TASK_TERMINAL, WORKFLOW_TERMINAL } from '../states.js';
import { ActionButton, ErrorBox, Loading, StateBadge } from '../components/bits.jsx';
import { Dag } from '../components/Dag.jsx';
import { Gantt } from '../components/Gantt.jsx';
import { LogViewer } from '../components/LogViewer.jsx';
import { RunDialog } from '../components/RunDialog.jsx';

const ACTIONS = [
  ['stop', 'Stop', true],
  ['pause', 'Pause'],
  ['resume', 'Resume'],
  ['rerun', 'Rerun'],
  ['recover-failed', 'Recover failed'],
];

export function whyWaiting(t) {
  if (t.waiting_reason && t.waiting_reason.message) return t.waiting_reason.message;
  if (t.waiting) return t.waiting;
  return t.reason || '';
}

/** Latest attempt per DAG task name (FANOUT sub-executions excluded) and attempt counts. */
function latestByName(tasks) {
  const out = new Map();
  for (const t of tasks) {
    if (t.parent_id) continue;
    const cur = out.get(t.name);
    if (!cur || t.attempt > cur.latest.attempt || (t.attempt === cur.latest.attempt && t.id > cur.latest.id)) {
      out.set(t.name, { latest: t, attempts: (cur ? cur.attempts : 0) + 1 });
    } else cur.attempts += 1;
  }
  return out;
}

function Kv({ data }) {
  const entries = Object.entries(data || {});
  if (!entries.length) return <p class="muted small">none</p>;
  return (
    <dl class="kv">
      {entries.map(([k, v]) => [
        <dt key={`k${k}`}>{k}</dt>,
        <dd key={`v${k}`}>{typeof v === 'object' ? JSON.stringify(v) : String(v)}</dd>,
      ])}
    </dl>
  );
}

function TaskPanel({ attempt, attempts, taskActions, onAct, onRefused, onRunFrom, onPick }) {
  const [detail, setDetail] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    setError(null);
    get(`/task-instances/${attempt.id}`).then(setDetail).catch(setError);
  }, [attempt.id, attempt.state]);
  const acts = taskActions[attempt.id] || {};
  const params = detail && detail.spec ? detail.spec.params || detail.spec.local_params : null;
  return (
    <section class="panel" aria-label={`task ${attempt.name}`} data-panel-task={attempt.name}>
      <div class="page-head">
        <h2>{attempt.name} <span class="muted">{attempt.type}</span></h2>
        <StateBadge state={attempt.state} />
      </div>
      {whyWaiting(attempt) ? <p class="why" data-why={attempt.name}>{whyWaiting(attempt)}</p> : null}
      <div class="buttons">
        <ActionButton name="kill" label="Kill" danger allow={acts.kill} onRefused={onRefused}
          onRun={() => onAct(`/task-instances/${attempt.id}/kill`, `kill ${attempt.name}`)} />
        <ActionButton name="force-success" label="Force success" allow={acts['force-success']} onRefused={onRefused}
          onRun={() => onAct(`/task-instances/${attempt.id}/force-success`, `force success of ${attempt.name}`)} />
        <button type="button" data-action="run-from" onClick={() => onRunFrom(attempt.name)}>Run from this node…</button>
        {attempt.child_instance_id ? (
          <Link class="button" href={`/ui/instances/${attempt.child_instance_id}`}>Open sub-process #{attempt.child_instance_id}</Link>
        ) : null}
      </div>
      {attempts.length > 1 ? (
        <p class="small">
          Attempts:{' '}
          {attempts.map((a) => (
            <button key={a.id} type="button" class={`chip${a.id === attempt.id ? ' on' : ''}`}
              aria-pressed={a.id === attempt.id ? 'true' : 'false'} onClick={() => onPick(a)}>
              #{a.attempt} {a.state}
            </button>
          ))}
        </p>
      ) : null}
      <ErrorBox error={error} />
      <div class="grid2">
        <div>
          <h3>Parameters</h3>
          {detail ? <Kv data={params} /> : <Loading what="parameters" />}
        </div>
        <div>
          <h3>Outputs</h3>
          {detail ? <Kv data={detail.output} /> : <Loading what="outputs" />}
        </div>
      </div>
      <p class="muted small">
        host {attempt.host || '—'} · group {attempt.worker_group}{attempt.task_group ? ` · task group ${attempt.task_group}` : ''} · exit {attempt.exit_code ?? '—'} · {span(attempt.start_time, attempt.end_time)}
      </p>
      {detail && detail.sub_executions ? (
        <>
          <h3>Sub-executions ({detail.sub_executions.length})</h3>
          <div class="table-wrap"><table class="list" aria-label="sub-executions">
            <thead><tr><th>Target</th><th>State</th><th>Worker</th><th>Exit</th><th>Duration</th><th><span class="sr">Log</span></th></tr></thead>
            <tbody>
              {detail.sub_executions.map((s) => (
                <tr key={s.id} data-sub={s.host}>
                  <td>{s.host}</td><td><StateBadge state={s.state} /></td><td>{s.worker_host || ''}</td>
                  <td>{s.exit_code ?? ''}</td><td>{span(s.start_time, s.end_time)}</td>
                  <td><button type="button" onClick={() => onPick({ ...attempt, id: s.id, state: s.state, name: `${attempt.name}@${s.host}` })}>Open</button></td>
                </tr>
              ))}
            </tbody>
          </table></div>
        </>
      ) : null}
      <LogViewer attempt={attempt} />
    </section>
  );
}

export function InstancePage({ id }) {
  const q = useQuery();
  const [view, setView] = useState(null);
  const [spec, setSpec] = useState(null);
  const [error, setError] = useState(null);
  const [message, setMessage] = useState(null);
  const [runFrom, setRunFrom] = useState(null);
  const [parent, setParent] = useState(null);
  const [now, setNow] = useState(Date.now());
  const selectedName = q.get('task');
  const selectedAttempt = Number(q.get('attempt') || 0);

  const kick = usePoll(
    async (signal) => {
      try {
        const v = await get(`/ui/instances/${id}`, null, signal);
        setView(v);
        setNow(Date.now());
        setError(null);
        return v;
      } catch (exc) {
        if (exc.name !== 'AbortError') setError(exc);
        throw exc;
      }
    },
    (v) => (!WORKFLOW_TERMINAL.has(v.instance.state) || v.instance.pending_command ? 1000 : 10000),
    [id],
  );

  const inst = view && view.instance;
  const versionKey = inst ? `${inst.workflow_id}/${inst.version}` : null;
  useEffect(() => {
    if (!versionKey) return;
    get(`/workflows/${inst.workflow_id}/versions/${inst.version}`).then(setSpec).catch(setError);
  }, [versionKey]);
  useEffect(() => {
    if (!inst || !inst.parent_task_instance_id) return;
    get(`/task-instances/${inst.parent_task_instance_id}`).then(setParent).catch(() => {});
  }, [inst && inst.parent_task_instance_id]);

  const latest = useMemo(() => (inst ? latestByName(inst.tasks) : new Map()), [inst]);
  const active = inst && !WORKFLOW_TERMINAL.has(inst.state);
  const status = (name) => {
    const got = latest.get(name);
    if (got) {
      const t = got.latest;
      return { state: t.state, attempts: got.attempts, note: TASK_TERMINAL.has(t.state) ? t.reason || '' : whyWaiting(t) };
    }
    const told = (inst.not_started || []).find((t) => t.name === name);
    if (told && told.waiting_reason) {
      return { state: NOT_STARTED, attempts: 0, note: told.waiting_reason.message };
    }
    const task = spec && spec.tasks.find((t) => t.name === name);
    const blocking = ((task && task.depends_on) || []).filter((u) => {
      const up = latest.get(u);
      return !up || !TASK_SUCCESSFUL.has(up.latest.state);
    });
    const note = !active ? 'did not run' : blocking.length ? `waits for upstream: ${blocking.join(', ')}` : 'about to be queued';
    return { state: NOT_STARTED, attempts: 0, note };
  };

  const act = async (path, what) => {
    setMessage(null);
    try {
      const r = await post(path);
      setMessage({ ok: true, text: `${what}: ${r.action} (${r.state})` });
    } catch (exc) {
      setMessage({ ok: false, text: exc.message });
    }
    kick();
  };
  const refused = (reason) => setMessage({ ok: false, text: reason });

  if (error && !view) return <ErrorBox error={error} />;
  if (!view) return <Loading what={`instance ${id}`} />;

  const selected =
    (selectedAttempt && inst.tasks.find((t) => t.id === selectedAttempt)) ||
    (selectedName && latest.get(selectedName) && latest.get(selectedName).latest) ||
    null;
  const pick = (t) => setQuery({ task: t.name.split('@')[0], attempt: t.id });
  const attemptsOf = selected ? inst.tasks.filter((t) => t.name === selected.name && !t.parent_id) : [];
  const subsByParent = new Map();
  for (const t of inst.tasks) if (t.parent_id) subsByParent.set(t.parent_id, [...(subsByParent.get(t.parent_id) || []), t]);
  const topLevel = inst.tasks.filter((t) => !t.parent_id);
  const ordered = topLevel.flatMap((t) => [t, ...(subsByParent.get(t.id) || [])]);

  return (
    <section class="instance" data-instance={inst.id} data-state={inst.state}>
      <div class="page-head">
        <h1>
          Instance #{inst.id}{' '}
          <Link href={`/ui/workflows/${inst.workflow_id}`}>{inst.workflow_name || `workflow ${inst.workflow_id}`}</Link>{' '}
          <span class="muted">v{inst.version}</span>
        </h1>
        <StateBadge state={inst.state} />
      </div>
      <p class="muted small">
        {inst.command_type} · priority {inst.priority} · submitted {time(inst.submit_time)}
        {inst.start_time ? ` · ran ${span(inst.start_time, inst.end_time)}` : ''}
        {inst.owner ? ` · owner ${inst.owner} (epoch ${inst.owner_epoch})` : ''}
        {inst.run_count > 1 ? ` · run ${inst.run_count}` : ''}
        {inst.schedule_time ? ` · scheduled for ${time(inst.schedule_time)}` : ''}
      </p>
      {parent ? (
        <p class="small">Sub-process of <Link href={`/ui/instances/${parent.workflow_instance_id}`}>instance #{parent.workflow_instance_id}</Link> (task {parent.name})</p>
      ) : null}
      {inst.reason ? <p class={active ? 'why' : 'reason'} data-why="instance">{inst.reason}</p> : null}
      {inst.pending_command ? (
        <p class="notice" data-pending={inst.pending_command.action}>
          The {inst.pending_command.action} request (command {inst.pending_command.id}) waits for a
          master to take it{inst.pending_command.created_at ? ` (asked ${time(inst.pending_command.created_at)})` : ''}.
        </p>
      ) : null}
      <div class="buttons actions" role="toolbar" aria-label="instance actions">
        {ACTIONS.map(([name, label, danger]) => (
          <ActionButton key={name} name={name} label={label} danger={danger} allow={view.actions[name]}
            onRefused={refused} onRun={() => act(`/instances/${inst.id}/${name}`, label)} />
        ))}
      </div>
      {message ? <p class={message.ok ? 'ok-msg' : 'error'} role="status" data-message>{message.text}</p> : null}
      {error ? <ErrorBox error={error} prefix="refresh failed" /> : null}
      <div class="two-col">
        <div>
          <h2>Graph</h2>
          {spec ? (
            <Dag tasks={spec.tasks} status={status} selected={selected && selected.name}
              label={`DAG of instance ${inst.id}`}
              onSelect={(name) => setQuery({ task: name, attempt: '' })} />
          ) : <Loading what="the graph" />}
          <h2>Timeline</h2>
          <Gantt attempts={inst.tasks} now={now} selectedId={selected && selected.id} onSelect={pick} />
        </div>
        <div>
          {selected ? (
            <TaskPanel attempt={selected} attempts={attemptsOf} taskActions={view.task_actions}
              onAct={act} onRefused={refused} onPick={pick}
              onRunFrom={(name) => setRunFrom({ start_nodes: [name], params: inst.params })} />
          ) : <p class="muted panel">Choose a task in the graph, the timeline or the list to see its parameters, outputs and log.</p>}
        </div>
      </div>
      <h2>Tasks</h2>
      <div class="table-wrap">
        <table class="list" aria-label="task attempts">
          <thead>
            <tr><th>Task</th><th>Try</th><th>State</th><th>Host</th><th>Started</th><th>Duration</th><th>Exit</th><th>Why / reason</th><th><span class="sr">Open</span></th></tr>
          </thead>
          <tbody>
            {ordered.map((t) => (
              <tr key={t.id} data-attempt={t.id} data-row-task={t.name} class={t.parent_id ? 'sub' : ''}
                aria-current={selected && selected.id === t.id ? 'true' : undefined}>
                <td>{t.parent_id ? <span class="muted">↳ {t.target || t.host}</span> : t.name} <span class="muted small">{t.type}</span></td>
                <td>{t.attempt}</td>
                <td><StateBadge state={t.state} /></td>
                <td class="small">{t.host || ''}</td>
                <td class="small" title={t.start_time}>{time(t.start_time)}</td>
                <td class="small">{span(t.start_time, t.end_time)}</td>
                <td>{t.exit_code ?? ''}</td>
                <td class="small why-cell">{whyWaiting(t)}</td>
                <td class="row-actions">
                  <button type="button" data-action="open-task" onClick={() => pick(t)}>Log</button>
                  {t.child_instance_id ? <Link href={`/ui/instances/${t.child_instance_id}`}>child #{t.child_instance_id}</Link> : null}
                </td>
              </tr>
            ))}
            {spec ? spec.tasks.filter((t) => !latest.has(t.name)).map((t) => (
              <tr key={`n-${t.name}`} data-row-task={t.name}>
                <td>{t.name} <span class="muted small">{t.type}</span></td><td></td>
                <td><StateBadge state={NOT_STARTED} /></td><td colSpan="4"></td>
                <td class="small why-cell">{status(t.name).note}</td><td></td>
              </tr>
            )) : null}
          </tbody>
        </table>
      </div>
      <h2>Parameters</h2>
      <Kv data={inst.params} />
      {Object.keys(inst.run_options || {}).length ? (<><h3>Run options</h3><Kv data={inst.run_options} /></>) : null}
      {runFrom && spec ? (
        <RunDialog workflow={{ ...spec, id: inst.workflow_id }} preset={runFrom} onClose={() => setRunFrom(null)} />
      ) : null}
    </section>
  );
}
