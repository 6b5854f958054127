import { spawn } from 'node:child_process'
import { appendFileSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import {
  LOG_FILE,
  matches,
  readLogs,
  type LogRecord,
  type ReadLogsOptions,
} from '../../src/logging/read-logs.js'
import { systemClock, type Clock } from '../../src/seams/clock.js'
import { killGroup, tempDir, waitUntil } from '../helpers/supervisor.js'

const T0 = 1_750_000_000_000

/** Record `n`: at T0 + n seconds, `msg` "line n"; a child's line when a component is given. */
const rec = (n: number, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ level: 30, time: T0 + n * 1000, pid: 1, node: 'a', msg: `line ${n}`, ...extra })

const lines = (from: number, to: number, extra: Record<string, unknown> = {}) =>
  Array.from({ length: to - from }, (_, i) => `${rec(from + i, extra)}\n`).join('')

const numberOf = (r: LogRecord) => Number(String(r.msg).split(' ')[1])
const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i)

/** Reads to the end (without following): the records' numbers, and the result. */
const read = async (dir: string, options: Partial<ReadLogsOptions> = {}) => {
  const got: LogRecord[] = []
  const result = await readLogs({ dir, onRecord: (_, r) => got.push(r), ...options })
  return { numbers: got.map(numberOf), records: got, ...result }
}

/** Rotates like the log writer: tandem.log.N -> N+1 ... tandem.log -> .1, then a new file. */
const rotate = (dir: string, rotated: number, createNew = true) => {
  for (let n = rotated; n >= 1; n--)
    renameSync(join(dir, `${LOG_FILE}.${n}`), join(dir, `${LOG_FILE}.${n + 1}`))
  renameSync(join(dir, LOG_FILE), join(dir, `${LOG_FILE}.1`))
  if (createNew) writeFileSync(join(dir, LOG_FILE), '')
}

/** A follower running in the background, with what it has seen. */
const follower = (t: Tap, dir: string, options: Partial<ReadLogsOptions> = {}) => {
  const ac = new AbortController()
  let naps = 0
  // Counts the follower's waits: one starts only after it has read everything there was.
  const clock: Clock = {
    ...systemClock,
    after: (ms, fn) => {
      naps++
      return systemClock.after(ms, fn)
    },
  }
  const lines: string[] = []
  const notices: string[] = []
  const done = readLogs({
    dir,
    follow: true,
    signal: ac.signal,
    clock,
    pollMs: 20,
    onRecord: (line) => lines.push(line),
    onNotice: (m) => notices.push(m),
    ...options,
  })
  t.teardown(() => ac.abort())
  return {
    lines,
    notices,
    done,
    stop: async () => {
      ac.abort()
      return done
    },
    numbers: () => lines.map((l) => numberOf(JSON.parse(l) as LogRecord)),
    /** Waits until the follower has read all there is now (two waits begun from here on). */
    caughtUp: async () => {
      const from = naps
      await waitUntil('the follower to read to the end', () => naps >= from + 2)
    },
  }
}
type Tap = { teardown(fn: () => void): void }

t.test('matches by target, level and time', async (t) => {
  const child = { level: 40, time: T0, component: 'web', instance: 1, msg: 'x' }
  const event = { level: 30, time: T0, event: 'start', msg: 'y' }
  t.ok(matches(child, {}))
  t.ok(matches(event, {}))
  t.ok(matches(child, { targets: [{ component: 'web' }] }))
  t.ok(matches(child, { targets: [{ component: 'web', instance: 1 }] }))
  t.notOk(matches(child, { targets: [{ component: 'web', instance: 0 }] }))
  t.notOk(matches(child, { targets: [{ component: 'db' }] }))
  t.notOk(matches(event, { targets: [{ component: 'web' }] }), 'no component: left out')
  t.ok(matches(child, { targets: [{ component: 'db' }, { component: 'web' }] }))
  t.ok(matches(child, { minLevel: 40 }))
  t.notOk(matches(child, { minLevel: 50 }))
  t.notOk(matches({ msg: 'no level' }, { minLevel: 40 }), 'no level counts as info')
  t.ok(matches(child, { since: T0 }))
  t.notOk(matches(child, { since: T0 + 1 }))
  t.notOk(matches({ level: 30, msg: 'no time' }, { since: T0 }))
})

