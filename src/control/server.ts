import { chmodSync, rmSync } from 'node:fs'
import { setMaxListeners } from 'node:events'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { TandemError, errorMessage, hasCode } from '../errors.js'

/**
 * At close, how long a streamed answer still being read (a follower behind by up to 1 MiB) has
 * to reach its reader before its connection is dropped anyway.
 */
export const STREAM_END_GRACE_MS = 2000

/** A route answers with a JSON body, or throws a TandemError (ETARGET/EUSAGE become 400). */
export type Route = (body: Record<string, unknown>) => unknown

/**
 * A route's answer that streams: progress events as NDJSON lines while `run` works, then a last
 * line `{"result": ...}` or `{"error": {code, message}}`. For long operations (rollouts) whose
 * client shows progress.
 */
export class Streamed {
  constructor(
    readonly run: (
      emit: (event: unknown) => void,
      connection: StreamConnection,
    ) => Promise<unknown>,
  ) {}
}

/** What a streaming route may know of its connection, to bound what it queues for a reader. */
export interface StreamConnection {
  /** Aborted when the client has gone (or the answer was ended). */
  closed: AbortSignal
  /**
   * Aborted when the server closes (the supervisor stops): an answer that would go on (a
   * follow) ends now with its result, which still reaches the client.
   */
  ending: AbortSignal
  /** Bytes written and not yet taken by the client (the kernel's socket buffer is full). */
  bufferedBytes(): number
  /** Ends the connection at once, whatever is still buffered. */
  destroy(): void
}

const stream = (
  res: ServerResponse,
  streamed: Streamed,
  onError: (m: string) => void,
  ending: AbortSignal,
) => {
  res.writeHead(200, { 'content-type': 'application/x-ndjson' })
  const line = (v: unknown) => {
    if (!res.destroyed) res.write(`${JSON.stringify(v)}\n`)
  }
  const closed = new AbortController()
  res.once('close', () => closed.abort())
  const socket = res.socket
  const connection: StreamConnection = {
    closed: closed.signal,
    ending,
    bufferedBytes: () => res.writableLength,
    // The socket itself: once the answer is ended, the response lets go of it while what was
    // written still waits in it.
    destroy: () => socket?.destroy(),
  }
  streamed.run(line, connection).then(
    (result) => {
      line({ result: result ?? { ok: true } })
      res.end()
    },
    (err: unknown) => {
      const code = (err as { code?: string }).code ?? 'ECONTROL'
      if (code === 'ECONTROL') onError(`control stream failed: ${errorMessage(err)}`)
      line({ error: { code, message: errorMessage(err) } })
      res.end()
    },
  )
}

/** Largest request body we read: control requests are a few targets, never more. */
export const MAX_BODY_BYTES = 64 * 1024

const readBody = async (req: IncomingMessage): Promise<Record<string, unknown>> => {
  let size = 0
  const chunks: Buffer[] = []
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size > MAX_BODY_BYTES)
      throw new TandemError('EUSAGE', `request body over ${MAX_BODY_BYTES} bytes`)
    chunks.push(chunk as Buffer)
  }
  const text = Buffer.concat(chunks).toString('utf8')
  if (text === '') return {}
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw new TandemError('EUSAGE', `request body is not JSON: ${errorMessage(err)}`)
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new TandemError('EUSAGE', 'request body must be a JSON object')
  }
  return value as Record<string, unknown>
}

const send = (res: ServerResponse, status: number, body: unknown) => {
  const text = JSON.stringify(body)
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  })
  res.end(text)
}

/**
 * HTTP/JSON on a Unix socket, mode 0600: only the socket's owner may act. Routes are keyed
 * `METHOD /path`. Returns the close function (idempotent).
 */
export const startControlServer = async (
  path: string,
  routes: Record<string, Route>,
  onError: (message: string) => void,
): Promise<() => Promise<void>> => {
  // A socket file left by a dead supervisor blocks listen(); the state-dir lock proves it is stale.
  rmSync(path, { force: true })
  const ending = new AbortController()
  // One listener per following reader: as many as there are, no leak warning.
  setMaxListeners(0, ending.signal)
  /** Streamed answers not yet ended: a close lets them finish (see below). */
  const streaming = new Set<ServerResponse>()
  const server = createServer((req, res) => {
    const [path, query] = (req.url ?? '/').split('?', 2)
    const route = routes[`${req.method} ${path}`]
    if (!route)
      return send(res, 404, {
        error: { code: 'EUSAGE', message: `no such endpoint: ${req.method} ${req.url}` },
      })
    readBody(req)
      // A GET's parameters come in its query string: they are its body's fields.
      .then((body) =>
        route(
          req.method === 'GET' && query
            ? { ...Object.fromEntries(new URLSearchParams(query)), ...body }
            : body,
        ),
      )
      .then(
        (result) =>
          result instanceof Streamed
            ? (streaming.add(res),
              res.once('close', () => streaming.delete(res)),
              stream(res, result, onError, ending.signal))
            : send(res, 200, result ?? { ok: true }),
        (err: unknown) => {
          const usage = hasCode(err, 'ETARGET') || hasCode(err, 'EUSAGE')
          if (!usage)
            onError(`control request ${req.method} ${req.url} failed: ${errorMessage(err)}`)
          const code = (err as { code?: string }).code ?? 'ECONTROL'
          send(res, usage ? 400 : 500, { error: { code, message: errorMessage(err) } })
        },
      )
  })
  // A rolling restart answers when it is done, which may take longer than Node's default 300 s.
  server.requestTimeout = 0
  const prevUmask = process.umask(0o177)
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(path, () => resolve())
    })
  } finally {
    process.umask(prevUmask)
  }
  chmodSync(path, 0o600)
  let closing: Promise<void> | undefined
  return () =>
    (closing ??= new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeIdleConnections()
      // Streams that follow end their answers (their last lines written in the microtasks this
      // abort starts); each connection goes once its answer has reached its reader, or after
      // STREAM_END_GRACE_MS for one that does not read.
      ending.abort()
      const drop = setTimeout(() => server.closeAllConnections(), STREAM_END_GRACE_MS)
      drop.unref()
      const ended = [...streaming].map(
        (res) => new Promise<void>((r) => (res.writableFinished ? r() : res.once('close', r))),
      )
      void Promise.all(ended).then(() => {
        clearTimeout(drop)
        server.closeAllConnections()
      })
    }))
}
