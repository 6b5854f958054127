import { isatty } from 'node:tty'
import { Worker } from 'node:worker_threads'
import { pino, type Logger } from 'pino'
import type { LogsSpec } from '../config/plan.js'
import { errorMessage } from '../errors.js'
import type { LineSource } from './child-record.js'
import type { WriterStatus } from '../status.js'
import type { PipeOutput } from './pipe-output.js'

/**
 * Bytes handed to the log's thread and not yet taken by it, above which the children's pipes are
 * not read (until half of it is acknowledged). The log's thread takes a batch only while its
 * writers are below their high-water mark (1 MiB of records), so these bytes wait raw in the
 * batch buffers, not encoded (2.4 times larger) in the writers' queues.
 */
export const IN_FLIGHT_HIGH_WATER_BYTES = 2 * 1024 * 1024

/**
 * What the main thread sends the log's thread besides chunks. `at`: where the batch's chunks
 * stood when it was sent (the byte offset of the next chunk): it comes after the chunks before
 * that offset and before those from it on.
 */
export type ToLog = (
  | { t: 'pipe'; id: number; source: Omit<LineSource, 'node'> }
  | { t: 'end'; id: number; time: number }
  | { t: 'event'; record: string }
  | { t: 'reopen' }
  | { t: 'close' }
) & { at: number }

/**
 * One message: what happened since the last one, in order. The chunks are in `bytes[0, used)`,
 * each behind a header of CHUNK_HEADER_BYTES: the pipe's id (uint32), the chunk's length
 * (uint32) and its read time (float64, epoch ms), little-endian. `bytes` is the index of one of
 * the shared batch buffers both threads were given at the start (no memory is allocated,
 * copied or transferred per batch: a transferred buffer is a new external allocation for V8
 * each time, and the garbage collections that brought on stalled the main thread), or, when
 * none is free or a chunk is larger than one, a buffer of its own, transferred.
 */
export interface LogBatch {
  messages: ToLog[]
  bytes: number | ArrayBuffer | undefined
  used: number
}

export const CHUNK_HEADER_BYTES = 16

/** What the log's thread answers. `ack`: a batch taken whole: its bytes, and its shared buffer, free again. */
export type FromLog =
  | { t: 'ack'; bytes: number; buffer?: number }
  | { t: 'status'; status: WriterStatus[] }
  | { t: 'problem'; message: string }
  | { t: 'closed' }

/**
 * The log thread's young generation: it allocates little that lives (records are encoded into
 * the writers' blocks), and V8's default (up to 48 MB on 64-bit) only adds resident memory
 * (capped, the supervisor's peak RSS in a flood was about 10 MB lower, within the noise).
 */
export const WORKER_YOUNG_GENERATION_MB = 4

/**
 * The shared batch buffers: their size, and how many (IN_FLIGHT_HIGH_WATER_BYTES and a few
 * batches on their way back, 4 MiB in all). A batch takes what the pipes gave in one turn of
 * the event loop, often less than a buffer; once none is free the pipes pause (`congested`)
 * until the log's thread gives one back.
 */
export const BATCH_BYTES = 256 * 1024
export const BATCH_BUFFERS = 16
/** What one read of a child's pipe usually returns at most (libuv reads 64 KiB at a time). */
const PIPE_READ_BYTES = 64 * 1024

/**
 * How much lower the log thread's priority is than the main thread's (nice +5: under contention
 * the main thread gets about three times the CPU share of the log thread, which is kept from
 * starving).
 */
export const LOG_THREAD_NICE = 5