t.test('prints the last N records across rotated file boundaries, oldest first', async (t) => {
  const dir = tempDir(t)
  writeFileSync(join(dir, 'tandem.log.2'), lines(0, 10))
  writeFileSync(join(dir, 'tandem.log.1'), lines(10, 20))
  writeFileSync(join(dir, 'tandem.log'), lines(20, 23))
  t.same((await read(dir, { limit: 5 })).numbers, range(18, 23))
  t.same((await read(dir, { limit: 15 })).numbers, range(8, 23))
  t.same((await read(dir, { limit: 1000 })).numbers, range(0, 23))
  t.same((await read(dir)).numbers, range(0, 23), 'no limit: all, streamed')
  t.same((await read(dir, { limit: 0 })).numbers, [])
})

t.test('finds the last N matching records even far back', async (t) => {
  const dir = tempDir(t)
  // A large rotated file: read backwards in chunks, with lines across chunk boundaries.
  const many = Array.from(
    { length: 5000 },
    (_, i) =>
      `${rec(i, i === 7 || i === 4000 ? { component: 'db', instance: 0 } : { pad: 'x'.repeat(i % 300) })}\n`,
  ).join('')
  writeFileSync(join(dir, 'tandem.log.1'), many)
  writeFileSync(join(dir, 'tandem.log'), lines(5000, 5100))
  const r = await read(dir, { limit: 3, filter: { targets: [{ component: 'db' }] } })
  t.same(r.numbers, [7, 4000])
  t.same((await read(dir, { limit: 5000 })).numbers, range(100, 5100))
})

t.test('filters by target, level and since', async (t) => {
  const dir = tempDir(t)
  writeFileSync(
    join(dir, 'tandem.log.1'),
    lines(0, 2, { event: 'start' }) +
      lines(2, 4, { component: 'web', instance: 0, stream: 'out' }) +
      lines(4, 6, { component: 'web', instance: 1, stream: 'err', level: 40 }),
  )
  writeFileSync(
    join(dir, 'tandem.log'),
    lines(6, 8, { component: 'db', instance: 0, stream: 'out', level: 50 }) +
      lines(8, 10, { event: 'exited', component: 'web', instance: 1, level: 40 }),
  )
  const web = { targets: [{ component: 'web' }] }
  t.same((await read(dir, { filter: web })).numbers, [2, 3, 4, 5, 8, 9])
  t.same((await read(dir, { filter: web, limit: 3 })).numbers, [5, 8, 9])
  const web1 = { targets: [{ component: 'web', instance: 1 }] }
  t.same((await read(dir, { filter: web1 })).numbers, [4, 5, 8, 9], 'events about it too')
  t.same((await read(dir, { filter: { minLevel: 40 } })).numbers, [4, 5, 6, 7, 8, 9])
  t.same((await read(dir, { filter: { minLevel: 50 } })).numbers, [6, 7])
  t.same((await read(dir, { filter: { since: T0 + 5000 } })).numbers, range(5, 10))
  t.same(
    (await read(dir, { filter: { since: T0 + 7000 } })).numbers,
    [7, 8, 9],
    'files before skipped',
  )
  t.same((await read(dir, { filter: { since: T0 + 3000 }, limit: 100 })).numbers, range(3, 10))
  t.same(
    (await read(dir, { filter: { ...web, minLevel: 40, since: T0 + 5000 } })).numbers,
    [5, 8, 9],
  )
})

t.test('skips and counts lines that are not JSON records', async (t) => {
  const dir = tempDir(t)
  writeFileSync(
    join(dir, 'tandem.log.1'),
    lines(0, 2) + '{"level":30,"ti\n' + lines(2, 4) + '[1,2]\nplain text\n' + lines(4, 5) + '{"cut',
  )
  // The live file's unfinished last line is being written: neither shown nor counted.
  writeFileSync(join(dir, 'tandem.log'), lines(5, 7) + '{"level":30,"time":')
  const all = await read(dir)
  t.same(all.numbers, range(0, 7))
  t.equal(all.unreadable, 4, 'the cut line, an array, plain text, a rotated file cut at its end')
  const last = await read(dir, { limit: 3 })
  t.same(last.numbers, [4, 5, 6])
  t.equal(last.unreadable, 1, 'only the lines read are counted')
})

