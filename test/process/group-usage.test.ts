// The one-pass process group sampler: its arithmetic on a scripted process table, then real
// process groups read from /proc (Linux).
import { spawn } from 'node:child_process'
import t, { type Test } from 'tap'
import { groupUsageSampler } from '../../src/process/group-usage.js'
import { readProcTable, readStat, type ProcEntry } from '../../src/process/proc-table.js'
import { killGroup, waitUntil } from '../helpers/supervisor.js'

const units = () => Promise.resolve({ ticksPerSecond: 100, pageBytes: 4096 })

/** A process of the scripted table. */
const proc = (
  pid: number,
  pgrp: number,
  cpuTicks: number,
  rssPages: number,
  more: Partial<ProcEntry> = {},
): ProcEntry => ({ pid, pgrp, ppid: 1, state: 'S', cpuTicks, startTicks: 1000, rssPages, ...more })

/** A sampler over a table the test rewrites, on a clock the test moves. */
const scripted = () => {
  const s = { now: 0, table: [] as ProcEntry[], uptime: 20 }
  const sample = groupUsageSampler({
    monotonic: () => s.now,
    readTable: () => s.table,
    readUptime: () => s.uptime,
    units,
  })
  return { s, sample }
}

t.test('CPU from the ticks between two passes over the time between them', async (t) => {
  const { s, sample } = scripted()
  // Group 10: leader and a grandchild; group 20: one process; 30 is not asked for.
  s.table = [proc(10, 10, 500, 100), proc(11, 10, 100, 50), proc(20, 20, 0, 10), proc(30, 30, 0, 1)]
  const first = await sample([10, 20])
  // First sight: each member's lifetime average. Started at tick 1000 (10 s), uptime 20 s:
  // 500 + 100 ticks over 10 s = 60 ticks/s = 60 %.
  t.same(first.get(10), { cpuPercent: 60, rssBytes: 150 * 4096 }, 'both members summed')
  t.same(first.get(20), { cpuPercent: 0, rssBytes: 10 * 4096 })
  t.notOk(first.has(30), 'only the groups asked for')
  s.now = 5000
  s.table = [proc(10, 10, 600, 100), proc(11, 10, 150, 50), proc(20, 20, 5, 10)]
  const second = await sample([10, 20])
  // (100 + 50) ticks in 5 s = 30 ticks/s = 30 %; 5 ticks in 5 s = 1 %.
  t.same(second.get(10), { cpuPercent: 30, rssBytes: 150 * 4096 })
  t.same(second.get(20), { cpuPercent: 1, rssBytes: 10 * 4096 })
})

t.test('members that came, went or were reused between passes', async (t) => {
  const { s, sample } = scripted()
  s.table = [proc(10, 10, 500, 100), proc(11, 10, 100, 50), proc(12, 10, 100, 50)]
  await sample([10])
  s.now = 10_000
  s.table = [
    proc(10, 10, 500, 100),
    // 11 ended; 13 started in between with 20 ticks; 12 is a new process with the old pid.
    proc(13, 10, 20, 30),
    proc(12, 10, 30, 50, { startTicks: 1500 }),
    proc(14, 10, 999, 0, { state: 'Z' }), // a zombie: neither CPU nor memory
  ]
  const u = await sample([10])
  // (0 + 20 + 30) ticks in 10 s = 5 ticks/s = 5 %.
  t.same(u.get(10), { cpuPercent: 5, rssBytes: 180 * 4096 })
})

t.test('a group with no live member left gives no sample', async (t) => {
  const { s, sample } = scripted()
  s.table = [proc(10, 10, 5, 100), proc(20, 20, 5, 100)]
  await sample([10, 20])
  s.now = 5000
  s.table = [proc(20, 20, 5, 100), proc(10, 10, 5, 0, { state: 'Z' })]
  const u = await sample([10, 20])
  t.notOk(u.has(10))
  t.ok(u.has(20))
})

