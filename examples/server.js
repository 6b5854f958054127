#!/usr/bin/env node
// A small example server for config.example.json: answers every request with who it is, and
// GET /health with 200. It stops gracefully on SIGTERM: stops accepting, finishes what it has.
// Its role in a cluster (active or standby, and the epoch) comes from tandem's child helper: in a
// cluster (TANDEM_ROLE set) it answers 503 to everything but /health while it is not active, and
// it says so to its supervisor (`cooperative: true`). Run by a node without ha, or by hand, it is
// always active. With `socket` in its component (tandem holds the port), it serves the socket
// tandem passes it (fd 3); otherwise it listens on PORT itself.
import { createServer } from 'node:http'
import { listenInherited, tandemChild } from 'tandem/child'

const name = process.argv[2] ?? 'server'
const port = Number(process.env.PORT)
if (!Number.isInteger(port) || port <= 0) {
  console.error(
    `${name}: PORT must be set to a port number, got ${JSON.stringify(process.env.PORT)}`,
  )
  process.exit(2)
}
const role = tandemChild({ cooperative: true })
role.onActivate((epoch) => console.log(`${name}: active now (epoch ${epoch})`))
role.onDeactivate((why) => console.log(`${name}: no longer active: ${why}`))
const me = {
  component: name,
  instance: Number(process.env.TANDEM_INSTANCE ?? 0),
  port,
  pid: process.pid,
}

const server = createServer((req, res) => {
  // Checked right before answering: past its deadline an active-only server must not answer as
  // the active one (a standby node may be taking over).
  const active = role.isActive()
  const health = req.url === '/health'
  res.writeHead(active || health ? 200 : 503, { 'content-type': 'application/json' })
  const body = health
    ? { status: 'UP' }
    : { ...me, role: active ? 'active' : 'standby', epoch: role.epoch, url: req.url }
  res.end(JSON.stringify(body) + '\n')
})
listenInherited(server, { port }, () => {
  console.log(`${name} listening on port ${port}`)
  // Readiness ipc: tandem gave it an IPC channel and waits for this.
  process.send?.('ready')
})
process.on('SIGTERM', () => {
  console.log(`${name} on port ${port}: SIGTERM, closing`)
  server.close(() => process.exit(0))
  server.closeIdleConnections()
})
