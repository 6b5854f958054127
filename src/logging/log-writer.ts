import { EventEmitter } from 'node:events'
import { closeSync, fstatSync, mkdirSync, openSync, renameSync, rmSync, write } from 'node:fs'
import { dirname } from 'node:path'
import { errorMessage } from '../errors.js'

/** What `status` shows of one log destination. */
export interface WriterStatus {
  path: string
  /** Set while the destination cannot be written; cleared when writing resumes. */
  error?: string
  /** Epoch ms when the current error began. */
  errorSince?: number
  /** Lines dropped because the destination stayed unwritable past `maxBufferBytes`. */
  droppedLines: number
}

export interface LogWriterOptions {
  /** A file to append to (created with its directory), or an open fd (stdout) when `fd` is set. */
  path: string
  fd?: number
  /** Rotate by size: rename path -> path.1 -> ... -> path.keep and reopen. maxBytes 0: never. */
  rotate?: { maxBytes: number; keep: number }
  /** Above this many queued bytes the writer is congested: producers should stop reading. */
  highWaterBytes?: number
  /** While the destination fails, keep at most this much; beyond it lines are dropped and counted. */
  maxBufferBytes?: number
  /** How often to try again while the destination fails. */
  retryMs?: number
  /** Reports the start and the end of a failure (for stderr and the log). */
  onProblem?: (message: string) => void
}

const MAX_WRITE_BYTES = 1024 * 1024

/**
 * An append-only line writer with bounded memory. Lines are queued and written in large
 * asynchronous writes, in order. When the queue passes `highWaterBytes`, `congested` is true
 * until it drains ('drain' event): the supervisor then stops reading children's pipes, so a slow
 * disk slows the children as a slow file would, instead of growing memory. When the destination
 * fails (disk full, permissions, a vanished directory), the failed write is kept and retried
 * every `retryMs`, reopening the file; producers are not held back (children keep running),
 * lines queue up to `maxBufferBytes` and beyond that are dropped and counted, and the writer is
 * never congested while failing. Rotation is rename and reopen, never copy-and-truncate.
 */
export class LogWriter extends EventEmitter<{ drain: []; recovered: [dropped: number] }> {
  readonly path: string
  readonly #opts: Required<Omit<LogWriterOptions, 'fd' | 'rotate'>> &
    Pick<LogWriterOptions, 'rotate'>
  readonly #ownsFd: boolean
  #fd: number | undefined
  #queue: string[] = []
  #queuedBytes = 0
  /** Bytes taken from the queue and not yet written (kept across a failure). */
  #pending: Buffer | undefined
  #writing = false
  #size = 0
  #congested = false
  #reopenWanted = false
  #error: { message: string; since: number } | undefined
  #retryTimer: NodeJS.Timeout | undefined
  #dropped = 0
  #droppedTotal = 0
  #closed = false
  #idle: (() => void)[] = []

