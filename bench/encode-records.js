#!/usr/bin/env node
// Micro-benchmark of the log thread's per-line work: splitting a chunk at its newlines
// (Buffer.indexOf, as LineSplitter does) and encoding each line's record (ChildRecords.encode)
// into a 1 MiB block, the chunk in a SharedArrayBuffer at an odd offset as the batch buffers
// hold it. 640 lines of 100 bytes, 3,000 times a round; prints the best of ROUNDS (default 8)
// rounds in ns per line, so a busy machine shows its quietest moment.
//
//   npm run build && node bench/encode-records.js
//   ENCODE_FROM=/tmp/base/dist/logging/child-record.js node bench/encode-records.js   # another build
//
// It runs on one thread with no I/O: the log thread's own cost per line, not the supervisor's.
import { pathToFileURL } from 'node:url'

const from = process.env.ENCODE_FROM
  ? pathToFileURL(process.env.ENCODE_FROM).href
  : new URL('../dist/logging/child-record.js', import.meta.url).href
const { ChildRecords } = await import(from)
const ROUNDS = Number(process.env.ROUNDS ?? 8)

/** A RecordSink like a LogWriter's block, without the writes: wraps around at its end. */
class Block {
  bytes = Buffer.allocUnsafeSlow(1 << 20)
  offset = 0
  reserve(n) {
    if (this.offset + n > this.bytes.length) this.offset = 0
    return this.bytes
  }
  commit(n) {
    this.offset += n
  }
}

let text = ''
for (let i = 0; i < 640; i++) text += `w0 ${i} ${'x'.repeat(100 - 4 - String(i).length - 1)}\n`
const shared = Buffer.from(new SharedArrayBuffer(1 << 18))
const chunk = shared.subarray(19, 19 + Buffer.byteLength(text))
chunk.write(text)
const records = new ChildRecords({
  node: 'n1',
  component: 'writer',
  instance: 0,
  port: 29000,
  childPid: 1234,
  stream: 'out',
})
const block = new Block()

const round = (encode) => {
  let lines = 0
  const t0 = performance.now()
  for (let rep = 0; rep < 3000; rep++) {
    // A new time stamp every 8 chunks: the record's start is rebuilt once per millisecond.
    const time = 1_700_000_000_000 + (rep >> 3)
    for (let start = 0; ;) {
      const nl = chunk.indexOf(10, start)
      if (nl < 0) break
      if (encode) records.encode(chunk, start, nl, false, time, block)
      lines++
      start = nl + 1
    }
  }
  return ((performance.now() - t0) * 1e6) / lines
}

const best = (encode) => Math.min(...Array.from({ length: ROUNDS }, () => round(encode)))
console.log(`${from}`)
console.log(`  split + encode: ${best(true).toFixed(1)} ns per 100-byte line (best of ${ROUNDS})`)
console.log(`  split only:     ${best(false).toFixed(1)} ns per line`)
