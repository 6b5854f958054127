/*
 * The lease's store on etcd (issue 12), through the same LeaseStore interface as the shared
 * directory.
 *
 * Client: etcd's v3 JSON gateway (grpc-gateway, served on the client port of every member: at
 * `/v3/...` since 3.4, Debian's etcd-server is 3.4.23) over node:http/node:https
 * (etcd-transport.ts), not the `etcd3` npm package. What the lease needs is five unary calls
 * (range, put, txn, lease grant, one keep-alive per renew), each of which the gateway serves as a
 * plain POST; each gets its own deadline and fails over to the next member under our control, and
 * the errors name the member. etcd3 would bring gRPC (@grpc/grpc-js, protobufjs) for calls we
 * make a few times a second, its own retry and keep-alive policies (a keep-alive stream it renews
 * by itself is exactly what must not happen: the lease core decides, renew by renew), and its
 * election helper, which issue 12 warns kept leadership across an etcd restart. The cost: the
 * gateway turns int64s into strings and keys into base64 (handled in etcd-client.ts).
 *
 * A standby takes over on the heartbeat's quiet time, as in a shared dir, not when the claim key
 * expires: etcd extends every lease by its TTL when its leader changes or it restarts, so a key
 * still there says nothing of its holder (docs/ha.md, backends).
 *
 * Keys under `<prefix>/`:
 * - `config`: the cluster's name and timings, put once by `initEtcdCluster` (never by a node that
 *   merely starts: an etcd that was wiped, or the wrong prefix, must not make a cluster);
 * - `epoch`: the highest claimed epoch, zero-padded (etcd compares values as bytes), put by init
 *   and then in the same transaction as each claim;
 * - `claims/<epoch, zero-padded>`: a claim with its owner inside, attached to an etcd lease;
 * - `hb/<epoch>`: the heartbeat, attached to the same etcd lease, so both vanish after the
 *   holder stops renewing (the epoch record stays, so an epoch is never claimed twice).
 */
import { TandemError } from '../errors.js'
import {
  b64,
  EtcdClient,
  prefixEnd,
  unb64,
  type EtcdKv,
  type EtcdTransport,
} from './etcd-client.js'
import type { ClaimOwner, HaTimings, Heartbeat, LeaseStore } from './lease.js'

/** Epochs as fixed-width decimal: byte order is then numeric order (ranges, value compares). */
const EPOCH_DIGITS = 20
export const padEpoch = (epoch: number): string => String(epoch).padStart(EPOCH_DIGITS, '0')

/**
 * The etcd lease's TTL for the timings (whole seconds): ceil(takeoverMs / 1000) + 1. The holder
 * fences itself selfFenceMs after the start of its last good renew, and etcd counts the TTL
 * from when it served that renew's keep-alive (later), so with TTL > takeoverMs > selfFenceMs
 * the claim key outlives every moment the holder may act: a standby that waited for the key to
 * be gone would never overlap. A standby that waits for takeoverMs of quiet instead (the lease
 * core's rule) finds the key still there, the common case, or gone, which changes nothing. The
 * extra second covers the clock-rate difference between the host and the etcd leader, and etcd
 * rounds a TTL below its minimum (1.5 x the election timeout) up anyway.
 */
export const leaseTtlSeconds = (t: HaTimings): number => Math.ceil(t.takeoverMs / 1000) + 1

/**
 * How long one request may take in all, members tried one after the other (ms): the time a
 * renew has when it starts renewMs after the last good one, selfFenceMs - renewMs, so a renew
 * that could still count is never given up, and one that cannot is not waited for. At least 100.
 */
export const requestTimeoutMs = (t: HaTimings): number => Math.max(100, t.selfFenceMs - t.renewMs)

