/**
 * The log's thread (see ThreadedLog): takes child pipes' chunks and supervisor event records from
 * the main thread, in order, and does the rest here: line splitting, record encoding, the
 * writes, rotation. Acknowledges the bytes it took once its destinations can take more, which
 * is the main thread's back-pressure.
 */
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
 * batch's buffer, for reuse (nothing here keeps a reference into it): one message back per
 * batch. While congested, the buffer goes back at once and the bytes once it drains.
 */
const ack = (buffer: ArrayBuffer | undefined): void => {
  if (!ackWaiting && !log.congested) {
    const bytes = taken
    taken = 0
    return port.postMessage({ t: 'ack', bytes, buffer } satisfies FromLog, buffer ? [buffer] : [])
  }
  if (buffer) port.postMessage({ t: 'ack', bytes: 0, buffer } satisfies FromLog, [buffer])
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
  if (bytes) {
    const b = Buffer.from(bytes)
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
  ack(bytes)
})
sendStatus()
