// Live data without flooding the API: one request at a time, at least a second apart, none
// while the tab is hidden (it resumes when the tab is shown again).
import { useEffect, useRef } from 'preact/hooks';

export const MIN_GAP_MS = 1000;

/**
 * Calls load(signal) now and again after each answer: delay(result) gives the next gap in ms
 * (null stops). Returns a function that asks for an early refresh (still >= MIN_GAP_MS apart).
 */
export function usePoll(load, delay, deps) {
  const kick = useRef(() => {});
  useEffect(() => {
    let timer = null;
    let ctrl = null;
    let busy = false;
    let stopped = false;
    let lastStart = 0;
    let wanted = false; // the tab was hidden when a poll was due

    const schedule = (ms) => {
      clearTimeout(timer);
      timer = setTimeout(tick, Math.max(ms, lastStart + MIN_GAP_MS - Date.now(), 0));
    };
    async function tick() {
      timer = null;
      if (stopped || busy) return;
      if (document.hidden) {
        wanted = true;
        return;
      }
      busy = true;
      lastStart = Date.now();
      ctrl = new AbortController();
      let next = null;
      try {
        next = delay(await load(ctrl.signal));
      } catch (exc) {
        if (exc && exc.name === 'AbortError') return;
        next = 5000;
      } finally {
        busy = false;
      }
      if (!stopped && next !== null && next !== undefined) schedule(Math.max(next, MIN_GAP_MS));
    }
    const onVisible = () => {
      if (!document.hidden && wanted && !stopped) {
        wanted = false;
        schedule(0);
      }
    };
    kick.current = () => {
      if (!stopped && !busy) schedule(0);
    };
    document.addEventListener('visibilitychange', onVisible);
    tick();
    return () => {
      stopped = true;
      clearTimeout(timer);
      if (ctrl) ctrl.abort();
      document.removeEventListener('visibilitychange', onVisible);
    };
  }, deps);
  return () => kick.current();
}
