import type { Plan } from '../config/plan.js'
import { TandemError } from '../errors.js'
import { initCluster } from '../ha/init-cluster.js'

/** Options of `tandem cluster init`. */
export interface ClusterInitOptions {
  /** Print the result as one JSON object. */
  json?: boolean
}

/**
 * `tandem cluster init -c FILE`: creates the cluster that the config's `ha` section names in its
 * shared dir, or says it is already there with the same values (exit 0 either way, so a script
 * may run it on every deployment). Errors are thrown: ECONFIG (78) for a config without `ha` or
 * values other than the cluster's, ECLUSTER (1) for a shared dir that cannot be used.
 */
export const runClusterInit = async (
  plan: Plan,
  options: ClusterInitOptions,
  io: { out: (text: string) => void },
): Promise<void> => {
  if (!plan.ha) {
    throw new TandemError(
      'ECONFIG',
      `${plan.configFile} has no "ha" section: cluster init needs ha.name and ha.sharedDir`,
    )
  }
  const r = await initCluster(plan.ha)
  if (options.json) {
    io.out(
      JSON.stringify({
        cluster: r.config.name,
        sharedDir: plan.ha.sharedDir,
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
      ? `initialized cluster "${name}" in ${plan.ha.sharedDir} (${r.file}: ${values}); start its nodes with \`tandem start\``
      : `cluster "${name}" is already initialized in ${plan.ha.sharedDir} with the same values (${r.file}: ${values}); nothing changed`,
  )
}
