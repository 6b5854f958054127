#!/usr/bin/env node
// The small HTTP server that bench/footprint.js runs under each supervisor: listens on PORT and
// answers every request (GET /health too) with 200. Idle unless LOG_MS is set: then it writes a
// line to stdout every LOG_MS ms (and one to stderr every tenth time), as a server's access log
// would, for the soak. No dependencies, so every supervisor runs the same thing.
import { createServer } from 'node:http'

const port = Number(process.env.PORT)
if (!Number.isInteger(port) || port <= 0) {
  console.error(
    `footprint-server: PORT must be a port number, got ${JSON.stringify(process.env.PORT)}`,
  )
  process.exit(2)
}
const server = createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain' })
  res.end('ok\n')
})
server.listen(port, () => console.log(`footprint-server listening on port ${port}`))
const logMs = Number(process.env.LOG_MS ?? 0)
if (logMs > 0) {
  let n = 0
  setInterval(() => {
    n++
    console.log(`GET /items/${n} 200 ${n % 97}ms port=${port} pid=${process.pid}`)
    if (n % 10 === 0) console.error(`warning: slow request ${n} on port ${port}`)
  }, logMs)
}
process.on('SIGTERM', () => {
  server.close(() => process.exit(0))
  server.closeIdleConnections()
})
