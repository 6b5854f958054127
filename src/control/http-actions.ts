import type { IncomingMessage } from 'node:http'
import { errorMessage, hasCode } from '../errors.js'
import { bearerMatches } from './http-token.js'
import { crossOriginReason } from './same-origin.js'

/** The actions of the status page: `POST /<action>` on control.http, as on the control socket. */
export const HTTP_ACTIONS = ['restart', 'stop', 'start', 'switchover'] as const
export type HttpActionName = (typeof HTTP_ACTIONS)[number]

export const isHttpAction = (path: string): HttpActionName | undefined => {
  const name = path.slice(1)
  return (HTTP_ACTIONS as readonly string[]).includes(name) ? (name as HttpActionName) : undefined
}

/**
 * What the actions do: the very functions behind the control socket's `POST /restart`,
 * `/stop`, `/start` (a body `{"targets": [...]}`) and `/switchover`.
 */
export type HttpActions = Record<
  HttpActionName,
  (body: Record<string, unknown>) => Promise<unknown>
>

/** A request body larger than this is refused: a list of targets is a few hundred bytes. */
export const MAX_ACTION_BODY_BYTES = 16 * 1024

/** What is logged of every action asked for over HTTP, done or refused. */
export interface ActionRecord {
  action: string
  /** The peer's address (the proxy's, behind one). */
  from: string
  /** `X-Forwarded-For` as the request carried it: told by a proxy, or by anyone. */
  forwardedFor?: string
  targets?: unknown
  status: number
  outcome: 'done' | 'refused' | 'failed'
  /** Why it was refused or failed. */
  reason?: string
}

/** The reply to an action: HTTP status, JSON body, extra headers. */
export interface ActionReply {
  status: number
  body: unknown
  headers?: Record<string, string>
}

const error = (code: string, message: string) => ({ error: { code, message } })

const readBody = (req: IncomingMessage): Promise<string | undefined> =>
  new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    // Beyond the limit the rest is read and dropped (the request timeout bounds how long), so
    // that the client gets its 413 rather than a reset connection.
    req.on('data', (c: Buffer) => {
      size += c.length
      if (size <= MAX_ACTION_BODY_BYTES) chunks.push(c)
    })
    req.on('end', () =>
      resolve(size > MAX_ACTION_BODY_BYTES ? undefined : Buffer.concat(chunks).toString('utf8')),
    )
    req.on('error', reject)
    // A client gone before the end of its body: no 'end', maybe no 'error'.
    req.on('close', () => {
      if (!req.complete) reject(new Error('the request was closed before its body ended'))
    })
  })

/**
 * One `POST /<action>` of control.http: refused with 403 when it comes from another origin
 * (crossOriginReason), 401 without `Authorization: Bearer <token>`, 415 unless its body is JSON,
 * 400 for a body that is not an object or names no valid target; else the action runs and its
 * result is the reply (400 for the control socket's usage errors, 409 while a rollout runs,
 * 500 otherwise). `onAction` gets a record of every one, for the log.
 */
export const handleAction = async (
  action: HttpActionName,
  req: IncomingMessage,
  options: {
    token: string
    actions: HttpActions
    onAction: (record: ActionRecord, message: string) => void
  },
): Promise<ActionReply> => {
  const forwarded = req.headers['x-forwarded-for']
  const record: ActionRecord = {
    action,
    from: req.socket.remoteAddress ?? '?',
    ...(typeof forwarded === 'string' ? { forwardedFor: forwarded } : {}),
    status: 0,
    outcome: 'refused',
  }
  const who = `${record.from}${record.forwardedFor ? ` (for ${record.forwardedFor})` : ''}`
  const finish = (reply: ActionReply, outcome: ActionRecord['outcome'], reason?: string) => {
    record.status = reply.status
    record.outcome = outcome
    if (reason !== undefined) record.reason = reason
    const what = `${action}${record.targets !== undefined ? ` ${JSON.stringify(record.targets)}` : ''}`
    onActionSafe(
      options.onAction,
      record,
      outcome === 'done'
        ? `control.http: ${what} by ${who}: done`
        : `control.http: ${what} by ${who} ${outcome} (${reply.status}): ${reason}`,
    )
    return reply
  }
  const cross = crossOriginReason(req.headers)
  if (cross !== undefined) {
    req.resume()
    return finish({ status: 403, body: error('EUSAGE', `refused: ${cross}`) }, 'refused', cross)
  }
  if (!bearerMatches(req.headers.authorization, options.token)) {
    req.resume()
    const reason =
      req.headers.authorization === undefined
        ? 'no Authorization header; expected Bearer and the token in <stateDir>/http.token'
        : 'wrong token; expected the one in <stateDir>/http.token (a new one at each start)'
    return finish(
      {
        status: 401,
        body: error('EUSAGE', reason),
        headers: { 'www-authenticate': 'Bearer realm="tandem"' },
      },
      'refused',
      reason,
    )
  }
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase()
  if (type !== 'application/json') {
    req.resume()
    const reason = `Content-Type is ${JSON.stringify(type)}, expected application/json`
    return finish({ status: 415, body: error('EUSAGE', reason) }, 'refused', reason)
  }
  const raw = await readBody(req)
  if (raw === undefined) {
    const reason = `body larger than ${MAX_ACTION_BODY_BYTES} bytes`
    return finish({ status: 413, body: error('EUSAGE', reason) }, 'refused', reason)
  }
  let body: unknown
  try {
    body = raw.trim() === '' ? {} : JSON.parse(raw)
  } catch (err) {
    const reason = `body is not JSON: ${errorMessage(err)}`
    return finish({ status: 400, body: error('EUSAGE', reason) }, 'refused', reason)
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    const reason = `expected a JSON object such as {"targets": ["gateway#1"]}, got ${raw.slice(0, 80)}`
    return finish({ status: 400, body: error('EUSAGE', reason) }, 'refused', reason)
  }
  const args = body as Record<string, unknown>
  if (args.targets !== undefined) record.targets = args.targets
  try {
    const result = await options.actions[action](args)
    return finish({ status: 200, body: result ?? { ok: true } }, 'done')
  } catch (err) {
    const usage = hasCode(err, 'ETARGET') || hasCode(err, 'EUSAGE')
    const busy = hasCode(err, 'EBUSY')
    const code = (err as { code?: string }).code ?? 'ECONTROL'
    const status = usage ? 400 : busy ? 409 : 500
    return finish(
      { status, body: error(code, errorMessage(err)) },
      usage ? 'refused' : 'failed',
      errorMessage(err),
    )
  }
}

const onActionSafe = (
  onAction: (record: ActionRecord, message: string) => void,
  record: ActionRecord,
  message: string,
) => {
  try {
    onAction({ ...record }, message)
  } catch {
    // The log is the supervisor's business; an action's answer does not depend on it.
  }
}