t.test('a group seen again after a pass without it starts from its lifetime average', async (t) => {
  const { s, sample } = scripted()
  s.table = [proc(10, 10, 100, 1)]
  await sample([10])
  s.now = 5000
  s.table = []
  await sample([10])
  s.now = 10_000
  s.uptime = 30 // started at 10 s: 20 s old
  s.table = [proc(10, 10, 400, 1)]
  t.same((await sample([10])).get(10), { cpuPercent: 20, rssBytes: 4096 })
})

// ---------------------------------------------------------------------------------------------
// Real process groups (Linux /proc)

const linux = process.platform === 'linux'

/**
 * A process group of its own running `script` with node; what it spawns stays in the group.
 * Killed (the whole group) at teardown.
 */
const group = (t: Test, script: string) => {
  const child = spawn(process.execPath, ['-e', script], { detached: true, stdio: 'ignore' })
  t.teardown(() => killGroup(child.pid!))
  const exited = new Promise<void>((r) => child.once('exit', () => r()))
  return { pgid: child.pid!, exited }
}

const IDLE = 'setInterval(() => {}, 1e6)'
const BUSY = 'for (;;) {}'
const MB = 1024 * 1024

t.test(
  'real groups: a busy process shows CPU, an idle one hardly any',
  { skip: !linux },
  async (t) => {
    const busy = group(t, BUSY)
    const idle = group(t, IDLE)
    let now = performance.now()
    const sample = groupUsageSampler({ monotonic: () => now })
    await sample([busy.pgid, idle.pgid]) // then from the ticks between passes
    // The idle one is busy too while node starts: until then, its figure is not idle yet.
    const u = await waitUntil('the busy loop busy and the idle one idle', async () => {
      now = performance.now()
      const u = await sample([busy.pgid, idle.pgid])
      const [b, i] = [u.get(busy.pgid)?.cpuPercent ?? 0, u.get(idle.pgid)?.cpuPercent ?? 100]
      return b >= 30 && i < 10 && u
    })
    t.ok(u.has(idle.pgid), 'the idle one is sampled too')
    t.ok(u.get(busy.pgid)!.rssBytes > MB, 'memory of a node process')
  },
)

t.test(
  'real groups: a child and its grandchild in the group are summed',
  { skip: !linux },
  async (t) => {
    // The leader idles; its child (same group: not detached) holds 60 MB and spins.
    const g = group(
      t,
      `require('node:child_process').spawn(process.execPath, ['-e', "globalThis.b = Buffer.alloc(60 * 2 ** 20, 1); for (;;) {}"], { stdio: 'ignore' }); ${IDLE}`,
    )
    const [kid] = await waitUntil('the grandchild', () => {
      const kids = childrenOf(g.pgid)
      return kids.length > 0 && kids
    })
    let now = performance.now()
    const sample = groupUsageSampler({ monotonic: () => now })
    const u = await waitUntil('the busy grandchild with its 60 MB', async () => {
      now = performance.now()
      const u = (await sample([g.pgid])).get(g.pgid)
      return u && u.cpuPercent >= 30 && u.rssBytes > 60 * MB && u
    })
    const leader = readStat(g.pgid)!
    const child = readStat(kid!)!
    t.equal(child.pgrp, g.pgid, 'the grandchild is in the group')
    t.ok(
      u.rssBytes > child.rssPages * 4096 + MB && leader.rssPages > 0,
      `RSS ${u.rssBytes} counts the leader (${leader.rssPages} pages) and the child (${child.rssPages})`,
    )
  },
)

/** Pids whose parent is `ppid`. */
const childrenOf = (ppid: number): number[] =>
  (readProcTable() ?? []).filter((e) => e.ppid === ppid).map((e) => e.pid)

t.test('real groups: a group gone between passes gives no sample', { skip: !linux }, async (t) => {
  const g = group(t, IDLE)
  const other = group(t, IDLE)
  let now = performance.now()
  const sample = groupUsageSampler({ monotonic: () => now })
  t.ok((await sample([g.pgid, other.pgid])).has(g.pgid), 'sampled while it runs')
  killGroup(g.pgid)
  await g.exited
  now = performance.now()
  const u = await sample([g.pgid, other.pgid])
  t.notOk(u.has(g.pgid), 'none once it is gone')
  t.ok(u.has(other.pgid), 'the other one still')
})
