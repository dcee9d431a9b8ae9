// How each state looks: a colour class, an icon shape and its name, so that state is never
// told by colour alone. The state sets follow core/states.py.

export const NOT_STARTED = 'NOT_STARTED';

const LOOK = {
  SUCCESS: ['ok', 'check'],
  FORCED_SUCCESS: ['ok', 'check'],
  FAILURE: ['bad', 'cross'],
  KILL: ['bad', 'stop'],
  NEED_FAULT_TOLERANCE: ['warn', 'warn'],
  FAILOVER: ['warn', 'warn'],
  RUNNING: ['run', 'play'],
  DISPATCHED: ['queued', 'arrow'],
  SUBMITTED: ['queued', 'clock'],
  DELAY_EXECUTION: ['queued', 'clock'],
  SERIAL_WAIT: ['queued', 'clock'],
  READY_PAUSE: ['pause', 'pause'],
  PAUSE: ['pause', 'pause'],
  READY_STOP: ['stopped', 'stop'],
  STOP: ['stopped', 'stop'],
  SKIPPED: ['stopped', 'skip'],
  NOT_STARTED: ['idle', 'dot'],
};

export function look(state) {
  const [tone, icon] = LOOK[state] || ['idle', 'dot'];
  return { tone, icon, label: (state || NOT_STARTED).replace(/_/g, ' ').toLowerCase() };
}

export const WORKFLOW_STATES = [
  'SUBMITTED', 'RUNNING', 'READY_PAUSE', 'PAUSE', 'READY_STOP', 'STOP', 'FAILURE', 'SUCCESS',
  'SERIAL_WAIT', 'FAILOVER',
];
export const WORKFLOW_TERMINAL = new Set(['STOP', 'FAILURE', 'SUCCESS']);
export const TASK_TERMINAL = new Set([
  'SUCCESS', 'FAILURE', 'KILL', 'PAUSE', 'NEED_FAULT_TOLERANCE', 'FORCED_SUCCESS', 'SKIPPED',
]);
export const TASK_SUCCESSFUL = new Set(['SUCCESS', 'FORCED_SUCCESS']);

export const PRIORITIES = ['HIGHEST', 'HIGH', 'MEDIUM', 'LOW', 'LOWEST'];