t.test('says where the log would be when there is none', async (t) => {
  const dir = tempDir(t)
  await t.rejects(read(dir), { code: 'ENOENT', message: `no log at ${join(dir, LOG_FILE)} yet` })
  await t.rejects(read(join(dir, 'nope')), { code: 'ENOENT', message: /nope\/tandem\.log yet/ })
})

t.test('reads rotated files when tandem.log is missing', async (t) => {
  const dir = tempDir(t)
  writeFileSync(join(dir, 'tandem.log.1'), lines(0, 3))
  t.same((await read(dir, { limit: 2 })).numbers, [1, 2])
})

t.test('follows new records across rotations, none missed or repeated', async (t) => {
  const dir = tempDir(t)
  writeFileSync(join(dir, 'tandem.log.1'), lines(0, 10))
  writeFileSync(join(dir, 'tandem.log'), lines(10, 15))
  const f = follower(t, dir, { limit: 3 })
  await waitUntil('the last 3 records', () => f.lines.length === 3)
  let n = 15
  let rotated = 1
  const write = (count: number) => {
    appendFileSync(join(dir, LOG_FILE), lines(n, n + count))
    n += count
  }
  // Rotations at every phase: while the follower sleeps, right after a write, twice in a row
  // before it looks (it must go through the file between), and with an empty new file.
  for (let round = 0; round < 12; round++) {
    write(7)
    if (round % 3 === 0) await f.caughtUp()
    rotate(dir, rotated++)
    if (round === 5) rotate(dir, rotated++) // the new file, still empty
    if (round % 4 === 1) {
      write(3)
      rotate(dir, rotated++)
    }
    if (round % 2 === 0) write(5)
  }
  write(4)
  await waitUntil(`records up to ${n - 1}`, () => f.lines.length === n - 12)
  await f.caughtUp()
  t.same(f.numbers(), range(12, n))
  t.same(await f.stop(), { unreadable: 0 })
})

t.test('a line written in two parts is followed as one', async (t) => {
  const dir = tempDir(t)
  writeFileSync(join(dir, 'tandem.log'), lines(0, 1))
  const f = follower(t, dir, { limit: 0 })
  await f.caughtUp()
  const line = lines(1, 2)
  appendFileSync(join(dir, LOG_FILE), line.slice(0, 20))
  await f.caughtUp()
  t.same(f.lines, [], 'nothing yet: the line is unfinished')
  appendFileSync(join(dir, LOG_FILE), line.slice(20) + lines(2, 3))
  await waitUntil('two records', () => f.lines.length === 2)
  t.same(f.numbers(), [1, 2])
  t.same(await f.stop(), { unreadable: 0 })
})

t.test('an unfinished line at rotation time is left out and counted', async (t) => {
  const dir = tempDir(t)
  writeFileSync(join(dir, 'tandem.log'), lines(0, 1))
  const f = follower(t, dir, { limit: 0 })
  await f.caughtUp()
  appendFileSync(join(dir, LOG_FILE), lines(1, 2) + '{"level":30,"cut by a crash')
  rotate(dir, 0)
  appendFileSync(join(dir, LOG_FILE), lines(2, 3))
  await waitUntil('two records', () => f.lines.length === 2)
  t.same(f.numbers(), [1, 2])
  t.same(await f.stop(), { unreadable: 1 })
})

t.test('after an external logrotate, reads the old file until the writer reopens', async (t) => {
  const dir = tempDir(t)
  writeFileSync(join(dir, 'tandem.log'), lines(0, 2))
  const f = follower(t, dir, { limit: 0 })
  await f.caughtUp()
  rotate(dir, 0) // logrotate: rename, create an empty file
  await f.caughtUp()
  // The supervisor has not reopened yet: it still appends to what is now tandem.log.1.
  appendFileSync(join(dir, 'tandem.log.1'), lines(2, 4))
  await waitUntil('records 2 and 3', () => f.lines.length === 2)
  appendFileSync(join(dir, 'tandem.log.1'), lines(4, 5))
  appendFileSync(join(dir, LOG_FILE), lines(5, 7)) // reopened
  await waitUntil('records up to 6', () => f.lines.length === 5)
  t.same(f.numbers(), range(2, 7))
  await f.stop()
})

