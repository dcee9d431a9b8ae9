// One attempt's log: read in windows of lines, then followed as one streaming request while the
// attempt runs (paused while the tab is hidden, resumed from the last line); download saves all.
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, download, raw } from '../api.js';
import { TASK_TERMINAL } from '../states.js';
import { ErrorBox } from './bits.jsx';

const WINDOW = 1000;
const KEEP = 5000; // lines kept on screen; the download has them all

export function LogViewer({ attempt }) {
  const [lines, setLines] = useState([]);
  const [dropped, setDropped] = useState(0);
  const [state, setState] = useState({ complete: false, available: true, streaming: false });
  const [error, setError] = useState(null);
  const [follow, setFollow] = useState(!TASK_TERMINAL.has(attempt.state));
  const box = useRef(null);
  const count = useRef(0);
  const running = !TASK_TERMINAL.has(attempt.state);

  const add = (more) => {
    if (!more.length) return;
    count.current += more.length;
    setLines((old) => {
      const all = old.concat(more);
      if (all.length <= KEEP) return all;
      setDropped((d) => d + all.length - KEEP);
      return all.slice(all.length - KEEP);
    });
  };

  useEffect(() => {
    setLines([]);
    setDropped(0);
    setError(null);
    count.current = 0;
    setState({ complete: false, available: true, streaming: false });
  }, [attempt.id]);

  useEffect(() => {
    let stopped = false;
    let ctrl = null;
    let retry = null;
    const path = `/task-instances/${attempt.id}/log`;

    async function windows() {
      for (;;) {
        const w = await api(path, { params: { skip: count.current, limit: WINDOW }, signal: ctrl.signal });
        add(w.lines);
        setState((s) => ({ ...s, complete: w.complete, available: w.available !== false }));
        if (w.complete || w.lines.length < WINDOW) return w.complete;
      }
    }
    async function stream() {
      setState((s) => ({ ...s, streaming: true }));
      const res = await raw(path, {
        params: { follow: true, skip: count.current },
        signal: ctrl.signal,
        accept: 'text/plain',
      });
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      let rest = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        rest += dec.decode(value, { stream: true });
        const parts = rest.split('\n');
        rest = parts.pop();
        add(parts);
      }
      if (rest) add([rest]);
      setState((s) => ({ ...s, streaming: false }));
    }
    async function run() {
      if (stopped || document.hidden) return;
      ctrl = new AbortController();
      try {
        const complete = await windows();
        if (complete || !follow || stopped) return;
        await stream();
        if (!stopped) retry = setTimeout(run, 1000); // check completeness, follow again if not
      } catch (exc) {
        if (exc && exc.name === 'AbortError') return;
        setError(exc);
        setState((s) => ({ ...s, streaming: false }));
        if (!stopped && follow) retry = setTimeout(run, 5000);
      }
    }
    const onVisible = () => {
      if (document.hidden) {
        if (ctrl) ctrl.abort();
        clearTimeout(retry);
        setState((s) => ({ ...s, streaming: false }));
      } else {
        run();
      }
    };
    document.addEventListener('visibilitychange', onVisible);
    run();
    return () => {
      stopped = true;
      clearTimeout(retry);
      if (ctrl) ctrl.abort();
      document.removeEventListener('visibilitychange', onVisible);
    };
  }, [attempt.id, follow, running]);

  useEffect(() => {
    if (follow && box.current) box.current.scrollTop = box.current.scrollHeight;
  }, [lines, follow]);

  const name = `task-${attempt.id}-${attempt.name}-attempt-${attempt.attempt}.log`;
  return (
    <section class="log" aria-label={`log of ${attempt.name} attempt ${attempt.attempt}`}>
      <div class="log-bar">
        <strong>
          Log · {attempt.name} #{attempt.attempt}
        </strong>
        <span class="muted" aria-live="polite">
          {count.current} line{count.current === 1 ? '' : 's'}
          {state.streaming ? ' · following' : state.complete ? ' · complete' : ''}
        </span>
        <label class="inline">
          <input type="checkbox" checked={follow} disabled={!running && state.complete}
            onChange={(e) => setFollow(e.currentTarget.checked)} /> follow
        </label>
        <button type="button" onClick={() => download(`/task-instances/${attempt.id}/log/download`, name).catch(setError)}>
          Download
        </button>
      </div>
      <ErrorBox error={error} prefix="log" />
      {!state.available ? <p class="muted">The log is not available yet.</p> : null}
      {dropped ? <p class="muted">{dropped} earlier lines are not shown; Download has them all.</p> : null}
      <pre class="log-lines" ref={box} tabindex="0" data-log-for={attempt.id}>
        {lines.join('\n')}
      </pre>
    </section>
  );
}
