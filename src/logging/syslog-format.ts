import type { SyslogSpec } from '../config/plan.js'
import { SYSLOG_FACILITIES } from '../config/schema.js'
import { LEVELS, levelOf, type LineSource } from './child-record.js'

/**
 * The SD-ID of tandem's structured data. `@32473` is the private enterprise number RFC 5612
 * reserves for documentation: tandem has none of its own, and an SD-ID with an @ is the only
 * kind RFC 5424 lets a sender name without registering it with IANA.
 */
export const SD_ID = 'tandem@32473'

/** RFC 5424 severities of pino's levels (6.2.1): debug 7, info 6, warning 4, err 3, crit 2. */
export const severityOf = (level: number): number =>
  level >= LEVELS.fatal
    ? 2
    : level >= LEVELS.error
      ? 3
      : level >= LEVELS.warn
        ? 4
        : level >= LEVELS.info
          ? 6
          : 7

/** A header field: printable US-ASCII without spaces, at most `max` bytes; `-` when empty. */
const field = (value: string, max: number): string => {
  const v = value.replace(/[^\x21-\x7e]/g, '_').slice(0, max)
  return v.length > 0 ? v : '-'
}

/** An SD-PARAM value: `"`, `\` and `]` escaped (6.3.3). */
const paramValue = (value: string): string => value.replace(/["\\\]]/g, (c) => `\\${c}`)

/** One child pipe's messages: everything but the priority's timestamp, built once. */
export interface SyslogPipe {
  /** `<PRI>1 ` */
  readonly head: Buffer
  /** ` HOSTNAME APP-NAME PROCID MSGID [SD] ` */
  readonly rest: Buffer
}

/**
 * Builds RFC 5424 messages (without framing) of the unified log's records: HOSTNAME the node,
 * APP-NAME the component (`tandem` for the supervisor's own events), PROCID the child's pid (the
 * supervisor's), MSGID the stream (`out`, `err`) or the event, the node, component, instance and
 * port as structured data (SD-ID `tandem@32473`), and the line as the MSG, as the child wrote it.
 * Timestamps are UTC with milliseconds, one string per millisecond.
 */
export class SyslogFormat {
  readonly #facility: number
  readonly #host: string
  readonly #node: string
  readonly #minLevel: number
  readonly #components: Set<string> | undefined
  readonly #messages: RegExp[] | undefined
  #stampTime = Number.NaN
  #stamp = Buffer.alloc(0)

  constructor(spec: SyslogSpec, node: string) {
    this.#facility = SYSLOG_FACILITIES[spec.facility as keyof typeof SYSLOG_FACILITIES] ?? 1
    this.#node = node
    this.#host = field(node, 255)
    this.#minLevel = levelOf(spec.minLevel) ?? LEVELS.info
    this.#components = spec.match?.components && new Set(spec.match.components)
    this.#messages = spec.match?.messages?.map((m) => new RegExp(m))
  }

  /** Whether a record of this level and component (undefined: the supervisor's) is shipped. */
  wants(level: number, component: string | undefined): boolean {
    if (level < this.#minLevel) return false
    if (!this.#components) return true
    return component !== undefined && this.#components.has(component)
  }

  /** Whether a message passes `match.messages` (always without it). */
  matches(message: () => string): boolean {
    if (!this.#messages) return true
    const text = message()
    return this.#messages.some((re) => re.test(text))
  }

  /** Whether `match.messages` is set: only then does a line need decoding. */
  get filtersMessages(): boolean {
    return this.#messages !== undefined
  }

  /** The parts of a pipe's messages, or undefined when its lines are not shipped. */
  pipe(source: Omit<LineSource, 'node'>): SyslogPipe | undefined {
    const level = source.stream === 'err' ? LEVELS.warn : LEVELS.info
    if (!this.wants(level, source.component)) return undefined
    return {
      head: Buffer.from(`<${this.#facility * 8 + severityOf(level)}>1 `),
      rest: Buffer.from(
        ` ${this.#host} ${field(source.component, 48)} ${source.childPid} ${source.stream} ${this.#sd(source.component, source.instance, source.port)} `,
      ),
    }
  }

  /** A child line's message: `bytes[start, end)` read at `time`. */
  line(pipe: SyslogPipe, bytes: Buffer, start: number, end: number, time: number): Buffer {
    const stamp = this.#stampAt(time)
    const n = pipe.head.length + stamp.length + pipe.rest.length + (end - start)
    const out = Buffer.allocUnsafe(n)
    let p = pipe.head.copy(out, 0)
    p += stamp.copy(out, p)
    p += pipe.rest.copy(out, p)
    bytes.copy(out, p, start, end)
    return out
  }

  /**
   * A supervisor event's message from its pino record, or undefined when it is not shipped.
   * Its MSG is the record's `msg`.
   */
  event(record: string): Buffer | undefined {
    let r: Record<string, unknown>
    try {
      r = JSON.parse(record) as Record<string, unknown>
    } catch {
      return undefined
    }
    const level = typeof r.level === 'number' ? r.level : LEVELS.info
    const component = typeof r.component === 'string' ? r.component : undefined
    if (!this.wants(level, component)) return undefined
    const msg = typeof r.msg === 'string' ? r.msg : ''
    if (!this.matches(() => msg)) return undefined
    const time = typeof r.time === 'number' ? r.time : Date.now()
    const sd =
      component !== undefined
        ? this.#sd(
            component,
            typeof r.instance === 'number' ? r.instance : undefined,
            typeof r.port === 'number' ? r.port : undefined,
          )
        : `[${SD_ID} node="${paramValue(this.#node)}"]`
    const head = `<${this.#facility * 8 + severityOf(level)}>1 ${this.#stampAt(time).toString()} ${this.#host} tandem ${typeof r.pid === 'number' ? r.pid : '-'} ${field(typeof r.event === 'string' ? r.event : '', 32)} ${sd} `
    return Buffer.from(head + msg)
  }

  #sd(component: string, instance: number | undefined, port: number | undefined): string {
    return (
      `[${SD_ID} node="${paramValue(this.#node)}" component="${paramValue(component)}"` +
      `${instance === undefined ? '' : ` instance="${instance}"`}${port === undefined ? '' : ` port="${port}"`}]`
    )
  }

  #stampAt(time: number): Buffer {
    if (time !== this.#stampTime) {
      this.#stampTime = time
      this.#stamp = Buffer.from(new Date(time).toISOString())
    }
    return this.#stamp
  }
}
