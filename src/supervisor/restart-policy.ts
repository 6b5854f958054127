import type { InstanceSpec } from '../config/plan.js'

/**
 * How a run ended:
 * - exited: the process ended on its own (code or signal);
 * - stopped: we stopped it on purpose (operator, shutdown): never a failure;
 * - not-ready: it did not become ready within its readiness timeout, so we stopped it;
 * - port-in-use: its port was held by another process, so it was not spawned;
 * - spawn-error: the program could not be started (ENOENT, EACCES);
 * - memory: we stopped it because its RSS stayed above maxMemoryMb;
 * - unhealthy: we stopped it because it failed its liveness check while running;
 * - oom: the kernel's OOM killer killed it inside its cgroup (cgroup.memoryMax).
 */
export type EndReason =
  | 'exited'
  | 'stopped'
  | 'not-ready'
  | 'port-in-use'
  | 'spawn-error'
  | 'memory'
  | 'unhealthy'
  | 'oom'

/** Why a run ended: one record drives the restart decision, the log line and `status`. */
export interface ExitRecord {
  reason: EndReason
  code: number | null
  signal: string | null
  /** It ignored the stop signal and its group was killed after stop.timeoutMs. */
  killedAfterTimeout: boolean
  /** Monotonic ms the process ran (0 when it never ran). */
  uptimeMs: number
  /** Human detail: the spawn error, the port holder, the readiness probe's last error. */
  detail?: string
}

/** A failure is any end we did not ask for, except a clean `exit 0`. */
export const isFailure = (exit: ExitRecord): boolean =>
  exit.reason === 'stopped'
    ? false
    : exit.reason === 'exited'
      ? exit.code !== 0 || exit.signal !== null
      : true

/** Whether the restart policy starts the instance again after this end. */
export const shouldRestart = (policy: InstanceSpec['restart'], exit: ExitRecord): boolean => {
  if (exit.reason === 'stopped' || exit.reason === 'spawn-error') return false
  if (exit.reason === 'port-in-use') return true
  return policy === 'always' || (policy === 'on-failure' && isFailure(exit))
}

/**
 * Delay before the next start, for the `failures`-th consecutive failure (1-based).
 * The first restart after a healthy run is immediate: a server that crashed once should be back
 * as fast as possible. From the second on: initialMs * factor^(n-2), capped at maxMs, then
 * spread by +-jitter so that instances failing together do not restart in lockstep.
 * `random` is in [0, 1).
 */
export const restartDelay = (
  backoff: InstanceSpec['backoff'],
  failures: number,
  random: number,
): number => {
  if (failures <= 1) return 0
  const raw = Math.min(backoff.maxMs, backoff.initialMs * backoff.factor ** (failures - 2))
  const spread = raw * backoff.jitter * (2 * random - 1)
  return Math.max(0, Math.round(Math.min(backoff.maxMs, raw + spread)))
}

/** The least wait before trying a held port again, doubling per conflict up to backoff.maxMs. */
export const PORT_RETRY_MIN_MS = 100

/**
 * Delay before trying again after the `conflicts`-th consecutive port conflict (1-based). Unlike
 * a crash, a held port is not freed by trying at once: the retries follow the backoff but never
 * faster than PORT_RETRY_MIN_MS doubling, also when backoff.initialMs is 0, so that a port held
 * for minutes costs a log line every backoff.maxMs rather than a busy loop.
 */
export const portRetryDelay = (
  backoff: InstanceSpec['backoff'],
  conflicts: number,
  random: number,
): number =>
  Math.max(
    restartDelay(backoff, conflicts + 1, random),
    Math.min(backoff.maxMs, PORT_RETRY_MIN_MS * 2 ** (Math.max(1, conflicts) - 1)),
  )

/**
 * Counts consecutive failures: a run that lasted resetAfterMs or more was healthy and starts a
 * new series.
 */
export const nextFailureCount = (
  backoff: InstanceSpec['backoff'],
  previous: number,
  uptimeMs: number,
): number => (uptimeMs >= backoff.resetAfterMs ? 1 : previous + 1)

/**
 * Crash-loop window: the monotonic times of recent failures, pruned to windowMs. A loop is
 * maxExits failures inside the window, whatever the age of the process: a server that dies
 * every 20 s loops as surely as one that dies at once.
 */
export const recordFailure = (
  crashLoop: InstanceSpec['crashLoop'],
  times: readonly number[],
  now: number,
): { times: number[]; looping: boolean } => {
  const kept = [...times, now].filter((t) => now - t < crashLoop.windowMs)
  return { times: kept, looping: kept.length >= crashLoop.maxExits }
}
