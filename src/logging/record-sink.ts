/**
 * Where a log record is encoded in place: `reserve(n)` returns a buffer with at least `n` bytes
 * free from `offset`; the producer writes the record there and then `commit`s its length. A
 * LogWriter is one (the record lands in its queue: no copy); a RecordBuffer holds one record
 * to copy to several writers.
 */
export interface RecordSink {
  reserve(n: number): Buffer
  /** Where the record starts in the buffer `reserve` returned. */
  readonly offset: number
  commit(length: number): void
}

/**
 * One reusable buffer that holds the latest record: `bytes[0, length)`. It grows when a record
 * needs more room and never shrinks.
 */
export class RecordBuffer implements RecordSink {
  bytes: Buffer
  length = 0
  readonly offset = 0

  constructor(initialBytes = 64 * 1024) {
    this.bytes = Buffer.allocUnsafe(initialBytes)
  }

  reserve(n: number): Buffer {
    if (n > this.bytes.length) this.bytes = Buffer.allocUnsafe(Math.max(n, 2 * this.bytes.length))
    return this.bytes
  }

  commit(length: number): void {
    this.length = length
  }
}
