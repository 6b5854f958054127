/**
 * A line as read from a child's pipe: `bytes[start, end)` (as the child wrote them, without the
 * newline; UTF-8 if the child wrote UTF-8) and whether it was cut. The bytes are the handler's
 * only during the call: a handler that keeps a line copies or decodes it.
 */
export type LineHandler = (bytes: Buffer, start: number, end: number, truncated: boolean) => void

const NL = 0x0a
const CR = 0x0d

/**
 * Splits a byte stream into lines. Lines split across chunks are joined; a line longer than
 * `maxLineBytes` is cut to that many bytes (never inside a UTF-8 character) and reported with
 * `truncated`, the rest of it up to the newline discarded, so one endless line holds at most
 * `maxLineBytes` of memory. `end()` emits a last line that has no newline. A trailing CR (CRLF
 * line ends) is dropped.
 */
export class LineSplitter {
  readonly #max: number
  readonly #emit: LineHandler
  #parts: Buffer[] = []
  #bytes = 0
  #truncated = false

  constructor(maxLineBytes: number, emit: LineHandler) {
    this.#max = maxLineBytes
    this.#emit = emit
  }

  push(chunk: Buffer): void {
    let start = 0
    for (;;) {
      const nl = chunk.indexOf(NL, start)
      if (nl === -1) {
        if (start < chunk.length) this.#keep(chunk.subarray(start))
        return
      }
      if (this.#bytes === 0 && !this.#truncated && nl - start <= this.#max) {
        // The common case: a whole line inside one chunk, handed on in place.
        const end = nl > start && chunk[nl - 1] === CR ? nl - 1 : nl
        this.#emit(chunk, start, end, false)
      } else {
        this.#keep(chunk.subarray(start, nl))
        this.#flush()
      }
      start = nl + 1
    }
  }

  /** The stream ended: a pending line without its newline is emitted. */
  end(): void {
    if (this.#bytes > 0 || this.#truncated) this.#flush()
  }

  #keep(bytes: Buffer): void {
    if (this.#truncated) return
    const room = this.#max - this.#bytes
    if (bytes.length <= room) {
      // Copied: the chunk's memory is the stream's to reuse.
      this.#parts.push(Buffer.from(bytes))
      this.#bytes += bytes.length
      return
    }
    const cut = utf8Boundary(bytes, room)
    if (cut > 0) this.#parts.push(Buffer.from(bytes.subarray(0, cut)))
    this.#bytes += cut
    this.#truncated = true
  }

  #flush(): void {
    const buf = this.#parts.length === 1 ? this.#parts[0]! : Buffer.concat(this.#parts, this.#bytes)
    const truncated = this.#truncated
    const end =
      !truncated && buf.length > 0 && buf[buf.length - 1] === CR ? buf.length - 1 : buf.length
    this.#parts = []
    this.#bytes = 0
    this.#truncated = false
    this.#emit(buf, 0, end, truncated)
  }
}

/** The largest n <= limit at which `bytes` can be cut without splitting a UTF-8 character. */
const utf8Boundary = (bytes: Buffer, limit: number): number => {
  let n = limit
  // Back over continuation bytes (10xxxxxx) to the start of the character that straddles n.
  while (n > 0 && n < bytes.length && (bytes[n]! & 0xc0) === 0x80) n--
  return n
}
