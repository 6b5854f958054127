import { mkdir, open } from 'node:fs/promises'
import { join } from 'node:path'
import type { HaSpec } from '../config/plan.js'
import { errorMessage, hasCode, TandemError } from '../errors.js'
import {
  checkSharedDir,
  clusterConfigFile,
  clusterConfigOf,
  readClusterConfig,
  refuseOtherValues,
  type ClusterConfig,
} from './cluster-config.js'

/** The directories of the lease protocol, made by init so that the first claim finds them. */
export const CLUSTER_DIRS = ['claims', 'hb', 'tmp'] as const

/** What `initCluster` did. */
export interface ClusterInit {
  /** `<sharedDir>/config.json`. */
  file: string
  /** The name and timings the file holds. */
  config: ClusterConfig
  /** False when the file was there already with the same values. */
  created: boolean
}

/**
 * `tandem cluster init`: makes `ha.sharedDir` a cluster by writing its `config.json` (this
 * node's name and timings), created exclusively and synced, then `claims/`, `hb/` and `tmp/`.
 * Never rewrites an existing file: with the same values it resolves with `created: false`
 * (running it again is harmless), with others it fails with ECONFIG naming each differing key
 * with both values. A shared dir that is missing, not a directory or not writable: ECLUSTER.
 */
export const initCluster = async (ha: HaSpec, sharedDir: string): Promise<ClusterInit> => {
  await checkSharedDir(ha, sharedDir)
  const file = clusterConfigFile(sharedDir)
  const mine = clusterConfigOf(ha)
  let created = false
  try {
    // wx: of two inits racing, exactly one creates the file; the other compares with it.
    const fh = await open(file, 'wx', 0o644)
    try {
      await fh.writeFile(JSON.stringify(mine, null, 2) + '\n')
      await fh.sync()
    } finally {
      await fh.close()
    }
    created = true
  } catch (err) {
    if (!hasCode(err, 'EEXIST')) {
      throw new TandemError('ECLUSTER', `cannot create ${file}: ${errorMessage(err)}`, {
        cause: err,
      })
    }
  }
  if (!created) {
    const theirs = await readClusterConfig(file)
    if (!theirs) {
      // Gone between our create and our read: someone removes files in the shared dir.
      throw new TandemError(
        'ECLUSTER',
        `${file} existed when this init tried to create it and was gone when it read it: something else is changing ${sharedDir}`,
      )
    }
    refuseOtherValues(file, mine, theirs, 'another shared dir')
  }
  for (const d of CLUSTER_DIRS) {
    const path = join(sharedDir, d)
    await mkdir(path, { recursive: true }).catch((err: unknown) => {
      throw new TandemError('ECLUSTER', `cannot create ${path}: ${errorMessage(err)}`, {
        cause: err,
      })
    })
  }
  return { file, config: mine, created }
}