export interface EtcdStoreOptions {
  /** Client URLs of the members (`http://10.0.0.1:2379`); tried in turn. Or give `client`. */
  endpoints?: readonly string[]
  /** A client made already (TLS, auth: etcdClientOf); it is shared, not owned. */
  client?: EtcdClient
  /** The lease's key prefix (`/tandem/<cluster>`, `.../roll/api/0`), without the trailing slash. */
  prefix: string
  /** Where `config` (the cluster's, put by cluster init) is: default `prefix`. */
  clusterPrefix?: string
  timings: HaTimings
  /** Overrides `requestTimeoutMs(timings)`. */
  requestTimeoutMs?: number
  /** The HTTP seam (tests lose replies with it). */
  transport?: EtcdTransport
}

interface TxnAnswer {
  succeeded?: boolean
  responses?: { response_range?: { kvs?: EtcdKv[] } }[]
}

const leaseLost = (message: string, cause?: unknown): TandemError =>
  new TandemError('ELEASELOST', message, cause === undefined ? undefined : { cause })

export class EtcdLeaseStore implements LeaseStore {
  readonly client: EtcdClient
  readonly prefix: string
  readonly ttlSeconds: number
  readonly timeoutMs: number
  /** The etcd lease of each epoch this store claimed: its keep-alive is the renew. */
  readonly #leases = new Map<number, string>()
  /** The highest claim this store learned of (its own, or the epoch a lost claim showed). */
  #highest = 0

  readonly #clusterPrefix: string

  constructor(options: EtcdStoreOptions) {
    this.client = options.client ?? new EtcdClient(options.endpoints ?? [], options.transport)
    this.prefix = options.prefix.replace(/\/+$/, '')
    this.#clusterPrefix = (options.clusterPrefix ?? this.prefix).replace(/\/+$/, '')
    this.ttlSeconds = leaseTtlSeconds(options.timings)
    this.timeoutMs = options.requestTimeoutMs ?? requestTimeoutMs(options.timings)
  }

  /**
   * Puts the epoch record (0) if there is none: for the leases a cluster makes as it goes (roll
   * slots), never for the cluster's own, whose record only cluster init puts (a missing one
   * means its keys were deleted, and epochs must never start again at 0).
   */
  async init(): Promise<void> {
    const key = b64(this.key('epoch'))
    await this.client.request(
      '/v3/kv/txn',
      {
        compare: [{ key, target: 'CREATE', result: 'EQUAL', create_revision: '0' }],
        success: [{ request_put: { key, value: b64(padEpoch(0)) } }],
      },
      this.timeoutMs,
      `creation of ${this.key('epoch')}`,
    )
  }

  key(...parts: string[]): string {
    return [this.prefix, ...parts].join('/')
  }