t.test(
  'a follower started while tandem.log is new and empty reads the rest of .1 first',
  async (t) => {
    const dir = tempDir(t)
    writeFileSync(join(dir, 'tandem.log.1'), lines(0, 3))
    writeFileSync(join(dir, 'tandem.log'), '')
    const f = follower(t, dir, { limit: 2 })
    await waitUntil('records 1 and 2', () => f.lines.length === 2)
    appendFileSync(join(dir, 'tandem.log.1'), lines(3, 4))
    appendFileSync(join(dir, LOG_FILE), lines(4, 5))
    await waitUntil('records up to 4', () => f.lines.length === 4)
    t.same(f.numbers(), range(1, 5))
    await f.stop()
  },
)

t.test('a truncated file is read again from its start, with a notice', async (t) => {
  const dir = tempDir(t)
  writeFileSync(join(dir, 'tandem.log'), lines(0, 5))
  const f = follower(t, dir, { limit: 0 })
  await f.caughtUp()
  writeFileSync(join(dir, LOG_FILE), lines(5, 6)) // copy-and-truncate, then a write
  await waitUntil('record 5', () => f.lines.length === 1)
  t.same(f.numbers(), [5])
  t.match(f.notices, [/tandem\.log was truncated/])
  await f.stop()
})

t.test('follows filtered: only matching new records', async (t) => {
  const dir = tempDir(t)
  writeFileSync(join(dir, 'tandem.log'), '')
  const f = follower(t, dir, { filter: { targets: [{ component: 'db' }] } })
  await f.caughtUp()
  appendFileSync(
    join(dir, LOG_FILE),
    lines(0, 2, { event: 'x' }) + lines(2, 4, { component: 'db', instance: 0 }) + lines(4, 5),
  )
  await waitUntil('2 records', () => f.lines.length === 2)
  await f.caughtUp()
  t.same(f.numbers(), [2, 3])
  await f.stop()
})

t.test('waits for tandem.log when only rotated files exist', async (t) => {
  const dir = tempDir(t)
  writeFileSync(join(dir, 'tandem.log.1'), lines(0, 2))
  const f = follower(t, dir, { limit: 1 })
  await f.caughtUp()
  writeFileSync(join(dir, LOG_FILE), lines(2, 3))
  await waitUntil('2 records', () => f.lines.length === 2)
  t.same(f.numbers(), [1, 2])
  await f.stop()
})

t.test('follows another process writing and rotating at full speed', async (t) => {
  const dir = tempDir(t)
  writeFileSync(join(dir, LOG_FILE), '')
  const f = follower(t, dir, { limit: 0 })
  await f.caughtUp()
  const total = 40_000
  // The writer's rotation, as fast as a process can go: renames, a new file, the next line.
  const writer = spawn(
    process.execPath,
    [
      '-e',
      `const fs = require('fs'), path = require('path'), dir = process.argv[1], log = path.join(dir, 'tandem.log')
      let rotated = 0
      for (let i = 0; i < ${total}; i++) {
        fs.appendFileSync(log, JSON.stringify({ level: 30, time: ${T0} + i * 1000, msg: 'line ' + i }) + '\\n')
        if (i % 500 === 499) {
          for (let n = rotated; n >= 1; n--) fs.renameSync(log + '.' + n, log + '.' + (n + 1))
          fs.renameSync(log, log + '.1')
          rotated++
        }
      }`,
      dir,
    ],
    { detached: true, stdio: 'inherit' },
  )
  t.teardown(() => killGroup(writer.pid!))
  const exit = await new Promise((r) => writer.once('exit', r))
  t.equal(exit, 0, 'the writer wrote everything')
  await waitUntil(`${total} records`, () => f.lines.length >= total)
  await f.caughtUp()
  t.same(f.numbers(), range(0, total))
  t.same(await f.stop(), { unreadable: 0 })
})
