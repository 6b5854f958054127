/*
 * A client for an etcd cluster through the v3 JSON gateway of its members (see etcd-store.ts for
 * why the gateway and not the etcd3 package): deadlines and failover across members, TLS (through
 * etcd-transport.ts), user/password authentication with its token, and the members' health.
 */
import { TandemError } from '../errors.js'
import { readTlsFiles, type EtcdTlsFiles } from './etcd-credentials.js'
import { httpTransport, type EtcdTransport } from './etcd-transport.js'

export type { EtcdTransport } from './etcd-transport.js'
export { readPasswordFile, type EtcdTlsFiles } from './etcd-credentials.js'

/** Plain http, no TLS material: what `new EtcdClient(endpoints)` uses. */
export const defaultTransport: EtcdTransport = httpTransport()

/** A user of etcd's own authentication (`etcdctl user add`). */
export interface EtcdAuth {
  user: string
  /** Read from `passwordFile` by the caller (readPasswordFile); never logged nor put in errors. */
  password: string
}

/** How to reach an etcd cluster: what `ha.backend` of type etcd says, files resolved to paths. */
export interface EtcdConnection {
  /** Client URLs of the members, `http://host:2379` or `https://host:2379`. */
  endpoints: string[]
  /** PEM files for https endpoints; read once, by connectEtcd. */
  tls?: EtcdTlsFiles
  auth?: EtcdAuth
}

/**
 * A client for `c`: the endpoints checked (http or https URLs; https for all when `tls` is set,
 * since a client certificate or a private CA on plain http means a mistake), the TLS files read
 * now (ECONFIG naming `ha.backend.tls.<name>` and the path when one cannot be), one keep-alive
 * transport for it. `transport` replaces that transport (tests); the files are still read.
 */
export const connectEtcd = (c: EtcdConnection, transport?: EtcdTransport): EtcdClient => {
  if (c.endpoints.length === 0) {
    throw new TandemError(
      'ECONFIG',
      'ha.backend.endpoints: an etcd backend needs at least one endpoint',
    )
  }
  c.endpoints.forEach((endpoint, i) => {
    let url: URL | undefined
    try {
      url = new URL(endpoint)
    } catch {
      // said below
    }
    if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
      throw new TandemError(
        'ECONFIG',
        `ha.backend.endpoints[${i}]: expected an http:// or https:// URL of an etcd member's client port, got ${JSON.stringify(endpoint)}`,
      )
    }
    if (c.tls !== undefined && url.protocol !== 'https:') {
      throw new TandemError(
        'ECONFIG',
        `ha.backend.endpoints[${i}]: ${endpoint} is plain http, but ha.backend.tls is set: use https://`,
      )
    }
  })
  const material = c.tls === undefined ? {} : readTlsFiles(c.tls)
  return new EtcdClient(c.endpoints, transport ?? httpTransport(material), {
    ...(c.auth === undefined ? {} : { auth: c.auth }),
  })
}

/** One endpoint's answer to `EtcdClient.health`. */
export type EtcdEndpointHealth =
  | {
      endpoint: string
      ok: true
      /** This member is the raft leader. */
      leader: boolean
      /** etcd's version (`3.4.23`). */
      version: string
      /** The size of its database file, bytes. */
      dbSize?: number
    }
  | { endpoint: string; ok: false; error: string }

/** An error that etcd itself answered (as opposed to no answer at all). */
interface EtcdFailure {
  name?: string
  code?: unknown
  message?: string
  grpcCode?: number
  cause?: unknown
}

/**
 * gRPC codes that every member would answer the same (a bad request, a lease that is gone, a
 * refused authentication): asking the next endpoint is pointless. Anything else (unavailable,
 * no leader, timeout, a member cut off from the quorum) is tried on the next one.
 */
const DEFINITE = new Set([3, 5, 6, 7, 9, 11, 16])

/**
 * etcd's answers to a token it no longer takes: expired or unknown (simple tokens live in each
 * member's memory, so a restarted member forgets them), issued before an auth change, or none
 * sent (authentication enabled after this client found it disabled). etcd checks the token
 * before it proposes or applies anything, so the request was not applied: it can be repeated.
 */
const staleToken = (e: EtcdFailure): boolean =>
  e.grpcCode === 16 ||
  (e.grpcCode === 3 && /user name is empty|auth store is old/.test(e.message ?? ''))

/**
 * What a failed attempt did, in one line. The transport's own errors (EETCD) already say what
 * their cause did; another transport's (a test's wrapper, fetch) may keep it in `cause`.
 */
const why = (err: unknown, attemptMs: number): string => {
  const e = err as EtcdFailure
  if (e.name === 'TimeoutError') return `no answer within ${attemptMs} ms`
  const message = e.message ?? String(err)
  const cause =
    e.code !== 'EETCD' && e.cause instanceof Error && !message.includes(e.cause.message)
      ? ` (${e.cause.message})`
      : ''
  return message + cause
}

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
 *
 * With `auth`, the first request authenticates (`/v3/auth/authenticate`, within its own
 * deadline) and every request carries the token; a request that etcd answers with "invalid
 * token" authenticates again and is repeated once.
 */
export class EtcdClient {
  readonly endpoints: readonly string[]
  readonly #transport: EtcdTransport
  readonly #auth: EtcdAuth | undefined
  /** The index of the endpoint that answered last: asked first. */
  #preferred = 0
  /**
   * The token being obtained or in use, shared by concurrent requests (a heartbeat's put and
   * keep-alive go together); undefined before the first request and after it went stale.
   * Resolves undefined when etcd has authentication disabled.
   */
  #token: Promise<string | undefined> | undefined

