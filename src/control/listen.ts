import type { Server } from 'node:net'
import { errorMessage, TandemError } from '../errors.js'

/** `host:port`, IPv6 hosts in brackets. */
export const hostPort = (host: string, port: number) =>
  host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`

/** Why listen() failed, in an operator's words. */
export const listenReason = (err: unknown): string => {
  switch ((err as { code?: unknown }).code) {
    case 'EADDRINUSE':
      return 'the port is already in use (EADDRINUSE)'
    case 'EACCES':
      return 'permission denied (EACCES)'
    case 'EADDRNOTAVAIL':
      return 'the address is not one of this host (EADDRNOTAVAIL)'
    default:
      return errorMessage(err)
  }
}

/**
 * Listens on `host:port` for the optional TCP listener `what` (`control.http`, `control.agent`):
 * rejects with ECONTROL naming it and the address when it cannot; later server errors go to
 * `onError` (the server serves on).
 */
export const listenOn = async (
  server: Server,
  what: string,
  options: { host: string; port: number },
  onError: (message: string) => void,
): Promise<void> => {
  const where = hostPort(options.host, options.port)
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen({ host: options.host, port: options.port }, () => {
        server.off('error', reject)
        resolve()
      })
    })
  } catch (err) {
    throw new TandemError('ECONTROL', `${what} cannot listen on ${where}: ${listenReason(err)}`, {
      cause: err,
    })
  }
  server.on('error', (err) => onError(`${what} on ${where}: ${errorMessage(err)}`))
}
