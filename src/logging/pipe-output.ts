import { LineSplitter, type LineHandler } from './line-splitter.js'

/**
 * Where the bytes read from one child pipe go, chunk by chunk, as read: `push` each chunk with
 * the time it was read (epoch ms; its lines share it), `end` once the pipe has closed. A chunk's
 * memory is the reader's again once `push` returns (the next read goes into it: see openPipe in
 * process/pipe-reader.ts): an output copies what it keeps.
 */
export interface PipeOutput {
  push(chunk: Buffer, time: number): void
  end(time: number): void
}

/**
 * A PipeOutput that splits the pipe into lines on the calling thread (see LineSplitter) and
 * hands each one, with its chunk's read time, to `onLine`.
 */
export const splitLines = (
  maxLineBytes: number,
  onLine: (...args: [...Parameters<LineHandler>, time: number]) => void,
): PipeOutput => {
  let time = 0
  const splitter = new LineSplitter(maxLineBytes, (bytes, start, end, truncated) =>
    onLine(bytes, start, end, truncated, time),
  )
  return {
    push(chunk, t) {
      time = t
      splitter.push(chunk)
    },
    end(t) {
      time = t
      splitter.end()
    },
  }
}
