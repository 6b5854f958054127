import { isUtf8 } from 'node:buffer'
import type { RecordSink } from './record-sink.js'

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

const NL = 0x0a
const QUOTE = 0x22
const BACKSLASH = 0x5c
const OPEN_BRACE = 0x7b
const CLOSE_BRACE = 0x7d
/** KIND of a byte: copied into a JSON string as it is, */
const PLAIN = 0
/** part of a multi-byte UTF-8 character (copied once the line is known to be valid UTF-8), */
const HIGH = 1
/** or escaped (a control character, a quote, a backslash). */
const ESCAPED = 2
const KIND = new Uint8Array(256).fill(ESCAPED, 0, 0x20).fill(HIGH, 0x80)
KIND[QUOTE] = ESCAPED
KIND[BACKSLASH] = ESCAPED
/** What JSON.stringify writes after the backslash for each byte it escapes (`u`: \u00XX). */
const ESCAPE = new Uint8Array(0x80).fill(0x75, 0, 0x20) // u
ESCAPE[0x08] = 0x62 // b
ESCAPE[0x09] = 0x74 // t
ESCAPE[0x0a] = 0x6e // n
ESCAPE[0x0c] = 0x66 // f
ESCAPE[0x0d] = 0x72 // r
ESCAPE[QUOTE] = QUOTE
ESCAPE[BACKSLASH] = BACKSLASH
/** Lower-case hex digits, as JSON.stringify writes them. */
const HEX = Buffer.from('0123456789abcdef')
/** The end of a cut line's record (a whole line's is `"}` and the newline). */
const TRUNCATED_END = Buffer.from('","truncated":true}\n')
/** Bytes of a record beyond its fixed start and its message: the longer of the two ends. */
const MAX_END = TRUNCATED_END.length

/**
 * DataViews over the buffer a line was last read from and the one its record was last written
 * to (a pipe's chunk, a writer's block: they change far less often than lines), so that a line
 * is copied and looked at four bytes a turn, at any alignment.
 */
let fromBytes: Uint8Array | undefined
let fromView: DataView<ArrayBufferLike> = new DataView(new ArrayBuffer(0))
let toBytes: Uint8Array | undefined
let toView: DataView<ArrayBufferLike> = new DataView(new ArrayBuffer(0))
const viewOf = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength)

/** The KIND of every byte of bytes[start, end), or-ed together. */
const kindsOf = (bytes: Buffer, start: number, end: number): number => {
  let kinds = PLAIN
  for (let i = start; i < end; i++) kinds |= KIND[bytes[i]!]!
  return kinds
}

/** Copies bytes[start, end) into `buf` at `p`, escaped as JSON.stringify does; returns the end. */
const escapeInto = (bytes: Buffer, start: number, end: number, buf: Buffer, p: number): number => {
  for (let i = start; i < end; i++) {
    const b = bytes[i]!
    if (KIND[b] !== ESCAPED) {
      buf[p++] = b
      continue
    }
    const e = ESCAPE[b]!
    buf[p++] = BACKSLASH
    buf[p++] = e
    if (e === 0x75) {
      buf[p++] = 0x30
      buf[p++] = 0x30
      buf[p++] = HEX[b >> 4]!
      buf[p++] = HEX[b & 15]!
    }
  }
  return p
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
  /** The bytes of a record up to its message's opening quote, for the time in #startTime. */
  #start: Buffer = Buffer.alloc(0)
  #startTime = Number.NaN

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

  /**
   * The record for the line `bytes[start, end)` read at `time`, as UTF-8 into `out`: the same
   * bytes as `record()` of the decoded line. A line that is valid UTF-8 and not a JSON object
   * (nearly every line) is copied into the record byte by byte, escaped as JSON.stringify
   * escapes it, behind a start that is built once per pipe and millisecond: no string is made.
   * Anything else (invalid UTF-8, decoded with U+FFFD as before; a JSON object, merged) goes
   * through `record()`.
   */
  encode(
    bytes: Buffer,
    start: number,
    end: number,
    truncated: boolean,
    time: number,
    out: RecordSink,
  ): void {
    const jsonObject =
      !truncated && end - start > 1 && bytes[start] === OPEN_BRACE && bytes[end - 1] === CLOSE_BRACE
    if (!jsonObject) {
      if (time !== this.#startTime) this.#startAt(time)
      const head = this.#start
      // An escaped byte takes at most 6 bytes (\u00XX).
      const buf = out.reserve(head.length + 6 * (end - start) + MAX_END)
      const at = out.offset
      buf.set(head, at)
      // Copied first, then looked at: a tight loop without branches is the fast one. Four bytes
      // a turn as one 32-bit word: its bytes are all plain unless one of them has its top bit
      // set, or is below 0x20 (w - 0x20202020 borrows), or is a quote or a backslash (w xor the
      // byte repeated has a zero byte): exact tests for "any", and the word's top bits gather
      // them. Then the last bytes one by one.
      if (bytes !== fromBytes) fromView = viewOf((fromBytes = bytes))
      if (buf !== toBytes) toView = viewOf((toBytes = buf))
      let p = at + head.length
      let words = 0
      let i = start
      for (; i + 4 <= end; i += 4, p += 4) {
        const w = fromView.getInt32(i, true)
        toView.setInt32(p, w, true)
        const q = w ^ 0x22222222
        const b = w ^ 0x5c5c5c5c
        words |= w | ((w - 0x20202020) & ~w) | ((q - 0x01010101) & ~q) | ((b - 0x01010101) & ~b)
      }
      let kinds = words & 0x80808080 ? kindsOf(bytes, start, i) : PLAIN
      for (; i < end; i++) {
        const b = bytes[i]!
        buf[p++] = b
        kinds |= KIND[b]!
      }
      if (kinds & ESCAPED) p = escapeInto(bytes, start, end, buf, at + head.length)
      // Bytes >= 0x80 are copied as they are only when they form valid UTF-8 (no surrogates).
      if (!(kinds & HIGH) || isUtf8(bytes.subarray(start, end))) {
        if (truncated) {
          buf.set(TRUNCATED_END, p)
          p += TRUNCATED_END.length
        } else {
          buf[p++] = QUOTE
          buf[p++] = CLOSE_BRACE
          buf[p++] = NL
        }
        out.commit(p - at)
        return
      }
    }
    const text = this.record(bytes.toString('utf8', start, end), truncated, time)
    // A UTF-16 code unit takes at most 3 bytes in UTF-8.
    const buf = out.reserve(text.length * 3)
    out.commit(buf.write(text, out.offset))
  }

  #startAt(time: number): void {
    this.#start = Buffer.from(`{"level":${this.#level},"time":${time}${this.#tail},"msg":"`)
    this.#startTime = time
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
