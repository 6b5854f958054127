// Reading /proc/<pid>/stat: the fields, whatever the command name holds; what a pass reads again.
import { spawn } from 'node:child_process'
import { readdirSync } from 'node:fs'
import t from 'tap'
import {
  FULL_PASS_EVERY,
  groupMemberReader,
  heldStatReader,
  parseStat,
  procUnits,
  readProcTable,
  readStat,
  type ProcEntry,
} from '../../src/process/proc-table.js'

t.test('fields are counted after the last parenthesis of the command name', async (t) => {
  // A name with spaces and parentheses, as a process can give itself (prctl PR_SET_NAME).
  const line =
    '4242 (a) (b c) S 1 4240 4240 0 -1 4194560 300 0 0 0 123 45 6 7 20 0 1 0 98765 1234567 321 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n'
  t.same(parseStat(4242, line), {
    pid: 4242,
    state: 'S',
    ppid: 1,
    pgrp: 4240,
    cpuTicks: 168,
    startTicks: 98765,
    rssPages: 321,
  })
  t.equal(parseStat(1, '1 (x) S 0'), undefined, 'a truncated line is no entry')
})

t.test(
  'the table holds this process, as readStat reads it',
  { skip: process.platform !== 'linux' },
  async (t) => {
    const table = readProcTable()!
    const me = table.find((e) => e.pid === process.pid)
    t.ok(me, 'this process is listed')
    t.equal(me!.pgrp, readStat(process.pid)!.pgrp)
    t.equal(me!.ppid, process.ppid)
    t.ok(me!.rssPages > 0)
    t.equal(readStat(2 ** 30), undefined, 'no such pid: undefined')
    const u = await procUnits()
    t.ok(u.ticksPerSecond > 0 && u.pageBytes >= 4096, `units ${JSON.stringify(u)}`)
  },
)

t.test(
  'groupMemberReader reads again only new pids and members, and everything every FULL_PASS_EVERY passes',
  async (t) => {
    // A scripted /proc: pid -> group; every stat read is recorded.
    const procs = new Map<number, number>([
      [100, 1],
      [200, 2],
      [300, 300],
      [301, 300],
    ])
    const reads: number[] = []
    const entry = (pid: number, pgrp: number): ProcEntry => ({
      pid,
      pgrp,
      ppid: 1,
      state: 'S',
      cpuTicks: 0,
      startTicks: 0,
      rssPages: 1,
    })
    const kept: number[][] = []
    const members = groupMemberReader({
      list: () => ['self', 'meminfo', ...[...procs.keys()].map(String)],
      stats: {
        read: (pid) => {
          reads.push(pid)
          const g = procs.get(pid)
          return g === undefined ? undefined : entry(pid, g)
        },
        keep: (pids) => void kept.push([...pids]),
      },
    })
    const pass = (pgids: number[]) => {
      reads.length = 0
      const m = members(new Set(pgids))!
        .map((e) => e.pid)
        .sort((a, b) => a - b)
      return { members: m, reads: [...reads].sort((a, b) => a - b) }
    }
    t.same(pass([300]), { members: [300, 301], reads: [100, 200, 300, 301] }, 'first pass: all')
    t.same(pass([300]), { members: [300, 301], reads: [300, 301] }, 'then the members only')
    t.same(kept.at(-1), [300, 301], "the members' files are held open")
    procs.set(302, 300) // a grandchild started
    procs.set(400, 4) // something else started
    procs.delete(301)
    t.same(pass([300]), { members: [300, 302], reads: [300, 302, 400] }, 'and what is new')
    t.same(
      pass([300, 4]),
      { members: [300, 302, 400], reads: [300, 302, 400] },
      'a group wanted now: its known members read',
    )
    procs.set(150, 300) // a new pid below the others (the counter came round): new all the same
    t.same(pass([300]), { members: [150, 300, 302], reads: [150, 300, 302] })
    // 200 is given back and taken again by a member between two passes: it is known (group 2),
    // so it is skipped until the next full pass.
    procs.set(200, 300)
    t.same(pass([300]).members, [150, 300, 302], 'the reused pid is missed for now')
    for (let i = 0; i < FULL_PASS_EVERY - 6; i++) pass([300]) // passes 6 to 11
    t.same(
      pass([300]),
      { members: [150, 200, 300, 302], reads: [100, 150, 200, 300, 302, 400] },
      `every ${FULL_PASS_EVERY}th pass reads everything, and finds it`,
    )
    t.same(pass([300]).reads, [150, 200, 300, 302])
  },
)

t.test(
  'a held stat file reads the process afresh, and is closed once it ends or leaves',
  { skip: process.platform !== 'linux' },
  async (t) => {
    const child = spawn('sleep', ['600'], { stdio: 'ignore' })
    const exited = new Promise((r) => child.once('exit', r))
    t.teardown(() => child.kill('SIGKILL'))
    const stats = heldStatReader()
    const fds = () => readdirSync('/proc/self/fd').length
    const before = fds()
    stats.keep(new Set([child.pid!, process.pid]))
    t.equal(stats.size, 2)
    t.equal(fds(), before + 2, 'two files open')
    const a = stats.read(process.pid)!
    for (let i = 0; i < 2e7; i++); // some CPU time of our own
    const b = stats.read(process.pid)!
    t.ok(b.cpuTicks > a.cpuTicks, `read again: ${a.cpuTicks} then ${b.cpuTicks} ticks`)
    child.kill('SIGKILL')
    await exited
    t.equal(stats.read(child.pid!), undefined, 'an ended process reads as nothing')
    t.equal(stats.size, 1, 'and its file is closed')
    stats.keep(new Set())
    t.equal(fds(), before, 'keeping nothing closes the rest')
  },
)
