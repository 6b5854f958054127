/**
 * The log's thread (see ThreadedLog): takes child pipes' chunks and supervisor event records from
 * the main thread, in order, and does the rest here: line splitting, record encoding, the
 * writes, rotation. Acknowledges the bytes it took once its destinations can take more, which
 * is the main thread's back-pressure.
 */
import { parentPort, workerData } from 'node:worker_threads'
import type { PipeOutput } from './pipe-output.js'
import type { FromLog, LogBatch, LogWorkerData, ToLog } from './threaded-log.js'
import { UnifiedLog } from './unified-log.js'

const port = parentPort!
const post = (m: FromLog) => port.postMessage(m)
const data = workerData as LogWorkerData
const log = new UnifiedLog(data.logs, {
  node: data.node,
  pretty: data.pretty,
  onProblem: (message) => post({ t: 'problem', message }),
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

/** Acknowledges what was taken, once no destination is congested (at once if none is). */
const ack = (): void => {
  if (ackWaiting) return
  ackWaiting = true
  log.whenDrained(() => {
    ackWaiting = false
    const bytes = taken
    taken = 0
    if (bytes > 0) post({ t: 'ack', bytes })
    sendStatus()
  })
}

const handle = (m: ToLog, bytes: Buffer): void => {
  switch (m.t) {
    case 'chunk':
      pipes.get(m.id)?.push(bytes.subarray(m.start, m.end), m.time)
      taken += m.end - m.start
      return
    case 'event':
      log.event(m.record)
      return
    case 'pipe':
      pipes.set(m.id, log.output(m.source))
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

const NO_BYTES = Buffer.alloc(0)

port.on('message', (batch: LogBatch) => {
  const bytes = batch.bytes ? Buffer.from(batch.bytes) : NO_BYTES
  for (const m of batch.messages) handle(m, bytes)
  ack()
})
sendStatus()
