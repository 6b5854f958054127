import { request } from 'node:http'
import { createInterface } from 'node:readline'
import { TandemError } from '../errors.js'
import { socketPath } from './socket-path.js'

/** ENOSUPERVISOR when nothing listens on the socket, else ECONTROL with the cause. */
const unreachable = (err: NodeJS.ErrnoException, stateDir: string, socket: string): TandemError =>
  err.code === 'ENOENT' || err.code === 'ECONNREFUSED'
    ? new TandemError(
        'ENOSUPERVISOR',
        `no supervisor is running for state dir ${stateDir} (nothing answers on ${socket})`,
        { cause: err },
      )
    : new TandemError('ECONTROL', `cannot reach the supervisor on ${socket}: ${err.message}`, {
        cause: err,
      })

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
    req.on('error', (err: NodeJS.ErrnoException) => reject(unreachable(err, stateDir, socket)))
    req.end(data)
  })

/**
 * Sends a control request whose answer streams (see Streamed): calls `onEvent` for each progress
 * line and resolves with the result, or rejects with the supervisor's error. A GET sends no
 * body (`body` is ignored: its parameters are in `path`'s query string).
 */
export const controlStream = (
  stateDir: string,
  path: string,
  body: unknown,
  onEvent: (event: unknown) => void,
  method: 'GET' | 'POST' = 'POST',
): Promise<unknown> =>
  new Promise((resolve, reject) => {
    const socket = socketPath(stateDir)
    // A GET says what it wants in its path's query string.
    const data = method === 'GET' ? undefined : JSON.stringify(body)
    const req = request(
      {
        socketPath: socket,
        method,
        path,
        headers: data ? { 'content-type': 'application/json' } : {},
      },
      (res) => {
        if (res.headers['content-type'] !== 'application/x-ndjson') {
          // An error answered before streaming began: a plain JSON error body.
          const chunks: Buffer[] = []
          res.on('data', (c: Buffer) => chunks.push(c))
          res.on('end', () => {
            try {
              const { error } = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
                error?: { code: string; message: string }
              }
              reject(
                new TandemError(
                  (error?.code ?? 'ECONTROL') as 'ECONTROL',
                  error?.message ?? `HTTP ${res.statusCode}`,
                ),
              )
            } catch {
              reject(
                new TandemError(
                  'ECONTROL',
                  `supervisor at ${socket} sent a reply that is not JSON`,
                ),
              )
            }
          })
          return
        }
        let settled = false
        // The supervisor went away mid-answer (it stopped, or cut this reader off hard).
        res.on('error', (err) => {
          if (settled) return
          settled = true
          reject(
            new TandemError(
              'ECONTROL',
              `the supervisor on ${socket} ended the answer early: ${err.message}`,
            ),
          )
        })
        createInterface({ input: res, crlfDelay: Infinity })
          .on('line', (l) => {
            let v: { result?: unknown; error?: { code: string; message: string } }
            try {
              v = JSON.parse(l) as typeof v
            } catch {
              return
            }
            // The last line has its one key; an event may have fields named so (log.unwritable's
            // error).
            const last = Object.keys(v).length === 1
            if (last && v.error) {
              settled = true
              reject(new TandemError(v.error.code as 'ECONTROL', v.error.message))
            } else if (last && 'result' in v) {
              settled = true
              resolve(v.result)
            } else onEvent(v)
          })
          // readline passes on the response's error, which the handler above reports.
          .on('error', () => {})
          .on('close', () => {
            if (!settled)
              reject(
                new TandemError('ECONTROL', `the supervisor on ${socket} ended the answer early`),
              )
          })
      },
    )
    req.on('error', (err: NodeJS.ErrnoException) => reject(unreachable(err, stateDir, socket)))
    req.end(data)
  })
