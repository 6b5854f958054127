import { EventEmitter } from 'node:events'
import { closeSync, fstatSync, mkdirSync, openSync, renameSync, rmSync, write } from 'node:fs'
import { dirname } from 'node:path'
import { errorMessage } from '../errors.js'
import type { RecordSink } from './record-sink.js'
import type { WriterStatus } from '../status.js'

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

/**
 * Records are copied into blocks of this size as they come, and a write takes at most one block:
 * large writes, and no joining of strings. A writer's first block (and the first after a quiet
 * spell) is smaller, so that a writer that sees little traffic (a per-instance file) holds little.
 */
const BLOCK_BYTES = 1024 * 1024
const FIRST_BLOCK_BYTES = 64 * 1024
/** Written blocks kept for reuse while the writer is busy (more than that are left to the GC). */
const SPARE_BLOCKS = 2
/**
 * How long an idle writer keeps its spare blocks: a flood that pauses now and then (a child
 * blocked on a full pipe, the log thread waiting for the disk) would otherwise allocate new
 * blocks at every restart, and the old ones are freed only by a full garbage collection.
 */
const SPARE_KEEP_MS = 1000
const NL = 0x0a
const NO_BYTES = Buffer.alloc(0)

/**
 * An append-only line writer with bounded memory. Lines are copied into blocks as they come (or
 * encoded straight into them: a LogWriter is a RecordSink) and written in large asynchronous
 * writes, in order: a block, or the part of it filled so far. When the queue passes
 * `highWaterBytes`, `congested` is true until it drains ('drain' event): the supervisor then
 * stops reading children's pipes, so a slow disk slows the children as a slow file would,
 * instead of growing memory. When the destination fails (disk full, permissions, a vanished
 * directory), the failed write is kept and retried every `retryMs`, reopening the file;
 * producers are not held back (children keep running), lines queue up to `maxBufferBytes` and
 * beyond that are dropped and counted, and the writer is never congested while failing.
 * Rotation is rename and reopen, never copy-and-truncate.
 */
