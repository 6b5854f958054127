import { Socket, type OnReadOpts } from 'node:net'
import type { Readable } from 'node:stream'

/**
 * One read buffer for every pipe opened by openPipe: a pipe holds 64 KiB (Linux), so a read takes
 * at most this much. Reads never overlap (each read's callback runs before the event loop reads
 * again), and every consumer copies what it keeps before its callback returns.
 */
const READ_BUFFER = Buffer.allocUnsafeSlow(64 * 1024)

/** Pipes opened by openPipe: where readPipe sets the consumer of their chunks. */
const directReaders = new WeakMap<Readable, (consumer: (chunk: Buffer) => boolean) => void>()

/**
 * A pipe's read end (an fd of ours: process/fifo-pipes.ts) as a stream that reads into
 * READ_BUFFER: a read allocates nothing. (Node's own streams allocate a buffer of 64 KiB for
 * each read, garbage at once; in a flood of child output that was hundreds of MB a second of
 * external memory, and the full garbage collections it brought on.) Nothing is read until a
 * consumer starts it: readPipe (logging/read-pipe.ts) takes the chunks straight from the
 * buffer; any other consumer ('data' listeners) gets a copy of each.
 */
export const openPipe = (fd: number): Readable => {
  let consumer: ((chunk: Buffer) => boolean) | undefined
  const onread: OnReadOpts = {
    buffer: READ_BUFFER,
    callback: (n) => {
      const chunk = READ_BUFFER.subarray(0, n)
      if (consumer) return consumer(chunk)
      socket.emit('data', Buffer.from(chunk))
      return true
    },
  }
  // manualStart: not in @types/node; Node reads nothing until resume() (a consumer) asks.
  const options = { fd, readable: true, writable: false, manualStart: true, onread }
  const socket = new Socket(options)
  directReaders.set(socket, (fn) => (consumer = fn))
  return socket
}

/**
 * For a stream from openPipe: sets the consumer that takes each chunk straight from the shared
 * buffer (returning false pauses the reads until the stream's resume()). Undefined for others.
 */
export const directReader = (
  input: Readable,
): ((consumer: (chunk: Buffer) => boolean) => void) | undefined => directReaders.get(input)
