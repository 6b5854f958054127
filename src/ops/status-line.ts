import type { InstanceState } from '../supervisor/instance-state.js'

/** One instance as the status line counts it. */
export interface InstanceView {
  state: InstanceState
  /** Whether it should run now (not stopped by hand, not a cold standby's, not shutting down). */
  wanted: boolean
  /**
   * Whether it will not become ready by itself: failed (given up), or stopped for good (a clean
   * exit, or waiting on a dependency that cannot come up).
   */
  gaveUp?: boolean
}

/** Where the supervisor is in its life, as systemd sees it. */
export type ServicePhase = 'starting' | 'running' | 'reloading' | 'stopping'

/** How a state reads in the line; `stopped` while wanted means waiting for a dependency. */
const NAMES: Partial<Record<InstanceState, string>> = { stopped: 'waiting', backoff: 'backing off' }

/** The order of the counts after "N/M ready": the most hopeful first. */
const ORDER: readonly InstanceState[] = [
  'starting',
  'stopped',
  'stopping',
  'exited',
  'backoff',
  'failed',
]

/**
 * The one-line state that `systemctl status` shows (STATUS=): `3/4 ready, 1 starting`, with the
 * phase before it when it is not plain running and the cluster role after it.
 */
export const statusLine = (
  phase: ServicePhase,
  instances: readonly InstanceView[],
  role?: string,
): string => {
  const suffix = role ? `; ${role}` : ''
  if (phase === 'stopping') {
    const running = instances.filter((i) =>
      ['starting', 'ready', 'stopping'].includes(i.state),
    ).length
    return `stopping: ${running} of ${instances.length} instances still running${suffix}`
  }
  const wanted = instances.filter((i) => i.wanted)
  const counts = ORDER.flatMap((state) => {
    const n = wanted.filter((i) => i.state === state).length
    return n ? [`${n} ${NAMES[state] ?? state}`] : []
  })
  const ready = wanted.filter((i) => i.state === 'ready').length
  const line = wanted.length
    ? [`${ready}/${wanted.length} ready`, ...counts].join(', ')
    : 'no instance to run'
  return `${phase === 'running' ? '' : `${phase}: `}${line}${suffix}`
}
