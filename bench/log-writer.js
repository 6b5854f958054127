#!/usr/bin/env node
// A log-heavy child for bench/logs.js: writes numbered lines to stdout as fast as the reader
// takes them, for DURATION seconds, then prints `done <writerId> <count>` to stderr and exits 0.
//
// Each line is `<writerId> <seq> xxxx...` padded to LINE_BYTES (default 100, newline included);
// seq counts from 0. Lines are written LINES_PER_WRITE at a time (default 64, about 6.4 KB per
// write(), as a buffering logger such as pino's asynchronous destination does; 1 gives one
// write() per line). Backpressure is respected: stdout to a pipe is asynchronous in Node on
// Linux, so when write() returns false the writer waits for 'drain' before writing on. A line
// counts as written once it is handed to write(); before the summary the writer waits until
// stdout has passed every queued byte to the kernel, so the count is exact.
//
// Environment: WRITER_ID (default 0), DURATION in seconds (default 10), LINES_PER_WRITE,
// LINE_BYTES. Optional argv[2]: a directory to write `writer-<id>.json` into (the counts, pid,
// own CPU time, start and end times in epoch ms) for the benchmark.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'

const ID = process.env.WRITER_ID ?? '0'
const DURATION_MS = Number(process.env.DURATION ?? 10) * 1000
const LINES_PER_WRITE = Math.max(1, Number(process.env.LINES_PER_WRITE ?? 64))
const LINE_BYTES = Math.max(32, Number(process.env.LINE_BYTES ?? 100))
const resultDir = process.argv[2]

const PAD = 'x'.repeat(LINE_BYTES)
const line = (seq) => {
  const head = `${ID} ${seq} `
  return head + PAD.slice(0, Math.max(1, LINE_BYTES - 1 - head.length)) + '\n'
}

let seq = 0
let bytes = 0
let writes = 0
let drainWaits = 0
let failed

process.stdout.on('error', (err) => {
  failed = err
})

const startMs = Date.now()
const t0 = performance.now()
const deadline = t0 + DURATION_MS

const pump = () => {
  while (failed === undefined) {
    if (performance.now() >= deadline) return finish()
    let chunk = ''
    for (let i = 0; i < LINES_PER_WRITE; i++) chunk += line(seq++)
    bytes += chunk.length
    writes++
    if (!process.stdout.write(chunk)) {
      drainWaits++
      process.stdout.once('drain', pump)
      return
    }
  }
  finish()
}

const finish = () => {
  // Everything handed to write() must reach the pipe before the count is reported.
  if (failed === undefined && process.stdout.writableLength > 0) {
    setTimeout(finish, 1)
    return
  }
  const endMs = Date.now()
  const cpu = process.cpuUsage()
  const result = {
    id: ID,
    pid: process.pid,
    lines: seq,
    bytes,
    writes,
    drainWaits,
    cpuMs: Math.round((cpu.user + cpu.system) / 1000),
    startMs,
    endMs,
    ...(failed ? { error: String(failed.message ?? failed) } : {}),
  }
  if (resultDir) writeFileSync(join(resultDir, `writer-${ID}.json`), JSON.stringify(result))
  // Exit explicitly: a child with an IPC channel (PM2's fork mode) would otherwise stay alive.
  process.stderr.write(`done ${ID} ${seq}${failed ? ` error ${result.error}` : ''}\n`, () =>
    process.exit(failed ? 1 : 0),
  )
}

pump()
