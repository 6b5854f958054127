import { join } from 'node:path'
import { errorMessage, TandemError } from '../errors.js'
import { CgroupTree } from './cgroup.js'
import type { Spawn } from './spawn-child.js'

/**
 * A Spawn that puts each child whose ExecSpec has a cgroup into its own cgroup: made (with
 * memory.max, cpu.weight, pids.max) before the spawn, joined by the child before its program
 * runs, removed once it is empty after the exit; an exit with more OOM kills in it than at the
 * spawn is marked oomKilled. The supervisor takes over its delegated subtree at the first such
 * spawn (`delegate`, so that a config without cgroup settings never touches cgroups); if that
 * fails, the spawn fails with the reason (load already refused a host without delegation).
 */
export const cgroupSpawner = (
  inner: Spawn,
  delegate: () => CgroupTree = () => CgroupTree.delegate(),
): Spawn => {
  let tree: CgroupTree | undefined
  return (req) => {
    const spec = req.exec?.cgroup
    if (!spec) return inner(req)
    let dir: string
    try {
      tree ??= delegate()
      dir = tree.prepare(spec)
    } catch (err) {
      throw new TandemError('ESPAWN', `cannot give ${spec.name} its cgroup: ${errorMessage(err)}`, {
        cause: err,
      })
    }
    const before = CgroupTree.oomKills(dir)
    const child = inner({ ...req, cgroupProcs: join(dir, 'cgroup.procs') })
    return {
      ...child,
      exited: child.exited.then((exit) => {
        const oomKilled = CgroupTree.oomKills(dir) > before
        CgroupTree.remove(dir)
        return oomKilled ? { ...exit, oomKilled } : exit
      }),
    }
  }
}
