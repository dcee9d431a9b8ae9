// Every attempt as a bar on one time axis, one row per task (FANOUT sub-executions get a row
// per target): retries and failover attempts show as separate bars in their task's row.
import { look } from '../states.js';
import { duration, time } from '../fmt.js';

const ROW = 24;
const LABEL = 170;
const WIDTH = 900;
const MAX_ROWS = 400;

function rowKey(t) {
  return t.parent_id ? `${t.name} @ ${t.target || t.host || t.id}` : t.name;
}

export function Gantt({ attempts, now, selectedId, onSelect }) {
  const started = attempts.filter((t) => t.start_time);
  if (!started.length) return <p class="muted">No attempt has started yet.</p>;
  const t0 = Math.min(...started.map((t) => Date.parse(t.start_time)));
  const t1 = Math.max(
    ...started.map((t) => (t.end_time ? Date.parse(t.end_time) : now)),
    t0 + 1000,
  );
  const order = [];
  const rows = new Map();
  for (const t of started) {
    const k = rowKey(t);
    if (!rows.has(k)) {
      rows.set(k, []);
      order.push(k);
    }
    rows.get(k).push(t);
  }
  const shown = order.slice(0, MAX_ROWS);
  const plot = WIDTH - LABEL - 10;
  const xOf = (ms) => LABEL + ((ms - t0) / (t1 - t0)) * plot;
  const height = shown.length * ROW + 34;
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => t0 + f * (t1 - t0));
  return (
    <div class="gantt-wrap">
      <svg class="gantt" viewBox={`0 0 ${WIDTH} ${height}`} width="100%" role="img"
        aria-label={`Gantt chart of ${started.length} attempts over ${duration(t1 - t0)}`}>
        {ticks.map((ms, i) => (
          <g key={i}>
            <line class="tick" x1={xOf(ms)} x2={xOf(ms)} y1="0" y2={height - 20} />
            <text class="tick-label" x={xOf(ms)} y={height - 6}
              text-anchor={i === 0 ? 'start' : i === 4 ? 'end' : 'middle'}>
              {i === 0 ? time(new Date(ms).toISOString()) : `+${duration(ms - t0)}`}
            </text>
          </g>
        ))}
        {shown.map((k, r) => (
          <g key={k} transform={`translate(0,${r * ROW + 4})`}>
            <text class="row-label" x="4" y="15">{k.length > 24 ? `${k.slice(0, 23)}…` : k}</text>
            {rows.get(k).map((t) => {
              const s = Date.parse(t.start_time);
              const e = t.end_time ? Date.parse(t.end_time) : now;
              const x = xOf(s);
              const w = Math.max(3, xOf(e) - x);
              const l = look(t.state);
              return (
                <g key={t.id} class={`bar tone-${l.tone}${selectedId === t.id ? ' selected' : ''}`}
                  data-attempt={t.id} data-bar-task={t.name} data-state={t.state}
                  onClick={() => onSelect && onSelect(t)}>
                  <title>
                    {`${t.name} attempt ${t.attempt}: ${t.state}\n${time(t.start_time)} – ${
                      t.end_time ? time(t.end_time) : 'running'
                    } (${duration(e - s)})${t.host ? `\non ${t.host}` : ''}`}
                  </title>
                  <rect x={x} y="2" width={w} height={ROW - 8} rx="3" />
                  {w > 26 ? (
                    <text class="bar-label" x={x + 4} y="15">{`#${t.attempt}`}</text>
                  ) : null}
                </g>
              );
            })}
          </g>
        ))}
      </svg>
      {order.length > MAX_ROWS ? (
        <p class="muted">Showing the first {MAX_ROWS} of {order.length} rows.</p>
      ) : null}
    </div>
  );
}
