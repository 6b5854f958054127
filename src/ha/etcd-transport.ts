/*
 * How one request reaches one etcd member's v3 JSON gateway: a POST on node:http or node:https.
 *
 * Not Node's global fetch: it cannot take a custom CA or a client certificate without undici's
 * Agent, which is not importable without adding undici as a dependency. node:https takes them
 * directly, so plain http and https share this one code path, each transport with its own
 * keep-alive agents (a renew every renewMs should not pay a TCP and TLS handshake each time).
 */
import http from 'node:http'
import https from 'node:https'

/**
 * One request to one etcd member's v3 JSON gateway: POST `<endpoint><path>` with `body`, the
 * decoded JSON answer, or a rejection. `signal` aborts it (the caller's timeout): the rejection
 * is then the signal's reason (a `TimeoutError` for `AbortSignal.timeout`). `headers` carries the
 * auth token. A seam: tests wrap it to lose a reply after the request was applied.
 */
export type EtcdTransport = (
  endpoint: string,
  path: string,
  body: unknown,
  signal: AbortSignal,
  headers?: Readonly<Record<string, string>>,
) => Promise<unknown>

/** PEM contents (not paths) for https endpoints; each optional (the system's CAs by default). */
export interface EtcdTlsMaterial {
  /** The CA that signed the members' server certificates. */
  ca?: Buffer
  /** A client certificate, for etcd's `--client-cert-auth`. */
  cert?: Buffer
  /** The client certificate's private key. */
  key?: Buffer
}

/** An error that etcd itself answered, or that its endpoint caused (as opposed to a timeout). */
export interface EtcdAnswerError extends Error {
  code: 'EETCD'
  /** The gRPC status code the gateway mapped into its answer (5: not found, 14: unavailable...). */
  grpcCode: number | undefined
  endpoint: string
}

export const etcdError = (
  message: string,
  extra: { endpoint: string; grpcCode?: number; cause?: unknown },
): EtcdAnswerError =>
  Object.assign(new Error(message, extra.cause === undefined ? {} : { cause: extra.cause }), {
    code: 'EETCD' as const,
    grpcCode: extra.grpcCode,
    endpoint: extra.endpoint,
  })

/** OpenSSL's verdicts on the member's certificate (as opposed to the member's on ours). */
const TLS_VERIFY = /CERT|SELF_SIGNED|LOCAL_ISSUER|VERIFY/

/** A socket-level failure as one line: the OS or TLS message, its code, and for TLS a hint. */
const describe = (err: Error & { code?: string; reason?: string }): string => {
  // OpenSSL's own messages are multi-line dumps with source paths; its reason is the words.
  const text = err.reason ?? err.message
  const code = err.code !== undefined && !text.includes(err.code) ? ` (${err.code})` : ''
  const said = `${text}${code}`
  if (err.code === undefined) return said
  if (/^ERR_SSL_.*ALERT/.test(err.code)) {
    return `TLS: ${said}: the member did not accept this client's certificate (tls.cert and tls.key), or wants one and none was given`
  }
  if (TLS_VERIFY.test(err.code)) {
    return `TLS: ${said}: the member's certificate is not trusted by the CA given (tls.ca, or the system's CAs without it), or does not name this host`
  }
  return said
}

/**
 * A transport with its own keep-alive agents, one for http and one for https (`tls` applies to
 * the latter). Idle sockets do not keep the process alive (Node unrefs an agent's free sockets).
 */
export const httpTransport = (tls: EtcdTlsMaterial = {}): EtcdTransport => {
  const httpAgent = new http.Agent({ keepAlive: true })
  const httpsAgent = new https.Agent({ keepAlive: true, ...tls })
  return (endpoint, path, body, signal, headers = {}) =>
    new Promise<unknown>((resolve, reject) => {
      if (signal.aborted) {
        reject(signal.reason as Error)
        return
      }
      const url = new URL(endpoint + path)
      const secure = url.protocol === 'https:'
      const payload = Buffer.from(JSON.stringify(body), 'utf8')
      let settled = false
      const settle = (fn: () => void) => {
        if (settled) return
        settled = true
        signal.removeEventListener('abort', onAbort)
        fn()
      }
      const req = (secure ? https : http).request(
        url,
        {
          method: 'POST',
          agent: secure ? httpsAgent : httpAgent,
          headers: {
            ...headers,
            'content-type': 'application/json',
            'content-length': String(payload.length),
          },
        },
        (res) => {
          const chunks: Buffer[] = []
          res.on('data', (c: Buffer) => chunks.push(c))
          res.on('error', (err) => settle(() => reject(etcdError(describe(err), { endpoint }))))
          res.on('end', () => {
            const answer = decode(endpoint, res.statusCode ?? 0, Buffer.concat(chunks))
            settle(() => ('error' in answer ? reject(answer.error) : resolve(answer.json)))
          })
        },
      )
      // The caller's deadline: the rejection is its reason (TimeoutError), so the client can
      // tell "no answer in time" from a failure, whatever Node makes of the destroyed socket.
      const onAbort = () => {
        settle(() => reject(signal.reason as Error))
        req.destroy()
      }
      signal.addEventListener('abort', onAbort, { once: true })
      req.on('error', (err) =>
        settle(() => reject(etcdError(describe(err), { endpoint, cause: err }))),
      )
      req.end(payload)
    })
}

/** The gateway's JSON answer, or its error (`{ error, message, code }`) as an EtcdAnswerError. */
const decode = (
  endpoint: string,
  status: number,
  raw: Buffer,
): { json: unknown } | { error: EtcdAnswerError } => {
  const text = raw.toString('utf8')
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    const error = etcdError(
      `HTTP ${status} that is not JSON: ${JSON.stringify(text.slice(0, 80))}`,
      { endpoint },
    )
    return { error }
  }
  const err = json as { error?: unknown; message?: unknown; code?: unknown } | null
  if (status < 200 || status > 299 || (typeof err === 'object' && err?.error !== undefined)) {
    const error = etcdError(
      `${typeof err?.message === 'string' ? err.message : `HTTP ${status}`}`,
      { endpoint, ...(typeof err?.code === 'number' ? { grpcCode: err.code } : {}) },
    )
    return { error }
  }
  return { json }
}
