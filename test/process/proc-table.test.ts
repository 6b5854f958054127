// Reading /proc/<pid>/stat: the fields, whatever the command name holds.
import t from 'tap'
import { parseStat, procUnits, readProcTable, readStat } from '../../src/process/proc-table.js'

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