export interface LogWorkerData {
  /** Added to the log thread's nice value. */
  nice: number
  /** The batch buffers, shared: LogBatch.bytes names one by its index. */
  buffers: SharedArrayBuffer[]
  logs: LogsSpec
  node: string
  pretty: boolean
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never

/** The worker's module: its .ts source under a TypeScript loader (tests), else the build's .js. */
const workerUrl = (): URL =>
  new URL(import.meta.url.endsWith('.ts') ? './log-worker.ts' : './log-worker.js', import.meta.url)

/**
 * The unified log (see UnifiedLog) run on a thread of its own, so that a flood of child output
 * cannot hold up the supervisor's main thread: its lease renewals, control requests and health
 * checks. The main thread only reads the pipes and hands each chunk over as it came, with its
 * read time; supervisor events go the same way, so the order of records is the order things
 * happened. Hand-overs are batched: one message per turn of the event loop, its chunks copied
 * into one of the shared batch buffers. The log's thread splits, encodes and writes, taking a
 * batch only while its destinations are not congested, and acknowledges each batch taken whole;
 * with more than IN_FLIGHT_HIGH_WATER_BYTES not acknowledged, or no batch buffer free,
 * `congested` is true and the instances stop reading their pipes until `whenDrained`, so memory
 * stays bounded and a slow disk slows the children, as before.
 */
export class ThreadedLog {
  readonly logger: Logger
  readonly #onProblem: (message: string) => void
  readonly #onStatus: (status: WriterStatus[]) => void
  readonly #worker: Worker
  #messages: ToLog[] = []
  /** The chunks of the batch, copied in one after another: one buffer moves per batch. */
  #bytes: Buffer | undefined
  #used = 0
  /** The shared batch buffers, and which of them are free (not in a batch on its way). */
  readonly #buffers: Buffer[] = []
  #free: number[] = []
  /** The index of the batch buffer in use, or -1 when it is one of its own. */
  #current = -1
  #flushing: NodeJS.Immediate | undefined
  #inFlight = 0
  #pipes = 0
  #status: WriterStatus[] = []
  #drainWaiters: (() => void)[] = []
  #failed = false
  #closed: Promise<void> | undefined
  #resolveClosed: (() => void) | undefined

