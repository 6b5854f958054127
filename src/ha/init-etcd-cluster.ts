import { TandemError } from '../errors.js'
import { refuseOtherValues, type ClusterConfig } from './cluster-config.js'
import { b64, EtcdClient, unb64, type EtcdKv, type EtcdTransport } from './etcd-client.js'
import { padEpoch } from './etcd-store.js'

/** What `initEtcdCluster` did. */
export interface EtcdClusterInit {
  /** `<prefix>/config`. */
  key: string
  /** The name and timings it holds. */
  config: ClusterConfig
  /** False when it was there already with the same values. */
  created: boolean
}

/**
 * The etcd counterpart of `tandem cluster init`: makes
 * `<prefix>` a cluster by putting `<prefix>/config` (this node's name and timings) and
 * `<prefix>/epoch` (0) in one transaction that succeeds only if neither exists. Never rewrites:
 * with the same values it resolves with `created: false`; with others it fails with ECONFIG
 * naming each differing key with both values. An epoch record without a config (keys deleted by
 * hand): ECLUSTER. etcd unreachable: its error (code EETCD) naming each endpoint.
 */
export const initEtcdCluster = async (options: {
  /** The members' URLs (or `client`, made with TLS and auth). */
  endpoints?: readonly string[]
  client?: EtcdClient
  prefix: string
  config: ClusterConfig
  timeoutMs?: number
  transport?: EtcdTransport
}): Promise<EtcdClusterInit> => {
  const client = options.client ?? new EtcdClient(options.endpoints ?? [], options.transport)
  const prefix = options.prefix.replace(/\/+$/, '')
  const key = `${prefix}/config`
  const epochKey = `${prefix}/epoch`
  const mine = options.config
  const timeoutMs = options.timeoutMs ?? 5000
  const r = await client.request<{
    succeeded?: boolean
    responses?: { response_range?: { kvs?: EtcdKv[] } }[]
  }>(
    '/v3/kv/txn',
    {
      compare: [
        { key: b64(key), target: 'CREATE', result: 'EQUAL', create_revision: '0' },
        { key: b64(epochKey), target: 'CREATE', result: 'EQUAL', create_revision: '0' },
      ],
      success: [
        { request_put: { key: b64(key), value: b64(JSON.stringify(mine, null, 2) + '\n') } },
        { request_put: { key: b64(epochKey), value: b64(padEpoch(0)) } },
      ],
      failure: [{ request_range: { key: b64(key) } }],
    },
    timeoutMs,
    `init of ${key}`,
  )
  if (r.succeeded) return { key, config: mine, created: true }
  const kv = r.responses?.[0]?.response_range?.kvs?.[0]
  if (kv === undefined) {
    throw new TandemError(
      'ECLUSTER',
      `${epochKey} exists but ${key} does not: someone deleted the cluster's keys by hand; epochs must never be reused, so init does not start again at 0 (delete ${prefix}/ entirely only when no node runs)`,
    )
  }
  const raw = unb64(kv.value)
  let theirs: Partial<ClusterConfig>
  try {
    theirs = JSON.parse(raw) as Partial<ClusterConfig>
  } catch (err) {
    throw new TandemError(
      'ECLUSTER',
      `${key} is not valid JSON (${JSON.stringify(raw.slice(0, 60))}): it should hold the cluster's name and timings; fix it (init never rewrites it)`,
      { cause: err },
    )
  }
  refuseOtherValues(key, mine, theirs, 'another prefix')
  return { key, config: mine, created: false }
}
