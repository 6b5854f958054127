/**
 * One request to one etcd member's v3 JSON gateway: POST `<endpoint><path>` with `body`, the
 * decoded JSON answer, or a rejection. `signal` aborts it (the caller's timeout). A seam: tests
 * wrap it to lose a reply after the request was applied.
 */
export type EtcdTransport = (
  endpoint: string,
  path: string,
  body: unknown,
  signal: AbortSignal,
) => Promise<unknown>

/** An error that etcd itself answered (as opposed to no answer at all). */
interface EtcdAnswerError extends Error {
  code: 'EETCD'
  /** The gRPC status code the gateway mapped into its answer (5: not found, 14: unavailable...). */
  grpcCode: number | undefined
  endpoint: string
}

/**
 * gRPC codes that every member would answer the same (a bad request, a lease that is gone):
 * asking the next endpoint is pointless. Anything else (unavailable, no leader, timeout, a
 * member cut off from the quorum) is tried on the next one.
 */
const DEFINITE = new Set([3, 5, 6, 7, 9, 11, 16])

export const fetchTransport: EtcdTransport = async (endpoint, path, body, signal) => {
  const res = await fetch(endpoint + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal,
  })
  const text = await res.text()
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    throw etcdError(`HTTP ${res.status} that is not JSON: ${JSON.stringify(text.slice(0, 80))}`, {
      endpoint,
    })
  }
  const err = json as { error?: unknown; message?: unknown; code?: unknown } | null
  if (!res.ok || (typeof err === 'object' && err !== null && err.error !== undefined)) {
    throw etcdError(`${typeof err?.message === 'string' ? err.message : `HTTP ${res.status}`}`, {
      endpoint,
      grpcCode: typeof err?.code === 'number' ? err.code : undefined,
    })
  }
  return json
}

const etcdError = (
  message: string,
  extra: { endpoint: string; grpcCode?: number; cause?: unknown },
): EtcdAnswerError =>
  Object.assign(new Error(message, extra.cause === undefined ? {} : { cause: extra.cause }), {
    code: 'EETCD' as const,
    grpcCode: extra.grpcCode,
    endpoint: extra.endpoint,
  })

/** Base64 of a UTF-8 string, as the gateway wants keys and values. */
export const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64')
/** A UTF-8 string from the gateway's base64 (undefined stays undefined: an empty value). */
export const unb64 = (s: string | undefined): string => Buffer.from(s ?? '', 'base64').toString()

/**
 * The smallest key after every key that starts with `prefix`: a range's `range_end` for "all
 * keys under prefix" (etcd's own rule: the last byte below 0xff incremented, the rest dropped).
 */
export const prefixEnd = (prefix: string): string => {
  const bytes = Buffer.from(prefix, 'utf8')
  for (let i = bytes.length - 1; i >= 0; i--) {
    if (bytes[i]! < 0xff) {
      const end = Buffer.from(bytes.subarray(0, i + 1))
      end[i] = end[i]! + 1
      return end.toString('base64')
    }
  }
  return b64('\0')
}

/** One key-value as the gateway returns it (int64s are strings in its JSON). */
export interface EtcdKv {
  key: string
  value?: string
  create_revision?: string
  mod_revision?: string
  lease?: string
}

/**
 * An etcd cluster through the v3 JSON gateway of any of its members: every request with a
 * deadline, tried member after member until one answers within it, starting with the member
 * that answered last (a member that hangs, SIGSTOPped or cut off, costs one timeout, not one per
 * request). Errors say which endpoints were tried, what each did, and what was asked.
 */
export class EtcdClient {
  readonly endpoints: readonly string[]
  readonly #transport: EtcdTransport
  /** The index of the endpoint that answered last: asked first. */
  #preferred = 0

  constructor(endpoints: readonly string[], transport: EtcdTransport = fetchTransport) {
    if (endpoints.length === 0) throw new Error('an etcd client needs at least one endpoint')
    this.endpoints = endpoints.map((e) => e.replace(/\/+$/, ''))
    this.#transport = transport
  }

  /**
   * `path` with `body` on the first member that answers within `timeoutMs` in all. Each attempt
   * gets an equal share of what is left among the members not yet asked, so that a member that
   * hangs leaves time for the others (one that refuses at once leaves them more). A definite
   * answer (the same from every member) ends it. A timed-out attempt may still be applied by
   * etcd: only requests that are safe to repeat, or resolved by a read (a claim), come here.
   */
  async request<T>(path: string, body: unknown, timeoutMs: number, what: string): Promise<T> {
    const start = performance.now()
    const failures: string[] = []
    const n = this.endpoints.length
    const first = this.#preferred
    for (let k = 0; k < n; k++) {
      const i = (first + k) % n
      const endpoint = this.endpoints[i]!
      const left = timeoutMs - (performance.now() - start)
      if (left <= 0) break
      const attemptMs = Math.ceil(left / (n - k))
      try {
        const answer = await this.#transport(endpoint, path, body, AbortSignal.timeout(attemptMs))
        this.#preferred = i
        return answer as T
      } catch (err) {
        const e = err as { name?: string; message?: string; grpcCode?: number; cause?: unknown }
        const why =
          e.name === 'TimeoutError'
            ? `no answer within ${attemptMs} ms`
            : `${e.message ?? String(err)}${e.cause instanceof Error ? ` (${e.cause.message})` : ''}`
        failures.push(`${endpoint}: ${why}`)
        if (e.grpcCode !== undefined && DEFINITE.has(e.grpcCode)) {
          throw Object.assign(
            new Error(`etcd ${what}: ${endpoint} answered: ${why}`, { cause: err }),
            {
              code: 'EETCD',
              grpcCode: e.grpcCode,
              endpoint,
            },
          )
        }
        // Next time, start with the member after this one.
        this.#preferred = (i + 1) % n
      }
    }
    const untried = this.endpoints.length - failures.length
    throw Object.assign(
      new Error(
        `etcd ${what} failed within ${timeoutMs} ms on every endpoint: ${failures.join('; ')}${untried > 0 ? `; ${untried} endpoint(s) not tried for lack of time` : ''}`,
      ),
      { code: 'EETCD', grpcCode: undefined },
    )
  }

  /** Linearizable read of one key (etcd's default: served only with the quorum's agreement). */
  async get(key: string, timeoutMs: number): Promise<EtcdKv | undefined> {
    const r = await this.request<{ kvs?: EtcdKv[] }>(
      '/v3/kv/range',
      { key: b64(key) },
      timeoutMs,
      `read of ${key}`,
    )
    return r.kvs?.[0]
  }
}
