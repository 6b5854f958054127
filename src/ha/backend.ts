import { join } from 'node:path'
import type { HaBackendSpec, HaSpec } from '../config/plan.js'
import { errorMessage, TandemError } from '../errors.js'
import type { Cancel, Clock } from '../seams/clock.js'
import { joinCluster } from './cluster-config.js'
import type { ClusterKv } from './cluster-kv.js'
import { etcdClientOf, etcdKv, joinEtcdCluster } from './etcd-backend.js'
import type { EtcdClient } from './etcd-client.js'
import { EtcdLeaseStore } from './etcd-store.js'
import { FsLeaseStore } from './fs-store.js'
import type { LeaseStore } from './lease.js'
import { localSharedFs, type SharedFs } from './shared-fs.js'
import { startSharedFsProcess } from './shared-fs-process.js'
import type { BackendStatus, EndpointHealth } from '../status.js'

/**
 * A cluster's backend as the supervisor uses it: the lease store, the keys for presence and
 * cluster upgrade requests, and one store per roll slot; all undefined with `external`, where a
 * cluster manager decides (no lease, no presence, no cluster-wide roll slots).
 */
export interface ClusterBackend {
  readonly spec: HaBackendSpec
  readonly store: LeaseStore | undefined
  readonly kv: ClusterKv | undefined
  readonly slotStore: ((component: string, slot: number) => Promise<LeaseStore>) | undefined
  status(): BackendStatus
  close(): void
}

/** The roll slots of a shared dir: `roll/<component>/<slot>`, each a lease store of its own. */
export const fsSlotStore =
  (fs: SharedFs) =>
  async (component: string, slot: number): Promise<LeaseStore> => {
    const s = new FsLeaseStore(fs, join('roll', component, String(slot)))
    await s.init()
    return s
  }

/** How often the supervisor asks every etcd member for its status (for `tandem status`). */
export const ETCD_HEALTH_MS = 10_000

/**
 * `shared dir /x`, `etcd /tandem/c` (with `at http://a:2379, ...` when the endpoints are plain
 * URLs, as in the config), `external (...)`: for messages and the status line.
 */
export const describeBackend = (
  b: Pick<BackendStatus, 'type' | 'sharedDir' | 'prefix'> & { endpoints?: unknown[] },
): string =>
  b.type === 'dir'
    ? `shared dir ${b.sharedDir}`
    : b.type === 'etcd'
      ? `etcd ${b.prefix}${b.endpoints?.every((e) => typeof e === 'string') ? ` at ${b.endpoints.join(', ')}` : ''}`
      : 'external (a cluster manager promotes and demotes)'

/**
 * Opens and checks the backend before this node competes; nothing has started yet, so a backend
 * that cannot be used starts nothing: ECLUSTER (the shared dir or etcd cannot be used, or holds
 * another cluster), ECONFIG (a TLS or password file missing).
 */
export const joinBackend = async (
  ha: HaSpec,
  options: { onProblem: (message: string) => void; clock: Clock },
): Promise<ClusterBackend> => {
  const spec = ha.backend
  if (spec.type === 'external') {
    return {
      spec,
      store: undefined,
      kv: undefined,
      slotStore: undefined,
      status: () => ({ type: 'external' }),
      close: () => {},
    }
  }
  if (spec.type === 'dir') {
    // Every access to the shared dir goes through its own I/O process: a hung mount holds that
    // process's threads, never this one's (the log, the control socket, shutdown go on).
    const fs = startSharedFsProcess(spec.sharedDir, { onProblem: options.onProblem })
    const store = await joinCluster(ha, fs).catch((err: unknown) => {
      fs.close()
      throw err
    })
    return {
      spec,
      store,
      kv: fs,
      slotStore: fsSlotStore(fs),
      status: () => ({ type: 'dir', sharedDir: spec.sharedDir }),
      close: () => fs.close(),
    }
  }
  const client = etcdClientOf(spec)
  const store = await joinEtcdCluster(ha, spec, client)
  const health = etcdHealth(client, options.clock)
  return {
    spec,
    store,
    kv: etcdKv(client, spec.prefix),
    slotStore: async (component, slot) => {
      const s = new EtcdLeaseStore({
        client,
        prefix: `${spec.prefix}/roll/${component}/${slot}`,
        clusterPrefix: spec.prefix,
        timings: ha,
      })
      await s.init()
      return s
    },
    status: () => ({ type: 'etcd', prefix: spec.prefix, endpoints: health.last() }),
    close: () => health.stop(),
  }
}

/** Every member's status, asked every ETCD_HEALTH_MS in the background; the last answers. */
const etcdHealth = (client: EtcdClient, clock: Clock) => {
  let last: EndpointHealth[] = client.endpoints.map((endpoint) => ({ endpoint }))
  let stopped = false
  let cancel: Cancel = () => {}
  const check = () => {
    void client
      .health(2000)
      .then((h) => (last = h))
      .catch((err: unknown) => {
        last = client.endpoints.map((endpoint) => ({
          endpoint,
          ok: false,
          error: errorMessage(err),
        }))
      })
      .finally(() => {
        if (!stopped) cancel = clock.after(ETCD_HEALTH_MS, check)
      })
  }
  check()
  return {
    last: () => last,
    stop: () => {
      stopped = true
      cancel()
    },
  }
}

/**
 * A one-shot command's access to the cluster (`switchover` following the handover, `upgrade
 * --cluster`): the lease store to read claims from and the keys, without the I/O process or the
 * supervisor's checks. EUSAGE with `external`: the cluster manager has the cluster's state.
 */
export const commandAccess = (
  ha: Pick<HaSpec, 'backend' | 'renewMs' | 'selfFenceMs' | 'takeoverMs' | 'pollMs'>,
  what: string,
): { store: LeaseStore; kv: ClusterKv } => {
  const spec = ha.backend
  if (spec.type === 'dir') {
    const fs = localSharedFs(spec.sharedDir)
    return { store: new FsLeaseStore(fs), kv: fs }
  }
  if (spec.type === 'etcd') {
    const client = etcdClientOf(spec)
    return {
      store: new EtcdLeaseStore({ client, prefix: spec.prefix, timings: ha }),
      kv: etcdKv(client, spec.prefix),
    }
  }
  throw new TandemError(
    'EUSAGE',
    `${what} is not for ha.backend {"type": "external"}: the cluster manager (Pacemaker) decides which node is active and runs what; use its commands (pcs resource move, pcs resource restart)`,
  )
}
