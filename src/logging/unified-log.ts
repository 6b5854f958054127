import { isatty } from 'node:tty'
import { join } from 'node:path'
import { pino, type Logger } from 'pino'
import { prettyFactory } from 'pino-pretty'
import type { LogsSpec } from '../config/plan.js'
import { ChildRecords, type LineSource } from './child-record.js'
import type { WriterStatus } from '../status.js'
import { LogWriter } from './log-writer.js'
import { splitLines, type PipeOutput } from './pipe-output.js'
import { RecordBuffer } from './record-sink.js'
import { SyslogFormat, type SyslogPipe } from './syslog-format.js'
import { SyslogSender } from './syslog-sender.js'

/** How a record looks on a terminal: one line, a child's line prefixed with where it came from. */
export const PRETTY_OPTIONS = {
  colorize: true,
  singleLine: true,
  translateTime: 'SYS:HH:MM:ss.l',
  // A child's line shows where it came from; an event's message already names its instance.
  messageFormat: '{if stream}{component}#{instance} {stream} | {end}{msg}',
  // seq (the event's number in `tandem events`) and cause (named by the message) are for machines.
  ignore: 'pid,hostname,node,event,from,component,instance,port,childPid,stream,delayMs,seq,cause',
}

/** A child pipe's source, and the per-instance file its records also go to. */
export interface PipeLog {
  records: ChildRecords
  instanceFile: LogWriter | undefined
  /** How its lines are shipped to syslog, if they are. */
  syslog?: SyslogPipe | undefined
}

/**
 * The node's one log: every child line and every supervisor event, as pino JSON records, in the
 * order they happened, to `<logs.dir>/tandem.log` (rotated by size), to stdout (pretty on a
 * terminal) and, with `logs.perInstance`, to `<logs.dir>/<component>.<index>.log`.
 * Supervisor events go through `logger` (pino); child lines are encoded here directly, from the
 * pipe's bytes into the writers' blocks (ChildRecords.encode), many times cheaper per line than
 * a pino call. When a destination is congested, the instances stop reading their children's
 * pipes until it drains (`congested`, `whenDrained`).
 */
export class UnifiedLog {
  readonly logger: Logger
  readonly file: LogWriter
  readonly #stdout: LogWriter | undefined
  readonly #pretty: ((record: string) => string) | undefined
  readonly #logs: LogsSpec
  readonly #node: string
  readonly #onProblem: (message: string) => void
  readonly #instanceFiles = new Map<string, LogWriter>()
  /** The child record being written when it has several destinations: encoded once, copied. */
  readonly #record = new RecordBuffer()
  #drainWaiters: (() => void)[] = []
  readonly #syslog: { format: SyslogFormat; sender: SyslogSender } | undefined

