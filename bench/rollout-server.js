#!/usr/bin/env node
// The HTTP server bench/rollout.js rolls, under tandem and under PM2 (the same file for both).
//
//   PORT           port to listen on (127.0.0.1)
//   STARTUP_MS     wait this long after the process starts before listening (default 0): a
//                  server's own start-up work (a JVM loading classes, caches warming). An idle
//                  wait (a timer), not CPU work, so that it does not take CPU from the load.
//   RESPONSE_MS    answer each request this long after it arrives (default 5): requests are
//                  in progress when the stop signal comes
//   VERSION        sent back in an x-version header
//   EVENTS_FILE    append one JSON line per event to this file (O_APPEND, one write each):
//                  {ev: 'start', t: the process's start (performance.timeOrigin, epoch ms)},
//                  {ev: 'listening', t}, {ev: 'signal', sig, t}, {ev: 'exit', t}; each with pid,
//                  port and version. start -> listening is the instance's own start-to-ready time.
//
// GET /ready answers 200 once listening (the readiness and HAProxy check path); anything else
// answers 200 with the pid after RESPONSE_MS. On SIGTERM or SIGINT (PM2's default kill signal)
// it shuts down gracefully: stops accepting, closes idle keep-alive connections, lets requests
// in progress finish, then exits 0. With PM2 (`wait_ready`) it sends 'ready' on its IPC channel
// once listening.
import { appendFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { performance } from 'node:perf_hooks'

const env = process.env
const port = Number(env.PORT)
const startupMs = Number(env.STARTUP_MS ?? 0)
const responseMs = Number(env.RESPONSE_MS ?? 5)
const version = env.VERSION ?? ''

const record = (ev, extra = {}) => {
  if (!env.EVENTS_FILE) return
  const line = { ev, pid: process.pid, port, version, t: Date.now(), ...extra }
  appendFileSync(env.EVENTS_FILE, `${JSON.stringify(line)}\n`)
}
record('start', { t: performance.timeOrigin })

let inFlight = 0
const server = createServer((req, res) => {
  if (version) res.setHeader('x-version', version)
  if (req.url === '/ready') return res.end('ready\n')
  inFlight++
  setTimeout(() => {
    inFlight--
    res.end(`${process.pid}\n`)
  }, responseMs)
})
server.keepAliveTimeout = 30_000

let stopping = false
const stop = (sig) => {
  if (stopping) return
  stopping = true
  record('signal', { sig, inFlight })
  server.close(() => {
    record('exit')
    process.exit(0)
  })
  server.closeIdleConnections()
  // A connection that becomes idle after its last answer is closed too (close() only closes
  // those idle at the time it is called, in Node 20).
  const t = setInterval(() => server.closeIdleConnections(), 5)
  t.unref()
}
process.on('SIGTERM', () => stop('SIGTERM'))
process.on('SIGINT', () => stop('SIGINT'))

setTimeout(() => {
  server.listen(port, '127.0.0.1', () => {
    record('listening')
    console.log(`rollout-server ${process.pid} ${version} listening on ${port}`)
    process.send?.('ready')
  })
}, startupMs)
