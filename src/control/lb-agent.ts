import { createServer, type Socket } from 'node:net'
import type { StatusReply } from '../status.js'
import { errorMessage } from '../errors.js'
import { listenOn } from './listen.js'

/** HAProxy sends its `agent-send` string at once; a client silent this long gets no answer. */
export const AGENT_READ_TIMEOUT_MS = 2000
/** An instance id is short; more than this before a newline is not HAProxy. */
export const AGENT_MAX_REQUEST = 256
/** Health checkers need a few connections at a time; the cap keeps a flood off the supervisor. */
export const AGENT_MAX_CONNECTIONS = 64

type InstanceStatus = StatusReply['instances'][number]

/**
 * The agent-check answer for one instance (HAProxy's configuration manual, "agent-check"): a
 * line of words, the administrative state (`ready` cancels a drain, `drain` takes no new
 * connections) and the operational one (`up` counts only if HAProxy's own health check passes
 * too, `down` takes the server out at once), with a `#` comment HAProxy shows on its stats page.
 *
 * - ready, not draining: `up ready`;
 * - draining (a rollout is about to stop it): `drain`, nothing else, so requests in progress and
 *   HAProxy's health check go on while no new connection arrives;
 * - anything else (starting, stopping, backoff, failed, stopped): `down`, so HAProxy stops
 *   sending to it before its own health check notices; `up ready` brings it back.
 * - an id this node does not run: `down`, with the reason.
 */
export const agentReply = (id: string, inst: InstanceStatus | undefined): string => {
  if (!id) return '# tandem: send the instance id (agent-send "<component>#<index>\\n")\n'
  if (!inst) return `down #tandem: no instance ${id} on this node\n`
  if (inst.draining) return `drain #tandem: ${id} draining\n`
  if (inst.state === 'ready') return `up ready #tandem: ${id} ready\n`
  return `down #tandem: ${id} ${inst.stoppedByOperator ? 'stopped by operator' : inst.state}\n`
}

/**
 * HAProxy's agent-check on `host:port` (`control.agent`): for each connection, reads the
 * instance id HAProxy sends (`agent-send "gateway#0\n"`), answers with `agentReply` and closes.
 * Read-only, as the HTTP endpoints are: loopback by default. A client that sends nothing within
 * AGENT_READ_TIMEOUT_MS or too much is closed without an answer (which HAProxy ignores, leaving
 * the server's state to its health check).
 *
 * Rejects with ECONTROL naming host:port when it cannot listen. Resolves to the close function.
 */
export const startLbAgent = async (
  options: { host: string; port: number },
  status: () => StatusReply,
  onError: (message: string) => void,
): Promise<() => Promise<void>> => {
  const sockets = new Set<Socket>()
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => socket.destroy())
    socket.setTimeout(AGENT_READ_TIMEOUT_MS, () => socket.destroy())
    let received = ''
    const answer = (id: string) => {
      socket.removeAllListeners('data')
      let reply: string
      try {
        reply = agentReply(
          id,
          status().instances.find((i) => i.id === id),
        )
      } catch (err) {
        onError(`control.agent answering ${JSON.stringify(id)} failed: ${errorMessage(err)}`)
        return socket.destroy()
      }
      socket.end(reply)
    }
    socket.setEncoding('latin1')
    socket.on('data', (chunk: string) => {
      received += chunk
      const eol = received.search(/[\r\n]/)
      if (eol >= 0) answer(received.slice(0, eol).trim())
      else if (received.length > AGENT_MAX_REQUEST) socket.destroy()
    })
    // HAProxy closes its sending side after agent-send without a newline only if told to; a
    // client that half-closes has said all it will say.
    socket.on('end', () => {
      if (!socket.destroyed && !socket.writableEnded) answer(received.trim())
    })
  })
  server.maxConnections = AGENT_MAX_CONNECTIONS
  await listenOn(server, 'control.agent', options, onError)
  let closing: Promise<void> | undefined
  return () =>
    (closing ??= new Promise<void>((resolve) => {
      server.close(() => resolve())
      for (const s of sockets) s.destroy()
    }))
}
