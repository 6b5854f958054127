/**
 * The log's thread (see ThreadedLog): takes child pipes' chunks and supervisor event records from
 * the main thread, in order, and does the rest here: line splitting, record encoding, the
 * writes, rotation. Acknowledges the bytes it took once its destinations can take more, which
 * is the main thread's back-pressure.
 */
import { readlinkSync } from 'node:fs'
import { getPriority, setPriority } from 'node:os'
import { parentPort, workerData } from 'node:worker_threads'
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
/** Bytes taken and not yet acknowledged. */
let taken = 0
let ackWaiting = false
let lastStatus = ''

const sendStatus = (): void => {
  const status = log.status()
  const text = JSON.stringify(status)
  if (text === lastStatus) return
  lastStatus = text
  post({ t: 'status', status })
}

/**
 * Acknowledges what was taken once no destination is congested (at once if none is), with the
 * shared batch buffer, free again (nothing here keeps a reference into it): one message back
 * per batch. While congested, the buffer goes back at once and the bytes once it drains.
 */
const ack = (buffer: number | undefined): void => {
  if (!ackWaiting && !log.congested) {
    const bytes = taken
    taken = 0
    return post({ t: 'ack', bytes, ...(buffer === undefined ? {} : { buffer }) })
  }
  if (buffer !== undefined) post({ t: 'ack', bytes: 0, buffer })
  if (ackWaiting) return
  ackWaiting = true
  log.whenDrained(() => {
    ackWaiting = false
    const bytes = taken
    taken = 0
    if (bytes > 0) post({ t: 'ack', bytes })
  })
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
      void log.close().then(() => {
        sendStatus()
        post({ t: 'closed' })
        port.close()
      })
      return
  }
}

port.on('message', ({ messages, bytes, used }: LogBatch) => {
  let next = 0
  if (bytes !== undefined) {
    const b = typeof bytes === 'number' ? buffers[bytes]! : Buffer.from(bytes)
    for (let p = 0; p < used;) {
      while (next < messages.length && messages[next]!.at <= p) handle(messages[next++]!)
      const id = b.readUInt32LE(p)
      const length = b.readUInt32LE(p + 4)
      const time = b.readDoubleLE(p + 8)
      p += CHUNK_HEADER_BYTES
      pipes.get(id)?.push(b.subarray(p, p + length), time)
      taken += length
      p += length
    }
  }
  while (next < messages.length) handle(messages[next++]!)
  ack(typeof bytes === 'number' ? bytes : undefined)
})
sendStatus()
