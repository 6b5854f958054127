/** pino's numeric levels: the unified log's one scale. */
export const LEVELS = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 } as const
export type LevelName = keyof typeof LEVELS

/** Level names other loggers use (logback, log4j, bunyan, Python, syslog), mapped to pino's. */
const LEVEL_ALIASES: Record<string, number> = {
  ...LEVELS,
  finest: 10,
  finer: 10,
  fine: 20,
  verbose: 20,
  config: 30,
  notice: 30,
  information: 30,
  warning: 40,
  severe: 50,
  err: 50,
  critical: 60,
  crit: 60,
  alert: 60,
  emerg: 60,
  panic: 60,
}

/** A level from a child's JSON record as a pino number, or undefined when it is not one. */
export const levelOf = (value: unknown): number | undefined => {
  if (typeof value === 'number') return Number.isFinite(value) ? value : undefined
  if (typeof value === 'string') return LEVEL_ALIASES[value.toLowerCase()]
  return undefined
}

/** Where a child's line came from: the fields every record of that pipe carries. */
export interface LineSource {
  node: string
  component: string
  instance: number
  port: number | undefined
  childPid: number
  stream: 'out' | 'err'
}

/**
 * Builds one child line's records as JSON text (with the newline). Fields every record of a pipe
 * shares are serialized once. A line holding a JSON object (pino, bunyan, logback's JSON encoder)
 * is merged: the child's fields, level and message are kept (a string level is mapped to pino's
 * number, the original kept as `childLevel`; `message` becomes `msg` when there is no `msg`; the
 * child's own `time` is kept as `childTime`), and ours are added over it: time, node, component,
 * instance, port, childPid, stream. Anything else is the message, quoted.
 */
export class ChildRecords {
  readonly #source: LineSource
  readonly #pid: number
  readonly #tail: string
  readonly #level: number

  constructor(source: LineSource, supervisorPid = process.pid) {
    this.#source = source
    this.#pid = supervisorPid
    this.#level = source.stream === 'err' ? LEVELS.warn : LEVELS.info
    this.#tail =
      `,"pid":${supervisorPid},"node":${JSON.stringify(source.node)}` +
      `,"component":${JSON.stringify(source.component)},"instance":${source.instance}` +
      `,"port":${source.port ?? null},"childPid":${source.childPid},"stream":"${source.stream}"`
  }

  /** The record for `line`, read at `time` (epoch ms). */
  record(line: string, truncated: boolean, time: number): string {
    if (!truncated && line.length > 1 && line[0] === '{' && line[line.length - 1] === '}') {
      const merged = this.#merged(line, time)
      if (merged) return merged
    }
    return `{"level":${this.#level},"time":${time}${this.#tail},"msg":${JSON.stringify(line)}${truncated ? ',"truncated":true' : ''}}\n`
  }

  #merged(line: string, time: number): string | undefined {
    let theirs: unknown
    try {
      theirs = JSON.parse(line)
    } catch {
      return undefined
    }
    if (typeof theirs !== 'object' || theirs === null || Array.isArray(theirs)) return undefined
    const { level, time: childTime, msg, message, ...rest } = theirs as Record<string, unknown>
    const mapped = levelOf(level)
    const s = this.#source
    const record: Record<string, unknown> = {
      level: mapped ?? this.#level,
      time,
      pid: this.#pid,
      ...rest,
      ...(level !== undefined && mapped !== level ? { childLevel: level } : {}),
      ...(childTime !== undefined ? { childTime } : {}),
      node: s.node,
      component: s.component,
      instance: s.instance,
      port: s.port ?? null,
      childPid: s.childPid,
      stream: s.stream,
      msg: msg ?? message ?? '',
      ...(msg !== undefined && message !== undefined ? { message } : {}),
    }
    return `${JSON.stringify(record)}\n`
  }
}
