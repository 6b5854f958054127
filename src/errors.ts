/** Every ErrorCode, in the order of its documentation. */
export const ERROR_CODES = [
  'ECONFIG',
  'EUSAGE',
  'ENOSUPERVISOR',
  'ELOCKED',
  'ETARGET',
  'EPORTINUSE',
  'ECRASHLOOP',
  'ESPAWN',
  'ENOTREADY',
  'ECONTROL',
  'EBUSY',
  'EROLLOUT',
  'ECLUSTER',
  'ELEASELOST',
  'ESLOW',
] as const

/**
 * Stable error codes. Tests and callers match on `code`, never on class identity. The README's
 * table of error codes lists the same, with the exit code of each (a test keeps them together).
 * - ECONFIG: the configuration is invalid (exit 78).
 * - EUSAGE: a command-line argument or control request is invalid (exit 2).
 * - ENOSUPERVISOR: no supervisor answers on the state dir's control socket.
 * - ELOCKED: another supervisor already holds the state dir.
 * - ETARGET: a target names no known component or instance (exit 2).
 * - EPORTINUSE: an instance's port is held by a process that is not ours.
 * - ECRASHLOOP: an instance exited too often inside its crash-loop window.
 * - ESPAWN: a child program could not be started (ENOENT, EACCES, ...).
 * - ENOTREADY: an instance did not become ready within its readiness timeout.
 * - ECONTROL: the control channel failed: a listener (control socket, HTTP endpoints, load
 *   balancer agent) cannot listen, the supervisor cannot be reached or its answer is not JSON or
 *   ends early, or a request failed inside the supervisor (an internal error, such as an illegal
 *   move of an instance's state).
 * - EBUSY: a rollout (upgrade, reload) is already running.
 * - EROLLOUT: a rollout failed; what it had changed was rolled back.
 * - ECLUSTER: the shared directory of `ha` cannot be used, or belongs to another cluster or
 *   other timings; or a cluster action (switchover) is not possible on this node.
 * - ELEASELOST: a lease this node held (a roll slot) lapsed while it acted under it.
 * - ESLOW: a reader of a stream (`tandem events -f`) fell too far behind and was cut off.
 */
export type ErrorCode = (typeof ERROR_CODES)[number]

export class TandemError extends Error {
  readonly code: ErrorCode
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
    this.name = 'TandemError'
  }
}

/** One problem found in a config file, located by its JSON path (`components.gateway.port`). */
export interface ConfigProblem {
  path: string
  message: string
}

export class ConfigError extends TandemError {
  readonly file: string
  readonly problems: ConfigProblem[]
  constructor(file: string, problems: ConfigProblem[], options?: { cause?: unknown }) {
    const lines = problems.map((p) => `  ${p.path || '(root)'}: ${p.message}`)
    super('ECONFIG', `invalid config ${file}:\n${lines.join('\n')}`, options)
    this.file = file
    this.problems = problems
    this.name = 'ConfigError'
  }
}

/** True when `err` is an Error carrying the given `code` (ours or Node's). */
export const hasCode = (err: unknown, code: string): boolean =>
  typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code

export const errorMessage = (err: unknown): string =>
  err instanceof Error ? err.message : String(err)
