#!/usr/bin/env node
// A fixed-rate HTTP load generator that counts every failure exactly: one GET per request on a
// new TCP connection (`Connection: close`), sent on schedule whatever the earlier ones are doing
// (no connection pool to wait for, so a stalled server cannot slow the sender down and hide its
// stall: wrk2's fix for coordinated omission). Latency is measured from the time the request was
// due, to the end of its answer. Each request ends as `ok` (a complete 2xx answer) or as what
// went wrong: the connect's or socket's error code (ECONNREFUSED, ECONNRESET, EPIPE, ...),
// `ETIMEDOUT` (no complete answer within --timeout-ms), `HTTP <status>`, or `incomplete` (the
// connection closed before the whole answer arrived).
//
// Used by bench/restart.js and by tests that put a real load straight on an instance's port (no
// load balancer); run in its own process so that the measuring process's own work does not
// delay the sending.
//
//   node bench/fixed-rate-load.js --port N [--host 127.0.0.1] [--rate 200] [--path /]
//        [--timeout-ms 10000] [--duration-s S]
//
// Runs until --duration-s has passed, or until SIGTERM/SIGINT or its stdin closes; then sends no
// more, waits for the requests in flight (at most --timeout-ms) and prints one JSON object:
//   { sent, ok, failures: { <outcome>: count }, latencyMs: { p50, p90, p99, p999, max },
//     samples: [[dueAt, latencyMs, outcome], ...] }
// dueAt is `performance.timeOrigin + performance.now()` (ms, on the wall clock's scale: the
// same scale another process on the host uses to time its own actions, a kill for instance).
// "started <dueAt>" is written to stderr once the first request is due.
import { connect } from 'node:net'
import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string' },
    rate: { type: 'string', default: '200' },
    path: { type: 'string', default: '/' },
    'timeout-ms': { type: 'string', default: '10000' },
    'duration-s': { type: 'string' },
  },
})
const num = (name, value, min) => {
  const n = Number(value)
  if (!Number.isFinite(n) || n < min) {
    console.error(`fixed-rate-load: --${name} must be a number >= ${min}, got ${String(value)}`)
    process.exit(2)
  }
  return n
}
const host = values.host
const port = num('port', values.port, 1)
const rate = num('rate', values.rate, 0.001)
const timeoutMs = num('timeout-ms', values['timeout-ms'], 1)
const durationS =
  values['duration-s'] === undefined ? undefined : num('duration-s', values['duration-s'], 0)
const request = `GET ${values.path} HTTP/1.1\r\nHost: ${host}:${port}\r\nConnection: close\r\n\r\n`
const wall = () => performance.timeOrigin + performance.now()

/** The outcome of a whole answer: ok, `HTTP <status>` or `incomplete`. */
const judge = (raw) => {
  const head = raw.indexOf('\r\n\r\n')
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(raw)
  if (head < 0 || !status) return 'incomplete'
  const length = /\r\ncontent-length:\s*(\d+)/i.exec(raw.slice(0, head))
  // Answers here are ASCII: string length is byte length (the socket decodes latin1).
  if (length && raw.length - head - 4 < Number(length[1])) return 'incomplete'
  const code = Number(status[1])
  return code >= 200 && code < 300 ? 'ok' : `HTTP ${code}`
}

const samples = []
let inFlight = 0
let allDone

const send = (dueAt) => {
  inFlight++
  let raw = ''
  let finished = false
  const socket = connect({ host, port })
  const finish = (outcome) => {
    if (finished) return
    finished = true
    clearTimeout(timer)
    socket.destroy()
    samples.push([dueAt, wall() - dueAt, outcome])
    if (--inFlight === 0) allDone?.()
  }
  const timer = setTimeout(() => finish('ETIMEDOUT'), timeoutMs)
  socket.setEncoding('latin1')
  socket.once('connect', () => socket.write(request))
  socket.on('data', (d) => (raw += d))
  socket.once('end', () => finish(judge(raw)))
  socket.once('close', () => finish(judge(raw)))
  socket.once('error', (err) => finish(err.code ?? 'error'))
}

const interval = 1000 / rate
let stopping = false
let timer
const start = performance.now()
let next = start
process.stderr.write(`started ${wall()}\n`)
const tick = () => {
  if (stopping) return
  const now = performance.now()
  // Every request that is due goes now, late ones included (a busy event loop sends a burst,
  // and their latency counts from when they were due).
  while (next <= now) {
    send(performance.timeOrigin + next)
    next += interval
  }
  timer = setTimeout(tick, Math.max(0, next - performance.now()))
}
tick()

const quantile = (sorted, q) =>
  sorted.length === 0
    ? null
    : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]
const r2 = (x) => (x === null ? null : Math.round(x * 100) / 100)

const stop = async () => {
  if (stopping) return
  stopping = true
  clearTimeout(timer)
  if (inFlight > 0) await new Promise((resolve) => (allDone = resolve))
  samples.sort((a, b) => a[0] - b[0])
  const failures = {}
  const latencies = []
  for (const [, latency, outcome] of samples) {
    if (outcome === 'ok') latencies.push(latency)
    else failures[outcome] = (failures[outcome] ?? 0) + 1
  }
  latencies.sort((a, b) => a - b)
  const summary = {
    sent: samples.length,
    ok: latencies.length,
    failures,
    latencyMs: {
      p50: r2(quantile(latencies, 0.5)),
      p90: r2(quantile(latencies, 0.9)),
      p99: r2(quantile(latencies, 0.99)),
      p999: r2(quantile(latencies, 0.999)),
      max: r2(latencies.at(-1) ?? null),
    },
    samples: samples.map(([at, latency, outcome]) => [r2(at), r2(latency), outcome]),
  }
  process.stdout.write(JSON.stringify(summary) + '\n', () => process.exit(0))
}

process.once('SIGTERM', () => void stop())
process.once('SIGINT', () => void stop())
process.stdin.once('end', () => void stop())
process.stdin.once('error', () => void stop())
process.stdin.resume()
if (durationS !== undefined) setTimeout(() => void stop(), durationS * 1000)