  constructor(
    logs: LogsSpec,
    options: { node: string; pretty?: boolean; onProblem: (message: string) => void },
  ) {
    this.#logs = logs
    this.#node = options.node
    this.#onProblem = options.onProblem
    this.file = this.#writer(join(logs.dir, 'tandem.log'))
    if (logs.stdout) {
      this.#stdout = this.#track(
        new LogWriter({ path: '<stdout>', fd: 1, onProblem: this.#onProblem }),
      )
      if (options.pretty ?? isatty(1)) this.#pretty = prettyFactory(PRETTY_OPTIONS)
    }
    if (logs.syslog)
      this.#syslog = {
        format: new SyslogFormat(logs.syslog, options.node),
        sender: new SyslogSender(logs.syslog, this.#onProblem),
      }
    this.logger = pino(
      { level: logs.level, base: { pid: process.pid, node: options.node } },
      { write: (record: string) => this.event(record) },
    )
  }

  /** Where one child pipe's lines go: built once per pipe. */
  pipe(source: Omit<LineSource, 'node'>): PipeLog {
    return {
      records: new ChildRecords({ ...source, node: this.#node }),
      instanceFile: this.#logs.perInstance
        ? this.#instanceFile(source.component, source.instance)
        : undefined,
      syslog: this.#syslog?.format.pipe(source),
    }
  }

  /**
   * Where one child pipe's chunks go on this thread: split into lines (cut at
   * `logs.maxLineBytes`), each encoded into the destinations (see childLine).
   */
  output(source: Omit<LineSource, 'node'>): PipeOutput {
    const pipe = this.pipe(source)
    return splitLines(this.#logs.maxLineBytes, (bytes, start, end, truncated, time) =>
      this.childLine(pipe, bytes, start, end, truncated, time),
    )
  }

  /** One line of a child's output, `bytes[start, end)`, read at `time` (epoch ms). */
  childLine(
    pipe: PipeLog,
    bytes: Buffer,
    start: number,
    end: number,
    truncated: boolean,
    time: number,
  ): void {
    if (pipe.syslog) this.#shipLine(pipe.syslog, bytes, start, end, time)
    if (!this.#stdout && !pipe.instanceFile) {
      // The file is the only destination: the record is encoded straight into its queue.
      pipe.records.encode(bytes, start, end, truncated, time, this.file)
      return
    }
    const record = this.#record
    pipe.records.encode(bytes, start, end, truncated, time, record)
    this.file.writeBytes(record.bytes, 0, record.length)
    if (this.#stdout) {
      if (this.#pretty)
        this.#stdout.write(this.#pretty(record.bytes.toString('utf8', 0, record.length)))
      else this.#stdout.writeBytes(record.bytes, 0, record.length)
    }
    pipe.instanceFile?.writeBytes(record.bytes, 0, record.length)
  }

  #shipLine(pipe: SyslogPipe, bytes: Buffer, start: number, end: number, time: number): void {
    const { format, sender } = this.#syslog!
    if (format.filtersMessages && !format.matches(() => bytes.toString('utf8', start, end))) return
    sender.send(format.line(pipe, bytes, start, end, time))
  }

  /** Whether readers of children's pipes should pause until `whenDrained`. */
  get congested(): boolean {
    if (this.file.congested || this.#stdout?.congested) return true
    for (const w of this.#instanceFiles.values()) if (w.congested) return true
    return false
  }

  /** Calls `fn` once no destination is congested (at once if none is). */
  whenDrained(fn: () => void): void {
    if (!this.congested) return fn()
    this.#drainWaiters.push(fn)
  }

  /** Reopens every file (SIGUSR2, `tandem logs --reopen`) after an external logrotate. */
  reopen(): void {
    this.file.reopen()
    for (const w of this.#instanceFiles.values()) w.reopen()
  }

  status(): WriterStatus[] {
    const writers = [
      this.file,
      ...(this.#stdout ? [this.#stdout] : []),
      ...this.#instanceFiles.values(),
    ]
    return [
      ...writers.map((w) => w.status()),
      ...(this.#syslog ? [this.#syslog.sender.status()] : []),
    ]
  }

  /** Writes out everything queued and closes the files. */
  async close(): Promise<void> {
    await Promise.all([
      this.file.close(),
      this.#stdout?.flush(),
      ...[...this.#instanceFiles.values()].map((w) => w.close()),
      this.#syslog?.sender.close(),
    ])
  }

  /** One supervisor event: a pino record (JSON with its newline). */
  event(record: string): void {
    const shipped = this.#syslog?.format.event(record)
    if (shipped) this.#syslog!.sender.send(shipped)
    this.file.write(record)
    this.#stdout?.write(this.#pretty ? this.#pretty(record) : record)
    if (this.#logs.perInstance && record.includes('"instance":')) {
      const { component, instance } = JSON.parse(record) as {
        component?: unknown
        instance?: unknown
      }
      if (typeof component === 'string' && typeof instance === 'number')
        this.#instanceFile(component, instance).write(record)
    }
  }

  #instanceFile(component: string, instance: number): LogWriter {
    const key = `${component}.${instance}`
    let w = this.#instanceFiles.get(key)
    if (!w) {
      w = this.#writer(join(this.#logs.dir, `${key}.log`))
      this.#instanceFiles.set(key, w)
    }
    return w
  }

  #writer(path: string): LogWriter {
    return this.#track(
      new LogWriter({ path, rotate: this.#logs.rotate, onProblem: this.#onProblem }),
    )
  }

  #track(w: LogWriter): LogWriter {
    w.on('drain', () => {
      if (this.congested) return
      const waiting = this.#drainWaiters
      this.#drainWaiters = []
      waiting.forEach((fn) => fn())
    })
    return w
  }
}
