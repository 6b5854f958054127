import { access, constants, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { HaSpec } from '../config/plan.js'
import { errorMessage, TandemError } from '../errors.js'
import { FsLeaseStore } from './fs-store.js'

/** What every node of a cluster must agree on, kept in `<sharedDir>/config.json`. */
const agreed = (ha: HaSpec) => ({
  name: ha.name,
  renewMs: ha.renewMs,
  selfFenceMs: ha.selfFenceMs,
  takeoverMs: ha.takeoverMs,
  pollMs: ha.pollMs,
})

/**
 * Checks `ha.sharedDir` before this node competes: it exists, is a directory this node can
 * write, and its `config.json` (written by the first node, never rewritten) names this cluster
 * with this node's timings. Fails with ECLUSTER saying what is wrong and what was expected.
 * Resolves to the lease store on that directory.
 */
export const joinCluster = async (ha: HaSpec): Promise<FsLeaseStore> => {
  const dir = ha.sharedDir
  const fail = (message: string, cause?: unknown): never => {
    throw new TandemError('ECLUSTER', message, cause === undefined ? undefined : { cause })
  }
  const st = await stat(dir).catch((err: unknown) =>
    fail(
      `ha.sharedDir ${dir} cannot be used: ${errorMessage(err)}; expected a directory on storage that every node of cluster "${ha.name}" mounts`,
      err,
    ),
  )
  if (!st.isDirectory()) fail(`ha.sharedDir ${dir} is not a directory`)
  await access(dir, constants.W_OK | constants.X_OK).catch((err: unknown) =>
    fail(
      `ha.sharedDir ${dir} is not writable by this node (uid ${process.getuid?.()}): ${errorMessage(err)}`,
      err,
    ),
  )
  const file = join(dir, 'config.json')
  const mine = agreed(ha)
  try {
    await writeFile(file, JSON.stringify(mine, null, 2) + '\n', { flag: 'wx', mode: 0o644 })
  } catch (err) {
    if ((err as { code?: unknown }).code !== 'EEXIST') {
      fail(`cannot write ${file}: ${errorMessage(err)}`, err)
    }
  }
  const text = await readFile(file, 'utf8')
  let theirs: Partial<typeof mine>
  try {
    theirs = JSON.parse(text) as Partial<typeof mine>
  } catch (err) {
    return fail(
      `${file} is not valid JSON (${errorMessage(err)}): it should hold the cluster's name and timings; fix it (it is never rewritten)`,
      err,
    )
  }
  if (theirs.name !== mine.name) {
    fail(
      `ha.sharedDir ${dir} belongs to cluster ${JSON.stringify(theirs.name)}, and this node's ha.name is ${JSON.stringify(mine.name)}: two clusters must not share a directory`,
    )
  }
  const differ = (Object.keys(mine) as (keyof typeof mine)[]).filter(
    (k) => k !== 'name' && theirs[k] !== mine[k],
  )
  if (differ.length) {
    fail(
      `cluster "${mine.name}" runs with ${differ.map((k) => `${k} ${theirs[k]}`).join(', ')} (${file}), and this node has ${differ.map((k) => `${k} ${mine[k]}`).join(', ')}: every node must use the same timings`,
    )
  }
  const store = new FsLeaseStore(dir)
  await store
    .init()
    .catch((err: unknown) =>
      fail(`cannot create claims/ and hb/ in ${dir}: ${errorMessage(err)}`, err),
    )
  return store
}
