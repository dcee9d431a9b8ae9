// The workflow's DAG drawn with dagre's layered layout as SVG: each node carries data-task and
// data-state, is reachable by Tab and moved between with the arrow keys. The layout is computed
// once per spec (the states only recolour it); very large graphs are gated.
import dagre from '@dagrejs/dagre';
import { useMemo, useRef } from 'preact/hooks';
import { look, NOT_STARTED } from '../states.js';
import { Icon } from './bits.jsx';

export const MAX_NODES = 1500;
const W = 168;
const H = 46;

export function layout(tasks) {
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: 'LR', nodesep: 18, ranksep: 56, marginx: 12, marginy: 12 });
  g.setDefaultEdgeLabel(() => ({}));
  const names = new Set(tasks.map((t) => t.name));
  for (const t of tasks) g.setNode(t.name, { width: W, height: H });
  const edges = [];
  for (const t of tasks) {
    for (const up of t.depends_on || []) {
      if (names.has(up)) {
        g.setEdge(up, t.name);
        edges.push([up, t.name]);
      }
    }
  }
  dagre.layout(g);
  const nodes = tasks.map((t) => ({ task: t, ...g.node(t.name) }));
  const lines = edges.map(([a, b]) => ({ from: a, to: b, points: g.edge(a, b).points }));
  const { width, height } = g.graph();
  return { nodes, lines, width: Math.max(width, W + 24), height: Math.max(height, H + 24) };
}

function pathOf(points) {
  return points.map((p, i) => `${i ? 'L' : 'M'}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(' ');
}

function clip(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** The node nearest to `from` in the arrow's direction. */
function neighbour(nodes, from, key) {
  const dir = { ArrowRight: [1, 0], ArrowLeft: [-1, 0], ArrowDown: [0, 1], ArrowUp: [0, -1] }[key];
  let best = null;
  let bestScore = Infinity;
  for (const n of nodes) {
    if (n === from) continue;
    const dx = n.x - from.x;
    const dy = n.y - from.y;
    const along = dx * dir[0] + dy * dir[1];
    if (along <= 0) continue;
    const across = Math.abs(dx * dir[1]) + Math.abs(dy * dir[0]);
    const score = along + 2 * across;
    if (score < bestScore) {
      bestScore = score;
      best = n;
    }
  }
  return best;
}

/**
 * tasks: the spec's tasks; status(name) -> {state, note} (note: attempts, why it waits);
 * onSelect(name) when a node is clicked or chosen with Enter.
 */
export function Dag({ tasks, status, selected, onSelect, label }) {
  const big = tasks.length > MAX_NODES;
  const graph = useMemo(() => (big ? null : layout(tasks)), [tasks, big]);
  const ref = useRef(null);
  if (big) {
    return (
      <p class="notice">
        This workflow has {tasks.length} tasks: too many to draw (the limit is {MAX_NODES}). The
        task list below shows every one of them.
      </p>
    );
  }
  const focusNode = (name) => {
    const el = ref.current && ref.current.querySelector(`[data-task="${CSS.escape(name)}"]`);
    if (el) el.focus();
  };
  const onKey = (e, n) => {
    if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      onSelect && onSelect(n.task.name);
    } else if (e.key.startsWith('Arrow')) {
      const next = neighbour(graph.nodes, n, e.key);
      if (next) {
        e.preventDefault();
        focusNode(next.task.name);
      }
    }
  };
  return (
    <div class="dag-wrap" ref={ref}>
      <svg class="dag" width={graph.width} height={graph.height}
        viewBox={`0 0 ${graph.width} ${graph.height}`} role="group" aria-label={label || 'DAG'}>
        <defs>
          <marker id="dk-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7"
            markerHeight="7" orient="auto-start-reverse">
            <path d="M0,0 L10,5 L0,10 z" class="arrowhead" />
          </marker>
        </defs>
        {graph.lines.map((l) => (
          <path key={`${l.from}>${l.to}`} class="edge" d={pathOf(l.points)}
            marker-end="url(#dk-arrow)" data-edge={`${l.from}>${l.to}`} />
        ))}
        {graph.nodes.map((n) => {
          const st = (status && status(n.task.name)) || { state: NOT_STARTED };
          const l = look(st.state);
          const x = n.x - W / 2;
          const y = n.y - H / 2;
          const name = n.task.name;
          return (
            <g key={name} class={`node tone-${l.tone}${selected === name ? ' selected' : ''}`}
              data-task={name} data-state={st.state} transform={`translate(${x},${y})`}
              tabindex="0" role="button"
              aria-label={`task ${name} (${n.task.type}): ${st.state}${st.note ? `, ${st.note}` : ''}`}
              aria-pressed={selected === name ? 'true' : 'false'}
              onClick={() => onSelect && onSelect(name)} onKeyDown={(e) => onKey(e, n)}>
              <title>{`${name} · ${n.task.type} · ${st.state}${st.note ? `\n${st.note}` : ''}`}</title>
              <rect width={W} height={H} rx="7" />
              <Icon name={l.icon} x={8} y={8} size={14} />
              <text x="28" y="19" class="node-name">{clip(name, 19)}</text>
              <text x="10" y="37" class="node-sub">
                {clip(`${st.state}${st.attempts > 1 ? ` · try ${st.attempts}` : ''} · ${n.task.type}`, 28)}
              </text>
            </g>
          );
        })}
      </svg>
    </div>
  );
}
