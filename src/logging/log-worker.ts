/**
 * The log's thread (see ThreadedLog): takes child pipes' chunks and supervisor event records from
 * the main thread, in order, and does the rest here: line splitting, record encoding, the
 * writes, rotation. Takes a batch only while its destinations can take more, and acknowledges
 * it once taken whole: the main thread's back-pressure.
 */
import { readlinkSync } from 'node:fs'
import { getPriority, setPriority } from 'node:os'
import { parentPort, workerData } from 'node:worker_threads'
import { HeapTrim } from '../seams/heap-trim.js'
import type { PipeOutput } from './pipe-output.js'
import {
  CHUNK_HEADER_BYTES,
  type FromLog,
  type LogBatch,
  type LogWorkerData,
  type ToLog,
} from './threaded-log.js'
import { UnifiedLog } from './unified-log.js'

const port = parentPort!
const post = (m: FromLog) => port.postMessage(m)
const data = workerData as LogWorkerData

/**
 * This thread yields to the supervisor's main thread when they compete for a core: its nice
 * value is raised by LOG_THREAD_NICE (threaded-log.ts) (Linux: setpriority on this thread's id, found through
 * /proc/thread-self; raising one's own nice value needs no privilege). A flood then slows the
 * log (and, through back-pressure, the children), not lease renewals and control requests.
 * Where that is not possible the thread runs at the process's priority.
 */
if (data.nice > 0 && process.platform === 'linux') {
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop())
    if (Number.isInteger(tid) && tid > 0)
      setPriority(tid, Math.min(19, getPriority(tid) + data.nice))
  } catch {
    // no /proc, or not allowed: the process's priority
  }
}
const buffers = data.buffers.map((b) => Buffer.from(b))
// This thread's heap, kept level over months of logging (see HeapTrim).
const heapTrim = new HeapTrim().start()
const log = new UnifiedLog(data.logs, {
  node: data.node,
  pretty: data.pretty,
  onProblem: (message) => {
    post({ t: 'problem', message })
    // A problem is what changes a destination's status (an error, dropped lines). Later: the
    // first can come while the log is being built.
    queueMicrotask(() => sendStatus())
  },
})
const pipes = new Map<number, PipeOutput>()
let lastStatus = ''

const sendStatus = (): void => {
  const status = log.status()
  const text = JSON.stringify(status)
  if (text === lastStatus) return
  lastStatus = text
  post({ t: 'status', status })
}

const handle = (m: ToLog): void => {
  switch (m.t) {
    case 'event':
      log.event(m.record)
      return
    case 'pipe':
      pipes.set(m.id, log.output(m.source))
      // It may have opened a per-instance file.
      sendStatus()
      return
    case 'end':
      pipes.get(m.id)?.end(m.time)
      pipes.delete(m.id)
      return
    case 'reopen':
      log.reopen()
      return
    case 'close':
      heapTrim.stop()
      void log.close().then(() => {
        sendStatus()
        post({ t: 'closed' })
        port.close()
      })
      return
  }
}

/** A batch being taken: its chunks' bytes, how far it has been taken, how many bytes so far. */
interface Taking {
  batch: LogBatch
  bytes: Buffer | undefined
  /** The offset of the next chunk, and the index of the next message. */
  p: number
  next: number
  taken: number
}

/** Batches received and not yet taken whole, oldest first. */
const batches: Taking[] = []
let waiting = false

/**
 * Takes the batches in order, chunk by chunk, while no destination is congested; then waits
 * for them to drain. A batch's raw bytes stay in its buffer until they are taken (2.4 times
 * fewer bytes than their records, and no allocation), so the writers' queues stay near their
 * high-water mark, and the main thread, short of free buffers, pauses the pipes. A batch
 * taken whole is acknowledged with its buffer, free again (nothing here keeps a reference
 * into it).
 */
const takeBatches = (): void => {
  while (batches.length > 0) {
    const t = batches[0]!
    if (!take(t)) {
      waiting = true
      return log.whenDrained(() => {
        waiting = false
        takeBatches()
      })
    }
    batches.shift()
    const { bytes } = t.batch
    if (typeof bytes === 'number') post({ t: 'ack', bytes: t.taken, buffer: bytes })
    else if (t.taken > 0) post({ t: 'ack', bytes: t.taken })
  }
}

/** Takes what is left of a batch; false when a destination became congested before its end. */
const take = (t: Taking): boolean => {
  const { messages, used } = t.batch
  const b = t.bytes
  if (b !== undefined) {
    while (t.p < used) {
      if (log.congested) return false
      while (t.next < messages.length && messages[t.next]!.at <= t.p) handle(messages[t.next++]!)
      const id = b.readUInt32LE(t.p)
      const length = b.readUInt32LE(t.p + 4)
      const time = b.readDoubleLE(t.p + 8)
      const p = t.p + CHUNK_HEADER_BYTES
      t.p = p + length
      t.taken += length
      pipes.get(id)?.push(b.subarray(p, p + length), time)
    }
  }
  while (t.next < messages.length) handle(messages[t.next++]!)
  return true
}

port.on('message', (batch: LogBatch) => {
  const { bytes } = batch
  batches.push({
    batch,
    bytes:
      bytes === undefined
        ? undefined
        : typeof bytes === 'number'
          ? buffers[bytes]!
          : Buffer.from(bytes),
    p: 0,
    next: 0,
    taken: 0,
  })
  if (!waiting) takeBatches()
})
sendStatus()