  constructor(
    endpoints: readonly string[],
    transport: EtcdTransport = defaultTransport,
    options: { auth?: EtcdAuth } = {},
  ) {
    if (endpoints.length === 0) throw new Error('an etcd client needs at least one endpoint')
    this.endpoints = endpoints.map((e) => e.replace(/\/+$/, ''))
    this.#transport = transport
    this.#auth = options.auth
  }

  /**
   * `path` with `body` on the first member that answers within `timeoutMs` in all (an
   * authentication included). Each attempt gets an equal share of what is left among the
   * members not yet asked, so that a member that hangs leaves time for the others (one that
   * refuses at once leaves them more). A definite answer (the same from every member) ends it.
   * A timed-out attempt may still be applied by etcd: only requests that are safe to repeat, or
   * resolved by a read (a claim), come here.
   */
  async request<T>(path: string, body: unknown, timeoutMs: number, what: string): Promise<T> {
    const start = performance.now()
    if (this.#auth === undefined) return this.#attempts<T>(path, body, start, timeoutMs, what)
    const token = this.#tokenFor(start, timeoutMs, what)
    try {
      return await this.#attempts<T>(path, body, start, timeoutMs, what, await token)
    } catch (err) {
      if (!staleToken(err as EtcdFailure)) throw err
      // Another request may have replaced it already: then that one is used.
      if (this.#token === token) this.#token = undefined
      const fresh = await this.#tokenFor(start, timeoutMs, what)
      return await this.#attempts<T>(path, body, start, timeoutMs, what, fresh)
    }
  }

  /** The current token, or a new one from an authentication within the request's deadline. */
  #tokenFor(start: number, timeoutMs: number, what: string): Promise<string | undefined> {
    if (this.#token !== undefined) return this.#token
    const token = this.#authenticate(start, timeoutMs, what)
    this.#token = token
    // A failed authentication is not kept: the next request tries again.
    token.catch(() => {
      if (this.#token === token) this.#token = undefined
    })
    return token
  }

  async #authenticate(start: number, timeoutMs: number, what: string): Promise<string | undefined> {
    const auth = this.#auth!
    try {
      const r = await this.#attempts<{ token?: string }>(
        '/v3/auth/authenticate',
        { name: auth.user, password: auth.password },
        start,
        timeoutMs,
        `authentication of user ${auth.user} (for the ${what})`,
      )
      if (typeof r.token !== 'string' || r.token === '')
        throw new Error(`etcd authenticated user ${auth.user} but answered no token`)
      return r.token
    } catch (err) {
      // As etcd's own client does: a user configured for an etcd without authentication works.
      if (/authentication is not enabled/.test((err as Error).message)) return undefined
      throw err
    }
  }

  async #attempts<T>(
    path: string,
    body: unknown,
    start: number,
    timeoutMs: number,
    what: string,
    token?: string,
  ): Promise<T> {
    const failures: string[] = []
    const n = this.endpoints.length
    const first = this.#preferred
    const headers: Record<string, string> = token === undefined ? {} : { authorization: token }
    for (let k = 0; k < n; k++) {
      const i = (first + k) % n
      const endpoint = this.endpoints[i]!
      const left = timeoutMs - (performance.now() - start)
      if (left <= 0) break
      const attemptMs = Math.ceil(left / (n - k))
      try {
        const answer = await this.#transport(
          endpoint,
          path,
          body,
          AbortSignal.timeout(attemptMs),
          headers,
        )
        this.#preferred = i
        return answer as T
      } catch (err) {
        const e = err as EtcdFailure
        const said = why(err, attemptMs)
        failures.push(`${endpoint}: ${said}`)
        if (e.grpcCode !== undefined && DEFINITE.has(e.grpcCode)) {
          const hint =
            this.#auth === undefined && staleToken(e)
              ? ' (etcd has authentication enabled: set ha.backend.auth)'
              : ''
          throw Object.assign(
            new Error(`etcd ${what}: ${endpoint} answered: ${said}${hint}`, { cause: err }),
            { code: 'EETCD', grpcCode: e.grpcCode, endpoint },
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

  /**
   * Each member's own status (`/v3/maintenance/status`), asked of all at once, each within
   * `timeoutMs`: whether it answers, whether it is the raft leader, its version and database
   * size. A member that answers but knows no leader (an election, or cut off from the quorum) is
   * not ok. A query: no authentication (etcd serves its status without one), no failover, no
   * change to which member is asked first.
   */
  async health(timeoutMs: number): Promise<EtcdEndpointHealth[]> {
    return Promise.all(
      this.endpoints.map(async (endpoint): Promise<EtcdEndpointHealth> => {
        try {
          const s = (await this.#transport(
            endpoint,
            '/v3/maintenance/status',
            {},
            AbortSignal.timeout(timeoutMs),
          )) as {
            header?: { member_id?: string }
            leader?: string
            version?: string
            dbSize?: string
          }
          if (s.leader === undefined || s.leader === '0') {
            return {
              endpoint,
              ok: false,
              error: 'answers, but knows no raft leader (an election, or no quorum)',
            }
          }
          const dbSize = Number(s.dbSize)
          return {
            endpoint,
            ok: true,
            leader: s.leader === s.header?.member_id,
            version: s.version ?? 'unknown',
            ...(Number.isFinite(dbSize) && s.dbSize !== undefined ? { dbSize } : {}),
          }
        } catch (err) {
          return { endpoint, ok: false, error: why(err, timeoutMs) }
        }
      }),
    )
  }
}
