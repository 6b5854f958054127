import { accessSync, constants, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { TandemError } from '../errors.js'

/** cgroup v2 settings of one instance (`components.*.cgroup`). */
export interface CgroupSpec {
  /** The instance's cgroup, under the supervisor's: `<component>.<index>`. */
  name: string
  memoryMax?: number
  cpuWeight?: number
  pidsMax?: number
}

/** The controller each setting needs. */
export const neededControllers = (c: Omit<CgroupSpec, 'name'>): string[] => [
  ...(c.memoryMax !== undefined ? ['memory'] : []),
  ...(c.cpuWeight !== undefined ? ['cpu'] : []),
  ...(c.pidsMax !== undefined ? ['pids'] : []),
]

/** Where the supervisor sits in the cgroup v2 hierarchy, read from /proc/self. */
export interface OwnCgroup {
  /** The cgroup2 mount point. */
  mount: string
  /** The supervisor's cgroup relative to it (`/` is the root). */
  path: string
  /** Its directory. */
  dir: string
}

/** The cgroup2 mount and the supervisor's cgroup in it, or why there is none. */
export const ownCgroup = (proc = '/proc/self'): { cgroup: OwnCgroup } | { problem: string } => {
  let mountinfo: string
  let membership: string
  try {
    mountinfo = readFileSync(join(proc, 'mountinfo'), 'utf8')
    membership = readFileSync(join(proc, 'cgroup'), 'utf8')
  } catch {
    return { problem: 'no /proc/self/cgroup: cgroups are a Linux facility' }
  }
  // mountinfo: "id parent major:minor root mountpoint options ... - fstype source superoptions"
  const mount = mountinfo
    .split('\n')
    .map((l) => l.split(' '))
    .find((f) => f[f.indexOf('-') + 1] === 'cgroup2')?.[4]
  if (!mount) return { problem: 'no cgroup v2 hierarchy is mounted (a cgroup v1 host)' }
  const path = /^0::(.*)$/m.exec(membership)?.[1]
  if (path === undefined) return { problem: 'the supervisor is in no cgroup v2 cgroup' }
  return { cgroup: { mount, path, dir: join(mount, path) } }
}

/**
 * Why tandem cannot give instances cgroups with these controllers, or undefined when it can:
 * the host must have delegated the supervisor's cgroup (not the root) to it: writable, offering
 * the controllers (systemd's Delegate=yes does both).
 */
export const cgroupProblem = (controllers: string[], proc = '/proc/self'): string | undefined => {
  const own = ownCgroup(proc)
  if ('problem' in own) return own.problem
  const { dir, path } = own.cgroup
  if (path === '/') {
    return `the supervisor runs in the root cgroup of ${own.cgroup.mount}, which is not delegated to it (run it as a systemd service with Delegate=yes)`
  }
  try {
    accessSync(dir, constants.W_OK)
    accessSync(join(dir, 'cgroup.subtree_control'), constants.W_OK)
    accessSync(join(dir, 'cgroup.procs'), constants.W_OK)
  } catch {
    return `the supervisor's cgroup ${dir} is not writable by it: not delegated (systemd Delegate=yes)`
  }
  let offered: string[]
  try {
    offered = readFileSync(join(dir, 'cgroup.controllers'), 'utf8').trim().split(/\s+/)
  } catch {
    return `cannot read ${join(dir, 'cgroup.controllers')}`
  }
  const missing = controllers.filter((c) => !offered.includes(c))
  if (missing.length) {
    return `the supervisor's cgroup ${dir} does not offer the ${missing.join(', ')} controller${missing.length > 1 ? 's' : ''} (it offers: ${offered.filter(Boolean).join(', ') || 'none'}); the host does not delegate ${missing.length > 1 ? 'them' : 'it'} (a cgroup v2 host, systemd Delegate=yes)`
  }
  return undefined
}

/** The name of the leaf cgroup the supervisor moves itself (and its helpers) into. */
export const SUPERVISOR_LEAF = 'supervisor'

/**
 * The supervisor's delegated cgroup v2 subtree. Taking it over moves every process of the
 * supervisor's cgroup into a `supervisor` leaf (cgroup v2 allows controllers to be enabled for
 * children only in a cgroup without processes). Each instance then gets its own cgroup beside
 * that leaf, with the controllers its settings need enabled for the children.
 */
export class CgroupTree {
  readonly dir: string

  private constructor(dir: string) {
    this.dir = dir
  }

  /** Takes over the delegated subtree; throws ECONFIG with cgroupProblem's reason. */
  static delegate(proc = '/proc/self'): CgroupTree {
    const problem = cgroupProblem([], proc)
    if (problem) throw new TandemError('ECONFIG', `cannot use cgroups: ${problem}`)
    const own = ownCgroup(proc) as { cgroup: OwnCgroup }
    const tree = new CgroupTree(own.cgroup.dir)
    const leaf = join(tree.dir, SUPERVISOR_LEAF)
    mkdirSync(leaf, { recursive: true })
    // Every process of our cgroup: the supervisor and any helper already spawned (they would
    // otherwise keep the cgroup "internal" and the controllers could not be enabled).
    for (let round = 0; round < 10; round++) {
      const pids = readFileSync(join(tree.dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)
      if (!pids.length) break
      for (const pid of pids) {
        try {
          writeFileSync(join(leaf, 'cgroup.procs'), pid)
        } catch {
          // It exited meanwhile.
        }
      }
    }
    return tree
  }

  /**
   * Creates (or reuses) an instance's cgroup with its settings; returns its directory. The
   * child joins it by writing its pid into `cgroup.procs` before its program runs.
   */
  prepare(spec: CgroupSpec): string {
    const controllers = neededControllers(spec)
    if (controllers.length) {
      // Idempotent: enabling an enabled controller changes nothing.
      writeFileSync(
        join(this.dir, 'cgroup.subtree_control'),
        controllers.map((c) => `+${c}`).join(' '),
      )
    }
    const dir = join(this.dir, spec.name)
    mkdirSync(dir, { recursive: true })
    const set = (file: string, value: number | undefined) => {
      if (value !== undefined) writeFileSync(join(dir, file), String(value))
    }
    set('memory.max', spec.memoryMax)
    set('cpu.weight', spec.cpuWeight)
    set('pids.max', spec.pidsMax)
    return dir
  }

  /** How many OOM kills the kernel did in this cgroup (memory.events oom_kill); 0 without it. */
  static oomKills(dir: string): number {
    try {
      const m = /^oom_kill (\d+)$/m.exec(readFileSync(join(dir, 'memory.events'), 'utf8'))
      return m ? Number(m[1]) : 0
    } catch {
      return 0
    }
  }

  /** Removes an instance's cgroup once it is empty (busy: it stays, and is reused). */
  static remove(dir: string): void {
    try {
      rmdirSync(dir)
    } catch {
      // Still has processes (a grandchild), or already gone.
    }
  }
}
