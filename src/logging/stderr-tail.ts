import { LineSplitter } from './line-splitter.js'

/**
 * Bytes of recent stderr kept for the crash report: enough for its last lines in any usual case
 * (20 lines of a stack trace), little enough for an instance that floods stderr.
 */
export const STDERR_TAIL_BYTES = 64 * 1024

/**
 * The last lines a child wrote to stderr, for the report of its crash. It keeps the latest raw
 * chunks (copied: the chunk itself goes on to the log, maybe to another thread), at least
 * STDERR_TAIL_BYTES of them, and splits them into lines only when asked, so a child that floods
 * stderr costs a copy per chunk, not a decoded string per line. Iterating it gives up to `lines`
 * last lines, cut at `maxLineBytes` as the log cuts them; a line that began before the bytes
 * kept is left out rather than shown cut.
 */
export class StderrTail implements Iterable<string> {
  readonly #maxLineBytes: number
  readonly #lines: number
  #chunks: Buffer[] = []
  #bytes = 0
  /** Whether the kept bytes start at a line's start (the stream's, or after a newline). */
  #atLineStart = true

  constructor(maxLineBytes: number, lines: number) {
    this.#maxLineBytes = maxLineBytes
    this.#lines = lines
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return
    this.#chunks.push(Buffer.from(chunk))
    this.#bytes += chunk.length
    while (this.#chunks.length > 1 && this.#bytes - this.#chunks[0]!.length >= STDERR_TAIL_BYTES) {
      const dropped = this.#chunks.shift()!
      this.#bytes -= dropped.length
      this.#atLineStart = dropped[dropped.length - 1] === 0x0a
    }
  }

  *[Symbol.iterator](): Iterator<string> {
    const lines: string[] = []
    let first = !this.#atLineStart
    const splitter = new LineSplitter(this.#maxLineBytes, (bytes, start, end) => {
      if (first) first = false
      else lines.push(bytes.toString('utf8', start, end))
    })
    for (const c of this.#chunks) splitter.push(c)
    splitter.end()
    yield* lines.slice(-this.#lines)
  }
}