  constructor(
    logs: LogsSpec,
    options: {
      node: string
      pretty?: boolean
      onProblem: (message: string) => void
      /** The destinations' status, each time the log's thread reports a change. */
      onStatus?: (status: WriterStatus[]) => void
    },
  ) {
    this.#onProblem = options.onProblem
    this.#onStatus = options.onStatus ?? (() => {})
    const shared = Array.from({ length: BATCH_BUFFERS }, () => new SharedArrayBuffer(BATCH_BYTES))
    this.#buffers = shared.map((b) => Buffer.from(b))
    this.#free = shared.map((_, i) => i)
    const data: LogWorkerData = {
      buffers: shared,
      nice: LOG_THREAD_NICE,
      logs,
      node: options.node,
      pretty: logs.stdout && (options.pretty ?? isatty(1)),
    }
    this.#worker = new Worker(workerUrl(), {
      workerData: data,
      name: 'tandem log',
      resourceLimits: { maxYoungGenerationSizeMb: WORKER_YOUNG_GENERATION_MB },
    })
    this.#worker.on('message', (m: FromLog) => this.#received(m))
    this.#worker.on('error', (err) => this.#failure(err))
    this.#worker.on('exit', (code) => {
      if (!this.#resolveClosed) this.#failure(new Error(`it exited with code ${code}`))
      this.#resolveClosed?.()
    })
    this.logger = pino(
      { level: logs.level, base: { pid: process.pid, node: options.node } },
      { write: (record: string) => this.#send({ t: 'event', record }) },
    )
  }

  /** Where one child pipe's chunks go: to the log's thread, which splits and encodes them. */
  pipe(source: Omit<LineSource, 'node'>): PipeOutput {
    const id = ++this.#pipes
    this.#send({ t: 'pipe', id, source })
    return {
      push: (chunk, time) => {
        if (this.#failed || chunk.length === 0) return
        const need = CHUNK_HEADER_BYTES + chunk.length
        if (this.#bytes && this.#used + need > this.#bytes.length) this.#flush()
        this.#bytes ??= this.#batchBuffer(need)
        const b = this.#bytes
        let p = this.#used
        p = b.writeUInt32LE(id, p)
        p = b.writeUInt32LE(chunk.length, p)
        p = b.writeDoubleLE(time, p)
        this.#used = p + chunk.copy(b, p)
        this.#inFlight += chunk.length
        this.#schedule()
      },
      end: (time) => this.#send({ t: 'end', id, time }),
    }
  }

  /**
   * Whether readers of children's pipes should pause until `whenDrained`: too many bytes not
   * yet taken by the log's thread, or no batch buffer free and no room for another read in the
   * one being filled (a chunk read then would need a buffer of its own: an allocation, and
   * external memory in the log's thread until its next full garbage collection).
   */
  get congested(): boolean {
    return (
      this.#inFlight > IN_FLIGHT_HIGH_WATER_BYTES ||
      (this.#free.length === 0 &&
        (!this.#bytes || this.#bytes.length - this.#used < CHUNK_HEADER_BYTES + PIPE_READ_BYTES))
    )
  }

  /** Calls `fn` once the log's thread has caught up (at once if it is not behind). */
  whenDrained(fn: () => void): void {
    if (!this.congested) return fn()
    this.#drainWaiters.push(fn)
  }

  /** Reopens every file (SIGUSR2, `tandem logs --reopen`) after an external logrotate. */
  reopen(): void {
    this.#send({ t: 'reopen' })
  }

  /** The destinations as the log's thread last reported them (it reports every change). */
  status(): WriterStatus[] {
    return this.#status
  }

  /** Writes out everything sent so far, closes the files and ends the thread. Idempotent. */
  close(): Promise<void> {
    return (this.#closed ??= new Promise<void>((resolve) => {
      this.#resolveClosed = resolve
      if (this.#failed) return resolve()
      this.#send({ t: 'close' })
      this.#flush()
    }))
  }

  #send(m: DistributiveOmit<ToLog, 'at'>): void {
    if (this.#failed) return
    this.#messages.push({ ...m, at: this.#used })
    this.#schedule()
  }

  /** One message per turn of the event loop, after the pipes read in it. */
  #schedule(): void {
    this.#flushing ??= setImmediate(() => this.#flush())
  }

  /** A free shared batch buffer, or one of its own (none free, or an outsized chunk). */
  #batchBuffer(need: number): Buffer {
    const i = need <= BATCH_BYTES ? this.#free.pop() : undefined
    this.#current = i ?? -1
    return i === undefined ? Buffer.from(new ArrayBuffer(need)) : this.#buffers[i]!
  }

  #flush(): void {
    if (this.#flushing) clearImmediate(this.#flushing)
    this.#flushing = undefined
    if (this.#messages.length === 0 && this.#used === 0) return
    const own = this.#bytes && this.#current < 0 ? (this.#bytes.buffer as ArrayBuffer) : undefined
    const batch: LogBatch = {
      messages: this.#messages,
      bytes: this.#bytes ? (own ?? this.#current) : undefined,
      used: this.#used,
    }
    this.#messages = []
    this.#bytes = undefined
    this.#used = 0
    this.#worker.postMessage(batch, own ? [own] : [])
  }

  #received(m: FromLog): void {
    switch (m.t) {
      case 'ack':
        if (m.buffer !== undefined) this.#free.push(m.buffer)
        this.#inFlight -= m.bytes
        if (this.#inFlight <= IN_FLIGHT_HIGH_WATER_BYTES / 2 && !this.congested) this.#drained()
        return
      case 'status':
        this.#status = m.status
        this.#onStatus(m.status)
        return
      case 'problem':
        this.#onProblem(m.message)
        return
      case 'closed':
        void this.#worker.terminate()
        return
    }
  }

  #drained(): void {
    const waiting = this.#drainWaiters
    this.#drainWaiters = []
    waiting.forEach((fn) => fn())
  }

  /**
   * The log's thread died (a bug, or out of memory): say so loudly on stderr, and keep the
   * children running and their pipes read, their output dropped, rather than block them.
   */
  #failure(err: unknown): void {
    if (this.#failed) return
    this.#failed = true
    this.#inFlight = 0
    this.#messages = []
    this.#bytes = undefined
    this.#used = 0
    this.#onProblem(
      `the log thread failed: ${errorMessage(err)}; child output and supervisor events are no longer logged`,
    )
    this.#drained()
    this.#resolveClosed?.()
  }
}