  constructor(options: LogWriterOptions) {
    super()
    this.path = options.path
    this.#opts = {
      highWaterBytes: 1024 * 1024,
      maxBufferBytes: 16 * 1024 * 1024,
      retryMs: 1000,
      onProblem: () => {},
      ...options,
    }
    this.#ownsFd = options.fd === undefined
    if (options.fd !== undefined) this.#fd = options.fd
    else {
      try {
        this.#open()
      } catch (err) {
        this.#failed(err)
      }
    }
  }

  /** Whether producers should stop until 'drain'. */
  get congested(): boolean {
    return this.#congested
  }

  status(): WriterStatus {
    return {
      path: this.path,
      ...(this.#error ? { error: this.#error.message, errorSince: this.#error.since } : {}),
      droppedLines: this.#droppedTotal,
    }
  }

  /** Queues one line (with its newline). Returns false when the writer is congested. */
  write(line: string): boolean {
    if (this.#closed) return false
    if (this.#error && this.#queuedBytes + line.length > this.#opts.maxBufferBytes) {
      this.#dropped++
      this.#droppedTotal++
      return true
    }
    this.#queue.push(line)
    this.#queuedBytes += line.length
    if (!this.#writing && !this.#error) this.#writeNext()
    if (!this.#error && this.#queuedBytes > this.#opts.highWaterBytes) this.#congested = true
    return !this.#congested
  }

  /** Reopens the file at its path (after an external logrotate renamed it), between writes. */
  reopen(): void {
    if (!this.#ownsFd) return
    this.#reopenWanted = true
    if (!this.#writing) this.#writeNext()
  }

  /** Resolves when everything queued is written, or at once while the destination fails. */
  flush(): Promise<void> {
    if (this.#error || (!this.#writing && this.#queue.length === 0 && !this.#pending))
      return Promise.resolve()
    return new Promise((resolve) => this.#idle.push(resolve))
  }

  /** Flushes, then closes the file. */
  async close(): Promise<void> {
    await this.flush()
    this.#closed = true
    clearTimeout(this.#retryTimer)
    if (this.#ownsFd && this.#fd !== undefined) closeSync(this.#fd)
    this.#fd = undefined
  }

  #open(): void {
    mkdirSync(dirname(this.path), { recursive: true })
    const fd = openSync(this.path, 'a', 0o640)
    this.#fd = fd
    this.#size = fstatSync(fd).size
  }

  #reopenNow(): void {
    if (this.#fd !== undefined) {
      const old = this.#fd
      this.#fd = undefined
      try {
        closeSync(old)
      } catch {
        // already gone: reopening is the point
      }
    }
    this.#open()
  }

  #rotate(): void {
    const { keep } = this.#opts.rotate!
    const name = (n: number) => (n === 0 ? this.path : `${this.path}.${n}`)
    if (keep === 0) rmSync(this.path, { force: true })
    else {
      rmSync(name(keep), { force: true })
      for (let n = keep - 1; n >= 0; n--) {
        try {
          renameSync(name(n), name(n + 1))
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
        }
      }
    }
    this.#reopenNow()
  }

  #writeNext(): void {
    try {
      if (this.#reopenWanted) {
        this.#reopenWanted = false
        this.#reopenNow()
      }
      const { rotate } = this.#opts
      // Never between the parts of a partial write: a line is never split across two files.
      if (rotate && rotate.maxBytes > 0 && this.#size >= rotate.maxBytes && !this.#pending)
        this.#rotate()
      if (this.#fd === undefined) this.#open()
    } catch (err) {
      return this.#failed(err)
    }
    if (!this.#pending) {
      if (this.#queue.length === 0) return this.#becameIdle()
      // One large write, but not far past a rotation point: files end near maxBytes.
      const rotate = this.#opts.rotate
      const budget =
        rotate && rotate.maxBytes > 0
          ? Math.min(MAX_WRITE_BYTES, rotate.maxBytes - this.#size)
          : MAX_WRITE_BYTES
      let take = 0
      let bytes = 0
      while (take < this.#queue.length && (take === 0 || bytes < budget))
        bytes += this.#queue[take++]!.length
      const text =
        take === this.#queue.length ? this.#queue.join('') : this.#queue.slice(0, take).join('')
      this.#queue = take === this.#queue.length ? [] : this.#queue.slice(take)
      this.#queuedBytes -= bytes
      this.#pending = Buffer.from(text)
    }
    const buf = this.#pending
    this.#writing = true
    write(this.#fd!, buf, 0, buf.length, null, (err, n) => {
      this.#writing = false
      if (err?.code === 'EAGAIN') {
        // A non-blocking pipe (stdout) is full: its reader is slow. Try again shortly; the
        // queue grows and congests, which slows the children down, as intended.
        this.#writing = true
        setTimeout(() => {
          this.#writing = false
          this.#writeNext()
        }, 5)
        return
      }
      if (err) return this.#failed(err)
      this.#size += n
      this.#pending = n < buf.length ? buf.subarray(n) : undefined
      this.#recovered()
      if (this.#congested && this.#queuedBytes <= this.#opts.highWaterBytes / 2) {
        this.#congested = false
        this.emit('drain')
      }
      if (!this.#closed) this.#writeNext()
    })
  }

  #becameIdle(): void {
    const waiting = this.#idle
    this.#idle = []
    waiting.forEach((fn) => fn())
  }

  #failed(err: unknown): void {
    if (!this.#error) {
      this.#error = { message: errorMessage(err), since: Date.now() }
      this.#opts.onProblem(
        `cannot write ${this.path}: ${this.#error.message}; children keep running, lines are kept in memory up to ${Math.round(this.#opts.maxBufferBytes / 1048576)} MiB; retrying every ${this.#opts.retryMs} ms`,
      )
      // Producers must not wait on a destination that may stay broken for hours.
      if (this.#congested) {
        this.#congested = false
        this.emit('drain')
      }
      this.#becameIdle()
    }
    clearTimeout(this.#retryTimer)
    this.#retryTimer = setTimeout(() => {
      if (this.#closed) return
      if (this.#ownsFd) this.#reopenWanted = true
      this.#writeNext()
    }, this.#opts.retryMs)
    this.#retryTimer.unref()
  }

  #recovered(): void {
    if (!this.#error) return
    const { message, since } = this.#error
    this.#error = undefined
    const dropped = this.#dropped
    this.#dropped = 0
    this.#opts.onProblem(
      `writing ${this.path} again after ${Math.round((Date.now() - since) / 1000)} s of "${message}"${dropped ? `; ${dropped} lines were dropped meanwhile` : '; no line lost'}`,
    )
    this.emit('recovered', dropped)
  }
}
