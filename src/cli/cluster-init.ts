import type { Plan } from '../config/plan.js'
import { TandemError } from '../errors.js'
import { clusterConfigOf } from '../ha/cluster-config.js'
import { etcdClientOf } from '../ha/etcd-backend.js'
import { initCluster } from '../ha/init-cluster.js'
import { initEtcdCluster } from '../ha/init-etcd-cluster.js'

/** Options of `tandem cluster init`. */
export interface ClusterInitOptions {
  /** Print the result as one JSON object. */
  json?: boolean
}

/**
 * `tandem cluster init -c FILE`: creates the cluster that the config's `ha` section names in its
 * backend (the shared dir's config.json, or `<prefix>/config` and `<prefix>/epoch` in etcd), or says it is already there with the same values (exit 0 either way, so a script
 * may run it on every deployment). Errors are thrown: ECONFIG (78) for a config without `ha` or
 * values other than the cluster's, ECLUSTER (1) for a shared dir that cannot be used.
 */
export const runClusterInit = async (
  plan: Plan,
  options: ClusterInitOptions,
  io: { out: (text: string) => void },
): Promise<void> => {
  const ha = plan.ha
  if (!ha) {
    throw new TandemError(
      'ECONFIG',
      `${plan.configFile} has no "ha" section: cluster init needs ha.name and ha.backend`,
    )
  }
  const b = ha.backend
  if (b.type === 'external') {
    throw new TandemError(
      'EUSAGE',
      `cluster init is for a shared dir or etcd: with ha.backend {"type": "external"} (${plan.configFile}) the cluster manager (Pacemaker) holds the cluster; there is nothing to create`,
    )
  }
  const r =
    b.type === 'dir'
      ? await initCluster(ha, b.sharedDir)
      : await initEtcdCluster({
          client: etcdClientOf(b),
          prefix: b.prefix,
          config: clusterConfigOf(ha),
        }).then((e) => ({ file: e.key, config: e.config, created: e.created }))
  const where = b.type === 'dir' ? b.sharedDir : `etcd ${b.prefix} (${b.endpoints.join(', ')})`
  if (options.json) {
    io.out(
      JSON.stringify({
        cluster: r.config.name,
        ...(b.type === 'dir'
          ? { sharedDir: b.sharedDir }
          : { etcd: b.endpoints, prefix: b.prefix }),
        file: r.file,
        created: r.created,
        config: r.config,
      }),
    )
    return
  }
  const { name, ...timings } = r.config
  const values = Object.entries(timings)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ')
  io.out(
    r.created
      ? `initialized cluster "${name}" in ${where} (${r.file}: ${values}); start its nodes with \`tandem start\``
      : `cluster "${name}" is already initialized in ${where} with the same values (${r.file}: ${values}); nothing changed`,
  )
}
