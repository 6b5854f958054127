import type { HaBackendSpec, HaSpec } from '../config/plan.js'
import { TandemError } from '../errors.js'
import { clusterConfigOf, refuseOtherValues, type ClusterConfig } from './cluster-config.js'
import {
  b64,
  connectEtcd,
  prefixEnd,
  readPasswordFile,
  unb64,
  type EtcdClient,
  type EtcdTransport,
} from './etcd-client.js'
import { EtcdLeaseStore } from './etcd-store.js'
import type { ClusterKv } from './cluster-kv.js'

type EtcdSpec = Extract<HaBackendSpec, { type: 'etcd' }>

/**
 * How long presence, cluster upgrade requests and the join's reads may take (ms). They are not
 * the lease: nothing fences on them, and a slow etcd only delays them.
 */
export const ETCD_KV_TIMEOUT_MS = 5000

/** The client for `spec`: TLS files and the password file read now (ECONFIG naming them). */
export const etcdClientOf = (spec: EtcdSpec, transport?: EtcdTransport): EtcdClient =>
  connectEtcd(
    {
      endpoints: spec.endpoints,
      ...(spec.tls ? { tls: spec.tls } : {}),
      ...(spec.auth
        ? { auth: { user: spec.auth.user, password: readPasswordFile(spec.auth.passwordFile) } }
        : {}),
    },
    transport,
  )

/**
 * The keys under `<prefix>/` as a ClusterKv (paths such as `nodes/a` are keys `<prefix>/nodes/a`),
 * so that presence and cluster upgrade requests run on etcd as they do in a shared dir. A
 * "directory" is a key prefix: mkdir does nothing, readdir lists the next path segment of the
 * keys below it.
 */
export const etcdKv = (client: EtcdClient, prefix: string): ClusterKv => {
  const key = (path: string) => `${prefix}/${path.replace(/^\/+|\/+$/g, '')}`
  return {
    root: `etcd ${prefix}`,
    read: async (path) => {
      const kv = await client.get(key(path), ETCD_KV_TIMEOUT_MS)
      return kv === undefined ? undefined : unb64(kv.value)
    },
    write: async (path, data, options) => {
      const k = b64(key(path))
      if (!options?.exclusive) {
        await client.request(
          '/v3/kv/put',
          { key: k, value: b64(data) },
          ETCD_KV_TIMEOUT_MS,
          `put of ${key(path)}`,
        )
        return
      }
      // As O_EXCL: only if the key was never created.
      const r = await client.request<{ succeeded?: boolean }>(
        '/v3/kv/txn',
        {
          compare: [{ key: k, target: 'CREATE', result: 'EQUAL', create_revision: '0' }],
          success: [{ request_put: { key: k, value: b64(data) } }],
        },
        ETCD_KV_TIMEOUT_MS,
        `creation of ${key(path)}`,
      )
      if (!r.succeeded)
        throw Object.assign(new Error(`${key(path)} exists in etcd: it is never rewritten`), {
          code: 'EEXIST',
        })
    },
    mkdir: () => Promise.resolve(),
    readdir: async (path) => {
      const dir = key(path) + '/'
      const r = await client.request<{ kvs?: { key: string }[] }>(
        '/v3/kv/range',
        { key: b64(dir), range_end: prefixEnd(dir), keys_only: true },
        ETCD_KV_TIMEOUT_MS,
        `list of ${dir}`,
      )
      const names = (r.kvs ?? []).map((kv) => unb64(kv.key).slice(dir.length).split('/')[0]!)
      return [...new Set(names)].filter((n) => n !== '')
    },
  }
}

const clusterError = (message: string, cause?: unknown): never => {
  throw new TandemError('ECLUSTER', message, cause === undefined ? undefined : { cause })
}

/**
 * The etcd counterpart of joinCluster: `<prefix>/config` (put once by `tandem cluster init`)
 * names this cluster with this node's timings; etcd answers a linearizable read (a quorum). Never
 * creates anything: a node that cannot reach the cluster's keys starts nothing. ECLUSTER naming
 * the endpoints and what is wrong otherwise.
 */
export const joinEtcdCluster = async (
  ha: HaSpec,
  spec: EtcdSpec,
  client: EtcdClient,
): Promise<EtcdLeaseStore> => {
  const key = `${spec.prefix}/config`
  const mine = clusterConfigOf(ha)
  const kv = await client
    .get(key, ETCD_KV_TIMEOUT_MS)
    .catch((err: unknown) =>
      clusterError(
        `cannot read ${key} from etcd (${spec.endpoints.join(', ')}): ${(err as Error).message}`,
        err,
      ),
    )
  if (kv === undefined) {
    return clusterError(
      `etcd (${spec.endpoints.join(', ')}) has no ${key}: the cluster was never initialized at prefix ${spec.prefix}, or these endpoints are another etcd; run \`tandem cluster init -c <file>\` once, on one node`,
    )
  }
  let theirs: Partial<ClusterConfig>
  try {
    theirs = JSON.parse(unb64(kv.value)) as Partial<ClusterConfig>
  } catch (err) {
    return clusterError(
      `${key} in etcd is not valid JSON: it should hold the cluster's name and timings; fix it (it is never rewritten)`,
      err,
    )
  }
  try {
    refuseOtherValues(key, mine, theirs, 'another ha.backend.prefix')
  } catch (err) {
    // Another cluster's, or other timings: this node may not join (not a config error here).
    return clusterError((err as Error).message, err)
  }
  return new EtcdLeaseStore({ client, prefix: spec.prefix, timings: ha })
}
