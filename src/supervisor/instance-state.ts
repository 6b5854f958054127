import { TandemError } from '../errors.js'

/**
 * The lifecycle of one instance.
 * - stopped:  not running and not wanted running now (initial state, operator stop, clean exit).
 * - starting: port checked, process spawned, waiting for readiness.
 * - ready:    readiness passed: serving.
 * - stopping: stop signal sent to its process group; SIGKILL follows after stop.timeoutMs.
 * - exited:   the process ended (or the start failed); the restart policy decides what follows.
 * - backoff:  waiting for the restart delay.
 * - failed:   given up (crash loop, spawn error, restart "never"); an operator restart clears it.
 */
export type InstanceState =
  'stopped' | 'starting' | 'ready' | 'stopping' | 'exited' | 'backoff' | 'failed'

/** Every legal move. Anything else is a bug, rejected loudly. */
export const TRANSITIONS: Readonly<Record<InstanceState, readonly InstanceState[]>> = {
  stopped: ['starting'],
  starting: ['ready', 'stopping', 'exited'],
  ready: ['stopping', 'exited'],
  stopping: ['stopped', 'exited'],
  exited: ['backoff', 'failed', 'stopped'],
  backoff: ['starting', 'stopped'],
  failed: ['starting', 'stopped'],
}

/** States in which the instance has (or is getting) a live process. */
export const RUNNING_STATES: readonly InstanceState[] = ['starting', 'ready', 'stopping']

/** Checks a move against the table; throws EUSAGE-free internal error on an illegal one. */
export const checkTransition = (id: string, from: InstanceState, to: InstanceState): void => {
  if (!TRANSITIONS[from].includes(to)) {
    throw new TandemError('ECONTROL', `illegal transition of ${id}: ${from} -> ${to}`)
  }
}
