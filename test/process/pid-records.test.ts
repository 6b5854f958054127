// The pid records file: by pid, so that an instance with two processes for a moment (a handover)
// has both recorded, and the old one's exit does not drop the new one's record.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { PidRecords, type PidRecord } from '../../src/process/pid-records.js'
import { tempDir } from '../helpers/supervisor.js'

const record = (id: string, pid: number): PidRecord => ({
  id,
  pid,
  startTime: '1',
  port: 29420,
  stopSignal: 'SIGTERM',
  stopTimeoutMs: 1000,
})

t.test('two processes of one instance are both recorded; each exit removes its own', async (t) => {
  const dir = tempDir(t)
  const records = new PidRecords(dir)
  const onFile = () =>
    (JSON.parse(readFileSync(join(dir, 'pids.json'), 'utf8')) as PidRecord[]).map(
      (r) => `${r.id} ${r.pid}`,
    )
  records.add(record('web#0', 100))
  records.add(record('web#0', 200))
  t.same(onFile(), ['web#0 100', 'web#0 200'])
  t.same(
    records.read().map((r) => r.pid),
    [100, 200],
    'a successor reads both',
  )
  records.remove(100)
  t.same(onFile(), ['web#0 200'], 'the old one gone, the new one kept')
  records.remove(100)
  t.same(onFile(), ['web#0 200'], 'removing twice changes nothing')
})

t.test(
  "a successor keeps its predecessor's records on file until it has dealt with them",
  async (t) => {
    const dir = tempDir(t)
    const onFile = () =>
      (JSON.parse(readFileSync(join(dir, 'pids.json'), 'utf8')) as PidRecord[]).map(
        (r) => `${r.id} ${r.pid}`,
      )
    const first = new PidRecords(dir)
    first.add(record('web#0', 100))
    first.add(record('api#0', 101))
    const next = new PidRecords(dir)
    t.same(
      next.leftovers.map((r) => r.pid),
      [100, 101],
    )
    // A hook spawned before the leftovers were terminated: its record joins them.
    next.add(record('hook#0', 300))
    t.same(onFile(), ['web#0 100', 'api#0 101', 'hook#0 300'])
    t.same(
      next.leftovers.map((r) => r.pid),
      [100, 101],
    )
    next.forgetLeftovers()
    t.same(onFile(), ['hook#0 300'])
    t.same(next.leftovers, [])
  },
)
