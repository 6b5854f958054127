import pidusage from 'pidusage'
import {
  groupMemberReader,
  isLive,
  procUnits,
  readUptimeSeconds,
  type ProcEntry,
  type ProcUnits,
} from './proc-table.js'

/** CPU (percent of one core, summed over the group) and resident memory of a process group. */
export interface Usage {
  cpuPercent: number
  rssBytes: number
}

/**
 * Usage of whole process groups (a server started by a script is its children), all in one
 * call: a group with no live process left is absent from the answer.
 */
export type SampleGroups = (pgids: readonly number[]) => Promise<Map<number, Usage>>

export interface GroupUsageSources {
  /** Milliseconds on a monotonic clock: the time between two passes. */
  monotonic(): number
  /**
   * The processes of these groups (others may come too), or undefined where /proc cannot be
   * read (then pidusage samples).
   */
  readTable?: (pgids: ReadonlySet<number>) => ProcEntry[] | undefined
  readUptime?: () => number | undefined
  units?: () => Promise<ProcUnits>
}

const round1 = (x: number) => Math.round(x * 10) / 10

/**
 * A sampler of process groups that reads the process table once per call (Linux: see
 * groupMemberReader for what it reads again and what it skips), sums each
 * group's live members, and takes CPU from the difference of their CPU ticks since the previous
 * call, over the monotonic time between the two. It keeps the ticks of the members seen in the
 * last call only, so what it holds follows what runs.
 *
 * A group seen for the first time has no previous call to compare with: its figure is then each
 * member's CPU time over its own lifetime (from its start time and the host's uptime), as `ps`
 * shows it, so that `status` has a CPU figure from the first sample after a start. A member that
 * appeared since the previous call counts with all its ticks (it started in between); one that
 * ended in between drops out, with what it used since the previous call.
 *
 * Elsewhere (no /proc) each group's leader is sampled with pidusage, the only member a process
 * group can be named by there.
 */
export const groupUsageSampler = (sources: GroupUsageSources): SampleGroups => {
  const readTable = sources.readTable ?? groupMemberReader()
  const readUptime = sources.readUptime ?? readUptimeSeconds
  const units = sources.units ?? procUnits
  /** Ticks and start of every member seen by the previous call, and when it read them. */
  let last = new Map<number, { cpuTicks: number; startTicks: number }>()
  let lastGroups = new Set<number>()
  let lastAt = 0

  return async (pgids) => {
    const u = await units()
    const at = sources.monotonic()
    const wanted = new Set(pgids)
    const table = readTable(wanted)
    if (!table) return sampleLeaders(pgids)
    const sums = new Map<number, { ticksPerS: number; rssPages: number }>()
    const seen = new Map<number, { cpuTicks: number; startTicks: number }>()
    let uptime: number | undefined
    const elapsedS = (at - lastAt) / 1000
    for (const e of table) {
      if (!wanted.has(e.pgrp) || !isLive(e)) continue
      seen.set(e.pid, { cpuTicks: e.cpuTicks, startTicks: e.startTicks })
      let ticksPerS: number
      if (lastGroups.has(e.pgrp) && elapsedS > 0) {
        const before = last.get(e.pid)
        const delta =
          before && before.startTicks === e.startTicks ? e.cpuTicks - before.cpuTicks : e.cpuTicks
        ticksPerS = Math.max(0, delta) / elapsedS
      } else {
        // First sight of the group: the member's average since its own start.
        uptime ??= readUptime()
        const lifeS = uptime === undefined ? 0 : uptime - e.startTicks / u.ticksPerSecond
        ticksPerS = lifeS > 0 ? e.cpuTicks / lifeS : 0
      }
      const sum = sums.get(e.pgrp) ?? { ticksPerS: 0, rssPages: 0 }
      sum.ticksPerS += ticksPerS
      sum.rssPages += e.rssPages
      sums.set(e.pgrp, sum)
    }
    last = seen
    lastGroups = new Set(sums.keys())
    lastAt = at
    const usage = new Map<number, Usage>()
    for (const [pgid, s] of sums)
      usage.set(pgid, {
        cpuPercent: round1((s.ticksPerS / u.ticksPerSecond) * 100),
        rssBytes: s.rssPages * u.pageBytes,
      })
    return usage
  }
}

const sampleLeaders = async (pgids: readonly number[]): Promise<Map<number, Usage>> => {
  const usage = new Map<number, Usage>()
  await Promise.all(
    pgids.map(async (pgid) => {
      try {
        const s = await pidusage(pgid)
        usage.set(pgid, { cpuPercent: round1(s.cpu), rssBytes: s.memory })
      } catch {
        // it exited: no sample
      }
    }),
  )
  return usage
}
