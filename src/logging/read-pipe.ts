import type { Socket } from 'node:net'
import type { Readable } from 'node:stream'
import { directReader } from '../process/pipe-reader.js'

/** The log's back-pressure: while it is congested, children's pipes are not read. */
export interface LogFlow {
  readonly congested: boolean
  whenDrained(fn: () => void): void
}

/**
 * After a read that found less than this in the pipe, the next read waits READ_PAUSE_MS: a child
 * that writes a line per write() would otherwise wake the supervisor for every line.
 */
export const SMALL_READ_BYTES = 16 * 1024
/**
 * How long the next read waits after a small one. Lines arrive at most this much later; a pipe
 * holds 64 KiB (Linux), which a child writing fast fills in well under this, and then waits,
 * so the next read takes a pipeful at once.
 */
export const READ_PAUSE_MS = 1

/**
 * Reads a child's pipe to its end and hands over what it read, in order: every chunk holds all
 * that was waiting in the pipe (a read takes everything buffered, joined), so lines that arrive
 * together are handled together, and after a small read the next one waits READ_PAUSE_MS for
 * more to gather. Once `flow` is congested nothing more is read: the pipe fills up and the child
 * then blocks on its writes, as it would writing to a slow file. Resolves when the pipe has
 * closed (`onEnd` called before, once).
 */
export const readPipe = (
  input: Readable,
  flow: LogFlow,
  onChunk: (chunk: Buffer) => void,
  onEnd: () => void,
): Promise<void> => {
  const direct = directReader(input)
  if (direct) return readDirect(input as Socket, direct, flow, onChunk, onEnd)
  let scheduled = false
  const readAll = (): void => {
    scheduled = false
    for (;;) {
      const chunk = input.read() as Buffer | null
      if (chunk === null) return
      onChunk(chunk)
      scheduled = true
      if (flow.congested) return flow.whenDrained(readAll)
      // A real timer, not the Clock seam: pacing reads decides nothing a test would drive (and
      // a test's fake clock would never read on).
      if (chunk.length < SMALL_READ_BYTES) return void setTimeout(readAll, READ_PAUSE_MS)
      scheduled = false
    }
  }
  input.on('readable', () => {
    if (!scheduled) readAll()
  })
  return closed(input, onEnd)
}

/**
 * Resolves when `input` has closed, `onEnd` called once before: at its end, or at a read error
 * (none expected of a pipe), which ends it as its end would, never a crash.
 */
const closed = (input: Readable, onEnd: () => void): Promise<void> =>
  new Promise((resolve) => {
    let ended = false
    const end = () => {
      if (!ended) onEnd()
      ended = true
    }
    input.once('end', end)
    input.once('error', end)
    input.once('close', () => {
      end()
      resolve()
    })
  })

/** readPipe for a pipe from openPipe: the same pacing and back-pressure, no copy per read. */
const readDirect = (
  socket: Socket,
  setConsumer: (consumer: (chunk: Buffer) => boolean) => void,
  flow: LogFlow,
  onChunk: (chunk: Buffer) => void,
  onEnd: () => void,
): Promise<void> => {
  const resume = (): void => void socket.resume()
  // Returning false pauses the socket (its reads stop) until resume().
  setConsumer((chunk) => {
    onChunk(chunk)
    if (flow.congested) {
      // Never resumed from inside this callback: the socket is still reading until it returns.
      flow.whenDrained(() => setImmediate(resume))
      return false
    }
    if (chunk.length < SMALL_READ_BYTES) {
      // A real timer, not the Clock seam (see readAll above).
      setTimeout(resume, READ_PAUSE_MS)
      return false
    }
    return true
  })
  const done = closed(socket, onEnd)
  resume()
  return done
}
