import { access, constants, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { HaSpec } from '../config/plan.js'
import { errorMessage, hasCode, TandemError } from '../errors.js'
import { FsLeaseStore } from './fs-store.js'
import type { SharedFs } from './shared-fs.js'

/** What every node of a cluster must agree on, kept in `<sharedDir>/config.json`. */
export interface ClusterConfig {
  name: string
  renewMs: number
  selfFenceMs: number
  takeoverMs: number
  pollMs: number
}

/** The cluster's file in the shared directory, written by `tandem cluster init` alone. */
export const clusterConfigFile = (sharedDir: string): string => join(sharedDir, 'config.json')

/** This node's side of the agreement: its `ha` name and timings. */
export const clusterConfigOf = (ha: HaSpec): ClusterConfig => ({
  name: ha.name,
  renewMs: ha.renewMs,
  selfFenceMs: ha.selfFenceMs,
  takeoverMs: ha.takeoverMs,
  pollMs: ha.pollMs,
})

/** The timing keys (name aside) whose values differ between this node and the cluster's file. */
export const timingDifferences = (
  mine: ClusterConfig,
  theirs: Partial<ClusterConfig>,
): (keyof ClusterConfig)[] =>
  (Object.keys(mine) as (keyof ClusterConfig)[]).filter(
    (k) => k !== 'name' && theirs[k] !== mine[k],
  )

/**
 * An init that found the cluster already made refuses other values (ECONFIG, exit 78), naming
 * `where` it is kept and each differing key with both values; the same values pass. `another`
 * says what a second cluster would need instead (another shared dir, another prefix).
 */
export const refuseOtherValues = (
  where: string,
  mine: ClusterConfig,
  theirs: Partial<ClusterConfig>,
  another: string,
): void => {
  const differ: (keyof ClusterConfig)[] = [
    ...(theirs.name !== mine.name ? (['name'] as const) : []),
    ...timingDifferences(mine, theirs),
  ]
  if (!differ.length) return
  const values = (c: Partial<ClusterConfig>) =>
    differ.map((k) => `${k} ${JSON.stringify(c[k])}`).join(', ')
  throw new TandemError(
    'ECONFIG',
    `cluster already initialized with other values: ${where} has ${values(theirs)}, and this config has ${values(mine)}; it is never rewritten: give this node the cluster's values${differ.includes('name') ? `, or ${another} for another cluster` : ''}`,
  )
}

const clusterError = (message: string, cause?: unknown): never => {
  throw new TandemError('ECLUSTER', message, cause === undefined ? undefined : { cause })
}

/**
 * Checks that `ha.sharedDir` exists and is a directory this process can write; ECLUSTER naming
 * the directory and what is wrong otherwise.
 */
export const checkSharedDir = async (ha: HaSpec, dir: string): Promise<void> => {
  const st = await stat(dir).catch((err: unknown) =>
    clusterError(
      `the shared dir ${dir} cannot be used: ${errorMessage(err)}; expected a directory on storage that every node of cluster "${ha.name}" mounts`,
      err,
    ),
  )
  if (!st.isDirectory()) {
    clusterError(
      `the shared dir ${dir} is not a directory; expected a directory on storage that every node of cluster "${ha.name}" mounts`,
    )
  }
  await access(dir, constants.W_OK | constants.X_OK).catch((err: unknown) =>
    clusterError(
      `the shared dir ${dir} is not writable by this node (uid ${process.getuid?.()}): ${errorMessage(err)}`,
      err,
    ),
  )
}

/**
 * Reads and parses `<sharedDir>/config.json`: undefined when it does not exist, ECLUSTER when it
 * cannot be read or is not a JSON object (it is never rewritten, so the message says to fix it).
 */
export const readClusterConfig = async (
  file: string,
): Promise<Partial<ClusterConfig> | undefined> => {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    if (hasCode(err, 'ENOENT')) return undefined
    return clusterError(`cannot read ${file}: ${errorMessage(err)}`, err)
  }
  let theirs: unknown
  try {
    theirs = JSON.parse(text)
  } catch (err) {
    // Empty: created by an init that has not written it yet (or never will: it crashed).
    return clusterError(
      `${file} is not valid JSON (${text === '' ? 'it is empty' : errorMessage(err)}): it should hold the cluster's name and timings; fix it (it is never rewritten)`,
      err,
    )
  }
  if (typeof theirs !== 'object' || theirs === null || Array.isArray(theirs)) {
    return clusterError(
      `${file} holds ${JSON.stringify(theirs)}, not an object: it should hold the cluster's name and timings; fix it (it is never rewritten)`,
    )
  }
  return theirs
}

/**
 * Checks `ha.sharedDir` before this node competes: it exists, is a directory this node can
 * write, and its `config.json` (written once by `tandem cluster init`, never rewritten) names
 * this cluster with this node's timings. Never creates that file: a shared directory that is not
 * mounted looks like an empty local one, and a node that made a cluster there would be active
 * beside the real active node. Fails with ECLUSTER saying what is wrong and what was expected.
 * Resolves to the lease store on that directory, reached through `fs` (the supervisor's I/O
 * process: these first checks run before anything else does, the lease's I/O for as long as it runs).
 */
export const joinCluster = async (ha: HaSpec, fs: SharedFs): Promise<FsLeaseStore> => {
  const dir = fs.root
  await checkSharedDir(ha, dir)
  const file = clusterConfigFile(dir)
  const mine = clusterConfigOf(ha)
  const theirs = await readClusterConfig(file)
  if (!theirs) {
    return clusterError(
      `the shared dir ${dir} has no config.json: either the shared storage is not mounted on this node (an unmounted mount point looks like an empty directory) or the cluster was never initialized; run \`tandem cluster init -c <file>\` once, on one node`,
    )
  }
  if (theirs.name !== mine.name) {
    clusterError(
      `the shared dir ${dir} belongs to cluster ${JSON.stringify(theirs.name)}, and this node's ha.name is ${JSON.stringify(mine.name)}: two clusters must not share a directory`,
    )
  }
  const differ = timingDifferences(mine, theirs)
  if (differ.length) {
    clusterError(
      `cluster "${mine.name}" runs with ${differ.map((k) => `${k} ${theirs[k]}`).join(', ')} (${file}), and this node has ${differ.map((k) => `${k} ${mine[k]}`).join(', ')}: every node must use the same timings`,
    )
  }
  const store = new FsLeaseStore(fs)
  await store
    .init()
    .catch((err: unknown) =>
      clusterError(`cannot create claims/ and hb/ in ${dir}: ${errorMessage(err)}`, err),
    )
  return store
}
