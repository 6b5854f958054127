import { request } from 'node:http'
import { TandemError } from '../errors.js'
import { socketPath } from './socket-path.js'

/**
 * Sends one control request to the supervisor of a state dir. Throws ENOSUPERVISOR when none
 * answers there, and the supervisor's own error (code and message) when it refuses.
 */
export const controlRequest = (
  stateDir: string,
  method: 'GET' | 'POST',
  path: string,
  body?: unknown,
): Promise<unknown> =>
  new Promise((resolve, reject) => {
    const socket = socketPath(stateDir)
    const data = body === undefined ? undefined : JSON.stringify(body)
    const req = request(
      {
        socketPath: socket,
        method,
        path,
        headers: data ? { 'content-type': 'application/json' } : {},
      },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => {
          let value: unknown
          try {
            value = JSON.parse(Buffer.concat(chunks).toString('utf8'))
          } catch {
            return reject(
              new TandemError('ECONTROL', `supervisor at ${socket} sent a reply that is not JSON`),
            )
          }
          const error = (value as { error?: { code: string; message: string } }).error
          if ((res.statusCode ?? 500) >= 400 && error) {
            return reject(new TandemError(error.code as 'ECONTROL', error.message))
          }
          resolve(value)
        })
      },
    )
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') {
        reject(
          new TandemError(
            'ENOSUPERVISOR',
            `no supervisor is running for state dir ${stateDir} (nothing answers on ${socket})`,
            { cause: err },
          ),
        )
      } else
        reject(
          new TandemError('ECONTROL', `cannot reach the supervisor on ${socket}: ${err.message}`, {
            cause: err,
          }),
        )
    })
    req.end(data)
  })