  #claimKey(epoch: number): string {
    return this.key('claims', padEpoch(epoch))
  }

  /**
   * One transaction: if `claims/<epoch>` was never created and the epoch record is below
   * `epoch`, put the claim (owner inside, on a fresh etcd lease) and the epoch record together,
   * so publishing is atomic with claiming and an epoch whose claim key expired is never claimed
   * again; else 'lost'. When the reply never came (a timeout after etcd may have applied it), or
   * a retry on the next member found the claim already made, the owner inside says whose: ours
   * (same nonce) is 'won'.
   */
  async claim(epoch: number, owner: ClaimOwner): Promise<'won' | 'lost'> {
    const granted = await this.client.request<{ ID?: string; TTL?: string }>(
      '/v3/lease/grant',
      { TTL: this.ttlSeconds },
      this.timeoutMs,
      `grant of a ${this.ttlSeconds} s lease for claims/${epoch}`,
    )
    const lease = granted.ID
    if (lease === undefined)
      throw new Error(`etcd granted a lease without an ID (${JSON.stringify(granted)})`)
    const key = b64(this.#claimKey(epoch))
    const epochKey = b64(this.key('epoch'))
    let answer: TxnAnswer
    try {
      answer = await this.client.request<TxnAnswer>(
        '/v3/kv/txn',
        {
          compare: [
            { key, target: 'CREATE', result: 'EQUAL', create_revision: '0' },
            { key: epochKey, target: 'VALUE', result: 'LESS', value: b64(padEpoch(epoch)) },
          ],
          success: [
            { request_put: { key, value: b64(JSON.stringify(owner)), lease } },
            { request_put: { key: epochKey, value: b64(padEpoch(epoch)) } },
          ],
          failure: [{ request_range: { key } }, { request_range: { key: epochKey } }],
        },
        this.timeoutMs,
        `claim of ${this.#claimKey(epoch)}`,
      )
    } catch (err) {
      // The reply was lost, or never sent: the key says which.
      const found = await this.client
        .get(this.#claimKey(epoch), this.timeoutMs)
        .catch(() => undefined)
      const mine = found !== undefined && ownerOf(found)?.nonce === owner.nonce
      if (found === undefined) throw err
      return this.#settle(epoch, mine ? found.lease : undefined)
    }
    if (answer.succeeded) return this.#settle(epoch, lease)
    const [claimRange, epochRange] = answer.responses ?? []
    const found = claimRange?.response_range?.kvs?.[0]
    const record = epochRange?.response_range?.kvs?.[0]
    if (record === undefined) {
      throw new TandemError(
        'ECLUSTER',
        `etcd has no ${this.key('epoch')}: the cluster was never initialized at prefix ${this.prefix} (initEtcdCluster), or its keys were deleted`,
      )
    }
    this.#highest = Math.max(this.#highest, this.#epochOf(record))
    // A retry on another member after the first one applied it: our own claim.
    if (found !== undefined && ownerOf(found)?.nonce === owner.nonce) {
      return this.#settle(epoch, found.lease)
    }
    return 'lost'
  }

  #settle(epoch: number, lease: string | undefined): 'won' | 'lost' {
    this.#highest = Math.max(this.#highest, epoch)
    if (lease === undefined) return 'lost'
    this.#leases.set(epoch, lease)
    return 'won'
  }

  /**
   * Raises the epoch record to `epoch`, never lowers it (one transaction): the republish path of
   * the lease core. A claim already put it, so this mostly does nothing.
   */
  async publishEpoch(epoch: number): Promise<void> {
    const key = b64(this.key('epoch'))
    const value = b64(padEpoch(epoch))
    await this.client.request(
      '/v3/kv/txn',
      {
        compare: [{ key, target: 'VALUE', result: 'LESS', value }],
        success: [{ request_put: { key, value } }],
      },
      this.timeoutMs,
      `publish of epoch ${epoch} in ${this.key('epoch')}`,
    )
  }

  #epochOf(kv: EtcdKv): number {
    const raw = unb64(kv.value)
    const n = Number(raw)
    if (raw === '' || !Number.isSafeInteger(n) || n < 0) {
      throw Object.assign(
        new Error(
          `${this.key('epoch')} should hold the highest claimed epoch, a whole number; it holds ${JSON.stringify(raw.slice(0, 40))}`,
        ),
        { code: 'EBADEPOCH' },
      )
    }
    return n
  }

  async readEpoch(): Promise<number> {
    const kv = await this.client.get(this.key('epoch'), this.timeoutMs)
    return kv === undefined ? 0 : this.#epochOf(kv)
  }

  /**
   * The epoch record, then any claim key above it (one range: etcd has no negative lookup
   * cache; claims that nobody published cannot be made through this store, but a key put by
   * hand or an older version is still seen). Keys are zero-padded, so the last is the highest.
   */
  async highestClaim(): Promise<number> {
    const published = await this.readEpoch()
    this.#highest = Math.max(this.#highest, published)
    const r = await this.client.request<{ kvs?: EtcdKv[] }>(
      '/v3/kv/range',
      {
        key: b64(this.#claimKey(this.#highest + 1)),
        range_end: prefixEnd(this.key('claims') + '/'),
        keys_only: true,
        sort_order: 'DESCEND',
        sort_target: 'KEY',
        limit: 1,
      },
      this.timeoutMs,
      `range of ${this.key('claims')}/ above ${this.#highest}`,
    )
    const top = r.kvs?.[0]
    if (top !== undefined) {
      const n = Number(unb64(top.key).split('/').pop())
      if (Number.isSafeInteger(n)) this.#highest = Math.max(this.#highest, n)
    }
    return this.#highest
  }

  async readOwner(epoch: number): Promise<ClaimOwner | undefined> {
    const kv = await this.client.get(this.#claimKey(epoch), this.timeoutMs)
    return kv === undefined ? undefined : ownerOf(kv)
  }

  async readHeartbeat(epoch: number): Promise<string | undefined> {
    const kv = await this.client.get(this.key('hb', String(epoch)), this.timeoutMs)
    return kv === undefined ? undefined : unb64(kv.value)
  }

  /**
   * Puts `hb/<epoch>` on the claim's etcd lease and keeps that lease alive, side by side. Either
   * failing fails the renew (the lease core then fences on its own clock): a keep-alive that
   * etcd answers without a TTL means the lease expired, and so did the claim key.
   */
  async writeHeartbeat(hb: Heartbeat): Promise<void> {
    const lease = this.#leases.get(hb.epoch)
    if (lease === undefined) {
      throw leaseLost(
        `this node holds no etcd lease for epoch ${hb.epoch}: it never claimed it through this store`,
      )
    }
    const key = this.key('hb', String(hb.epoch))
    const [, kept] = await Promise.all([
      this.client
        .request(
          '/v3/kv/put',
          { key: b64(key), value: b64(JSON.stringify(hb)), lease },
          this.timeoutMs,
          `put of ${key}`,
        )
        .catch((err: unknown) => {
          if ((err as { grpcCode?: number }).grpcCode === 5)
            throw leaseLost(
              `etcd lease ${lease} of epoch ${hb.epoch} expired: ${key} could not be put on it`,
              err,
            )
          throw err
        }),
      this.client.request<{ result?: { TTL?: string } }>(
        '/v3/lease/keepalive',
        { ID: lease },
        this.timeoutMs,
        `keep-alive of etcd lease ${lease} (epoch ${hb.epoch})`,
      ),
    ])
    const ttl = Number(kept.result?.TTL ?? 0)
    if (!(ttl > 0)) {
      throw leaseLost(
        `etcd lease ${lease} of epoch ${hb.epoch} expired (its keep-alive answered ${JSON.stringify(kept.result ?? kept)}): the claim key is gone`,
      )
    }
  }

  /**
   * Why this node may not claim: `<prefix>/config` missing (never initialized, or the wrong
   * prefix or etcd) or not a JSON object, or etcd not answering a linearizable read (no quorum,
   * no member reachable): said with the members' answers.
   */
  async cannotClaim(): Promise<string | undefined> {
    const key = `${this.#clusterPrefix}/config`
    let kv: EtcdKv | undefined
    try {
      kv = await this.client.get(key, this.timeoutMs)
    } catch (err) {
      return `etcd cannot serve a linearizable read of ${key} (no quorum, or no member reachable): ${(err as Error).message}`
    }
    if (kv === undefined) {
      return `etcd has no ${key}: the cluster was never initialized at prefix ${this.#clusterPrefix} (tandem's etcd cluster init), or these endpoints (${this.client.endpoints.join(', ')}) are another etcd`
    }
    const raw = unb64(kv.value)
    try {
      const v = JSON.parse(raw) as unknown
      if (typeof v === 'object' && v !== null && !Array.isArray(v)) return undefined
    } catch {
      // reported below
    }
    return `${key} is not the cluster's configuration (${JSON.stringify(raw.slice(0, 60))})`
  }
}

/** A claim's owner, parsed from its key's value; undefined when it is not one. */
const ownerOf = (kv: EtcdKv): ClaimOwner | undefined => {
  try {
    const o = JSON.parse(unb64(kv.value)) as Partial<ClaimOwner>
    if (typeof o.node === 'string' && typeof o.nonce === 'string' && typeof o.pid === 'number')
      return o as ClaimOwner
  } catch {
    // not an owner
  }
  return undefined
}
