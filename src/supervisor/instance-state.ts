import { TandemError } from '../errors.js'
import type { InstanceState } from '../status.js'

/** The lifecycle of one instance: see InstanceState in ../status.ts. */
export type { InstanceState }

/** Every legal move. Anything else is a bug, rejected loudly. */
export const TRANSITIONS: Readonly<Record<InstanceState, readonly InstanceState[]>> = {
  stopped: ['starting'],
  starting: ['ready', 'stopping', 'exited'],
  // ready -> starting: a handover (a new process starts while the old one serves on).
  ready: ['stopping', 'exited', 'starting'],
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
