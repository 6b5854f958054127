import type { InstanceState } from '../status.js'

/** One instance as the status line counts it. */
export interface InstanceView {
  /** The instance id (`api#1`): the line names the wanted ones that are not ready. */
  id: string
  state: InstanceState
  /** Whether it should run now (not stopped by hand, not a cold standby's, not shutting down). */
  wanted: boolean
  /**
   * Whether it ran to a clean end that its restart policy does not restart (a one-shot job):
   * done, so neither ready nor missing.
   */
  completed?: boolean
  /**
   * Whether it will not become ready by itself and is missing: failed (given up), or waiting on
   * a dependency that cannot come up.
   */
  gaveUp?: boolean
}

/** Where the supervisor is in its life, as systemd sees it. */
export type ServicePhase = 'starting' | 'running' | 'reloading' | 'stopping'

/** How a state reads in the line; `stopped` while wanted means waiting for a dependency. */
const NAMES: Partial<Record<InstanceState, string>> = { stopped: 'waiting', backoff: 'backing off' }

/** At most this many ids are named in the line, then `and N more`: it must stay one line. */
export const NAMED_MAX = 3

/** The order of the counts after "N/M ready": the most hopeful first. */
const ORDER: readonly InstanceState[] = [
  'starting',
  'stopped',
  'stopping',
  'exited',
  'backoff',
  'failed',
]

/** The phase as the line starts with it; plain running says nothing. */
const PHASES: Record<ServicePhase, string> = {
  starting: 'starting: ',
  running: '',
  reloading: 'reloading the config: ',
  stopping: 'stopping: ',
}

/** `a#0, b#1, c#0 and 2 more`. */
const names = (ids: readonly string[]): string =>
  ids.length > NAMED_MAX
    ? `${ids.slice(0, NAMED_MAX).join(', ')} and ${ids.length - NAMED_MAX} more`
    : ids.join(', ')

/**
 * The one-line state that `systemctl status` shows (STATUS=): `3/4 ready, 1 starting (not
 * ready: api#1)`, with the phase before it when it is not plain running and the cluster role
 * after it. Completed one-shot instances are counted apart (`1 completed`), not as missing.
 * The ids of the wanted instances that are not ready are named once the start is over: while
 * it runs, every instance is expected to be not ready yet.
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
    return `${PHASES.stopping}${running} of ${instances.length} instances still running${suffix}`
  }
  const wanted = instances.filter((i) => i.wanted && !i.completed)
  const completed = instances.filter((i) => i.wanted && i.completed).length
  const counts = ORDER.flatMap((state) => {
    const n = wanted.filter((i) => i.state === state).length
    return n ? [`${n} ${NAMES[state] ?? state}`] : []
  })
  const ready = wanted.filter((i) => i.state === 'ready').length
  const parts = [
    ...(wanted.length ? [`${ready}/${wanted.length} ready`, ...counts] : []),
    ...(completed ? [`${completed} completed`] : []),
  ]
  const missing = wanted.filter((i) => i.state !== 'ready').map((i) => i.id)
  const line = parts.length ? parts.join(', ') : 'no instance to run'
  const named = phase !== 'starting' && missing.length ? ` (not ready: ${names(missing)})` : ''
  return `${PHASES[phase]}${line}${named}${suffix}`
}
