import { isatty } from 'node:tty'
import { prettyFactory } from 'pino-pretty'
import { planInstances, type Plan } from '../config/plan.js'
import { controlRequest } from '../control/client.js'
import { TandemError } from '../errors.js'
import { LEVELS, type LevelName } from '../logging/child-record.js'
import { readLogs, type LogFilter } from '../logging/read-logs.js'
import { PRETTY_OPTIONS } from '../logging/unified-log.js'
import { resolveTargets } from '../supervisor/targets.js'

/** How many records `tandem logs` prints without -n (and without --since): a screenful or two. */
export const DEFAULT_LINES = 50

/** The options of `tandem logs`, as commander hands them over (validated here). */
export interface LogsOptions {
  follow?: boolean
  lines?: string
  since?: string
  level?: string
  json?: boolean
  reopen?: boolean
}

export interface LogsIo {
  out: (text: string) => void
  err: (text: string) => void
  /** Colors in the human format (default: stdout is a terminal and NO_COLOR is not set). */
  color?: boolean
  /** Ends -f (default: SIGINT or SIGTERM). */
  signal?: AbortSignal
  now?: () => number
}

const usage = (message: string) => new TandemError('EUSAGE', message)

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/** `--since`: an age (`30s`, `10m`, `2h`, `1d`) or an ISO date (a date alone is local midnight). */
export const parseSince = (text: string, now: number): number => {
  const age = /^(\d+(?:\.\d+)?)([smhd])$/.exec(text.trim())
  if (age) return now - Number(age[1]) * UNIT_MS[age[2]!]!
  const iso = /^\d{4}-\d{2}-\d{2}$/.test(text) ? `${text}T00:00` : text
  const t = /^\d{4}-\d{2}-\d{2}/.test(iso) ? Date.parse(iso) : NaN
  if (Number.isNaN(t))
    throw usage(
      `--since ${JSON.stringify(text)}: expected an age like 30s, 10m, 2h, 1d or an ISO date like 2025-01-31T08:00`,
    )
  return t
}

/** `-n`: a count, or `all`; absent: DEFAULT_LINES, or every record with --since. */
export const parseLines = (text: string | undefined, since: boolean): number | undefined => {
  if (text === undefined) return since ? undefined : DEFAULT_LINES
  if (text === 'all') return undefined
  if (!/^\d+$/.test(text))
    throw usage(`-n ${JSON.stringify(text)}: expected a number of records (0 or more) or all`)
  return Number(text)
}

export const parseLevel = (text: string): number => {
  const name = text.toLowerCase()
  const level = Object.hasOwn(LEVELS, name) ? LEVELS[name as LevelName] : undefined
  if (level === undefined)
    throw usage(
      `--level ${JSON.stringify(text)}: expected one of ${Object.keys(LEVELS).join(', ')}`,
    )
  return level
}

/** Targets as a filter; `all` (or none) shows every record, the supervisor's own included. */
export const targetFilter = (plan: Plan, targets: string[]): LogFilter['targets'] => {
  if (targets.length === 0 || targets.includes('all')) return undefined
  resolveTargets(targets, planInstances(plan)) // ETARGET for an unknown component or index
  return targets.map((t) => {
    const [component, index] = t.split('#') as [string, string | undefined]
    return index === undefined ? { component } : { component, instance: Number(index) }
  })
}

/** Calls `fn` on the first SIGINT or SIGTERM; returns its undo. */
const onStopSignal = (fn: () => void): (() => void) => {
  const signals = ['SIGINT', 'SIGTERM'] as const
  signals.forEach((s) => process.on(s, fn))
  return () => signals.forEach((s) => process.off(s, fn))
}

/**
 * `tandem logs`: prints the unified log of a config's node (rotated files included, with or
 * without a running supervisor), filtered, then with -f follows it until SIGINT or SIGTERM.
 * With --reopen, asks the running supervisor to reopen its log files instead.
 */
export const runLogs = async (
  plan: Plan,
  targets: string[],
  o: LogsOptions,
  io: LogsIo,
): Promise<number> => {
  if (o.reopen) {
    if (targets.length || o.follow || o.lines !== undefined || o.since || o.level)
      throw usage('--reopen takes no target and no other option than --json')
    const reply = (await controlRequest(plan.stateDir, 'POST', '/logs/reopen')) as {
      files?: string[]
    }
    io.out(o.json ? JSON.stringify(reply) : `log files reopened: ${(reply.files ?? []).join(', ')}`)
    return 0
  }
  const now = io.now?.() ?? Date.now()
  const filter: LogFilter = {
    targets: targetFilter(plan, targets),
    ...(o.level ? { minLevel: parseLevel(o.level) } : {}),
    ...(o.since ? { since: parseSince(o.since, now) } : {}),
  }
  const limit = parseLines(o.lines, o.since !== undefined)
  const color = io.color ?? (isatty(1) && !process.env.NO_COLOR)
  const pretty = o.json ? undefined : prettyFactory({ ...PRETTY_OPTIONS, colorize: color })

  const stop = new AbortController()
  const undo: (() => void)[] = []
  if (io.signal) {
    const s = io.signal
    const abort = () => stop.abort(s.reason)
    s.addEventListener('abort', abort, { once: true })
    undo.push(() => s.removeEventListener('abort', abort))
  } else {
    if (o.follow) undo.push(onStopSignal(() => stop.abort(new Error('signal'))))
    // A reader that went away (`tandem logs -f | head`) ends the command, without a stack trace.
    // Left attached: the error can be emitted after this returns, before the process exits.
    process.stdout.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err
      stop.abort(err)
    })
  }
  try {
    const { unreadable } = await readLogs({
      dir: plan.logs.dir,
      filter,
      ...(limit === undefined ? {} : { limit }),
      follow: o.follow === true,
      signal: stop.signal,
      onRecord: (line) => io.out(pretty ? pretty(line).trimEnd() : line),
      onNotice: (message) => io.err(`tandem: ${message}`),
    })
    if (unreadable)
      io.err(
        `tandem: ${unreadable} unreadable line${unreadable === 1 ? '' : 's'} skipped (not JSON: cut by a crash?)`,
      )
  } finally {
    undo.forEach((fn) => fn())
  }
  return 0
}