export class LogWriter
  extends EventEmitter<{ drain: []; recovered: [dropped: number] }>
  implements RecordSink
{
  readonly path: string
  readonly #opts: Required<Omit<LogWriterOptions, 'fd' | 'rotate'>> &
    Pick<LogWriterOptions, 'rotate'>
  readonly #ownsFd: boolean
  #fd: number | undefined
  /** Filled blocks (the parts not yet taken for writing), oldest first. */
  #full: Buffer[] = []
  /** The block being filled: bytes [#start, #end) are queued, [0, #start) taken for writing. */
  #block: Buffer = NO_BYTES
  #start = 0
  #end = 0
  /** Memory of written blocks, reused for the next ones. */
  #spare: ArrayBuffer[] = []
  /** Bytes queued: in #full and in #block, not counting #pending. */
  #queuedBytes = 0
  /** Bytes taken from the queue and not yet written (kept across a failure). */
  #pending: Buffer | undefined
  #writing = false
  #size = 0
  #congested = false
  #reopenWanted = false
  #error: { message: string; since: number } | undefined
  #retryTimer: NodeJS.Timeout | undefined
  #spareTimer: NodeJS.Timeout | undefined
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
    // A UTF-16 code unit takes at most 3 bytes in UTF-8.
    const n = this.reserve(line.length * 3).write(line, this.#end)
    return this.commit(n)
  }

  /** Queues one line (with its newline) given as `bytes[start, end)`, copied at once. */
  writeBytes(bytes: Uint8Array, start: number, end: number): boolean {
    this.reserve(end - start).set(bytes.subarray(start, end), this.#end)
    return this.commit(end - start)
  }

  /** RecordSink: room for a line of up to `n` bytes, to be written in place at `offset`. */
  reserve(n: number): Buffer {
    this.#room(n)
    return this.#block
  }

  get offset(): number {
    return this.#end
  }

  /**
   * RecordSink: queues the line of `length` bytes written at `offset`. Returns false when the
   * writer is congested.
   */
  commit(length: number): boolean {
    if (this.#closed) return false
    if (this.#error && this.#queuedBytes + length > this.#opts.maxBufferBytes) return this.#drop()
    this.#end += length
    this.#queuedBytes += length
    if (!this.#writing && !this.#error) this.#writeNext()
    if (!this.#error && this.#queuedBytes > this.#opts.highWaterBytes) this.#congested = true
    return !this.#congested
  }

  #drop(): boolean {
    this.#dropped++
    this.#droppedTotal++
    return true
  }

  /** Makes room for `n` more bytes at #end: a new block when the current one is too full. */
  #room(n: number): void {
    if (this.#end + n <= this.#block.length) return
    const old = this.#block
    const queued = this.#end > this.#start
    if (queued) this.#full.push(old.subarray(this.#start, this.#end))
    const spare = n <= BLOCK_BYTES ? this.#spare.pop() : undefined
    this.#block = spare
      ? Buffer.from(spare)
      : // A block filled up: the writer is busy, so a full-size one; else a small one first.
        Buffer.allocUnsafeSlow(Math.max(n, old.length > 0 ? BLOCK_BYTES : FIRST_BLOCK_BYTES))
    this.#start = 0
    this.#end = 0
    // All of the old block was taken for writing: it is free unless that write is still on.
    if (!queued && this.#pending?.buffer !== old.buffer) this.#reuse(old.buffer)
  }

  /** Keeps a block's memory for reuse once nothing queued or being written is in it. */
  #reuse(memory: ArrayBufferLike): void {
    if (
      memory.byteLength === BLOCK_BYTES &&
      memory !== this.#block.buffer &&
      memory !== this.#full[0]?.buffer &&
      this.#spare.length < SPARE_BLOCKS
    )
      this.#spare.push(memory as ArrayBuffer)
  }

  /** Reopens the file at its path (after an external logrotate renamed it), between writes. */
  reopen(): void {
    if (!this.#ownsFd) return
    this.#reopenWanted = true
    if (!this.#writing) this.#writeNext()
  }

  /** Resolves when everything queued is written, or at once while the destination fails. */
  flush(): Promise<void> {
    if (this.#error || (!this.#writing && this.#queuedBytes === 0 && !this.#pending))
      return Promise.resolve()
    return new Promise((resolve) => this.#idle.push(resolve))
  }

  /** Flushes, then closes the file. */
  async close(): Promise<void> {
    await this.flush()
    this.#closed = true
    clearTimeout(this.#retryTimer)
    clearTimeout(this.#spareTimer)
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
      if (this.#queuedBytes === 0) return this.#idleNow()
      const fromFull = this.#full.length > 0
      const piece = fromFull ? this.#full[0]! : this.#block.subarray(this.#start, this.#end)
      // Not far past a rotation point: up to the end of the line that crosses it, so that
      // files end near maxBytes.
      const rotate = this.#opts.rotate
      const budget = rotate && rotate.maxBytes > 0 ? rotate.maxBytes - this.#size : Infinity
      let take = piece.length
      if (budget < take) {
        const nl = piece.indexOf(NL, Math.max(0, budget - 1))
        if (nl !== -1) take = nl + 1
      }
      if (!fromFull) this.#start += take
      else if (take === piece.length) this.#full.shift()
      else this.#full[0] = piece.subarray(take)
      this.#queuedBytes -= take
      this.#pending = take === piece.length ? piece : piece.subarray(0, take)
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
      if (!this.#pending) this.#reuse(buf.buffer)
      this.#recovered()
      if (!this.#closed) this.#writeNext()
      // After the next write is on its way: a 'drain' listener may queue lines at once, and
      // their commit must find this writer busy, not start a second write of the same bytes.
      if (this.#congested && this.#queuedBytes <= this.#opts.highWaterBytes / 2) {
        this.#congested = false
        this.emit('drain')
      }
    })
  }

  /**
   * Everything is written: the current block is reused from its start (an outsized one, made for
   * one huge line, is let go), and so are the spare blocks once it stays idle SPARE_KEEP_MS: an
   * idle writer holds one block.
   */
  #idleNow(): void {
    if (this.#block.length > BLOCK_BYTES) this.#block = NO_BYTES
    this.#start = 0
    this.#end = 0
    if (this.#spare.length > 0 && !this.#spareTimer) {
      // A real timer, not the Clock seam: it only lets memory go, nothing a test drives.
      this.#spareTimer = setTimeout(() => {
        this.#spareTimer = undefined
        if (!this.#writing && this.#queuedBytes === 0) this.#spare = []
      }, SPARE_KEEP_MS)
      this.#spareTimer.unref()
    }
    this.#becameIdle()
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
