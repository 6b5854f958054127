// `tandem logs` as a user runs it: bin/tandem.js on log files written here (build first).
// Ports 24500-24599 belong to this file (test files run in parallel).
import { spawn } from 'node:child_process'
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  writeFileSync,
} from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import t from 'tap'
import { DEFAULT_LINES, parseLevel, parseLines, parseSince } from '../../src/cli/logs.js'
import {
  BIN,
  cli,
  fixture,
  killGroup,
  Supervisor,
  tempDir,
  waitUntil,
  writeConfig,
} from '../helpers/supervisor.js'

const T0 = Date.UTC(2025, 5, 15, 8, 0, 0)

/** Record `n`, `at` epoch ms (default T0 + n s). */
const rec = (n: number, extra: Record<string, unknown> = {}, at = T0 + n * 1000) =>
  JSON.stringify({ level: 30, time: at, pid: 1, node: 'a', msg: `line ${n}`, ...extra })

const child = (instance: number, stream = 'out') => ({
  component: 'web',
  instance,
  port: 24500 + instance,
  childPid: 4000 + instance,
  stream,
})

/** A config with components web (x2) and db, and its log directory (not created). */
const setup = (t: { teardown(fn: () => void): void }) => {
  const dir = tempDir(t)
  const config = writeConfig(
    dir,
    { web: fixture({ port: 24500, instances: 2 }), db: fixture({ port: 24510 }) },
    { logs: { dir: 'logs' } },
  )
  return { dir, config, logs: join(dir, 'logs') }
}

/** A log: tandem.log.1 with records 0-9, tandem.log with 10-14 (a mix of events and lines). */
const writeLog = (logs: string) => {
  mkdirSync(logs, { recursive: true })
  const lines = (from: number, to: number) =>
    Array.from({ length: to - from }, (_, i) => {
      const n = from + i
      return n % 5 === 0
        ? rec(n, {
            event: 'exited',
            component: 'web',
            instance: 1,
            level: 40,
            msg: `web#1 exited (${n})`,
          })
        : n % 5 === 4
          ? rec(n, { event: 'tick' })
          : rec(n, { ...child(n % 2, n % 3 ? 'out' : 'err'), ...(n % 3 ? {} : { level: 50 }) })
    })
  const older = lines(0, 10)
  const newer = lines(10, 15)
  writeFileSync(join(logs, 'tandem.log.1'), older.map((l) => `${l}\n`).join(''))
  writeFileSync(join(logs, 'tandem.log'), newer.map((l) => `${l}\n`).join(''))
  return [...older, ...newer]
}

t.test('parses --since, -n and --level', async (t) => {
  const now = Date.UTC(2025, 0, 31, 12, 0, 0)
  t.equal(parseSince('30s', now), now - 30_000)
  t.equal(parseSince('10m', now), now - 600_000)
  t.equal(parseSince('1.5h', now), now - 5_400_000)
  t.equal(parseSince('1d', now), now - 86_400_000)
  t.equal(parseSince('2025-01-31T08:00:00Z', now), Date.UTC(2025, 0, 31, 8))
  t.equal(parseSince('2025-01-31', now), new Date(2025, 0, 31).getTime(), 'a date: local midnight')
  t.equal(parseSince('2025-01-31T08:00', now), new Date(2025, 0, 31, 8).getTime(), 'local time')
  for (const bad of ['10', '10 min', 'yesterday', '2025-13-45', ''])
    t.throws(() => parseSince(bad, now), { code: 'EUSAGE' }, bad)
  t.equal(parseLines(undefined, false), DEFAULT_LINES)
  t.equal(parseLines(undefined, true), undefined, '--since alone: every record since')
  t.equal(parseLines('all', false), undefined)
  t.equal(parseLines('0', true), 0)
  t.throws(() => parseLines('1e3', false), { code: 'EUSAGE' })
  t.equal(parseLevel('warn'), 40)
  t.equal(parseLevel('FATAL'), 60)
  for (const bad of ['warning', 'constructor', '40'])
    t.throws(() => parseLevel(bad), { code: 'EUSAGE' }, bad)
})

const TIME = String.raw`\[\d\d:\d\d:\d\d\.\d{3}\]`

t.test('prints the last records in a human format, without colors into a pipe', async (t) => {
  const { config, logs } = setup(t)
  writeLog(logs)
  const r = await cli(['logs', '-n', '4', '-c', config])
  t.equal(r.code, 0, r.err)
  const out = r.out.trimEnd().split('\n')
  t.equal(out.length, 4)
  t.match(out[0], new RegExp(`^${TIME} INFO: web#1 out \\| line 11$`))
  t.match(out[1], new RegExp(`^${TIME} ERROR: web#0 err \\| line 12$`))
  t.match(out[2], new RegExp(`^${TIME} INFO: web#1 out \\| line 13$`))
  t.match(out[3], new RegExp(`^${TIME} INFO: line 14$`), 'a supervisor event: its message')
  t.notMatch(r.out, /\x1b\[/, 'no escape codes')
  t.equal(r.err, '')
})

t.test('prints the last 50 by default, reading into the rotated file', async (t) => {
  const { config, logs } = setup(t)
  mkdirSync(logs)
  writeFileSync(
    join(logs, 'tandem.log.1'),
    Array.from({ length: 60 }, (_, i) => `${rec(i)}\n`).join(''),
  )
  writeFileSync(
    join(logs, 'tandem.log'),
    Array.from({ length: 10 }, (_, i) => `${rec(60 + i)}\n`).join(''),
  )
  const r = await cli(['logs', '-c', config])
  t.equal(r.code, 0, r.err)
  const out = r.out.trimEnd().split('\n')
  t.equal(out.length, 50)
  t.match(out[0], /line 20$/)
  t.match(out[49], /line 69$/)
})

t.test('--json prints the lines as written', async (t) => {
  const { config, logs } = setup(t)
  const all = writeLog(logs)
  const r = await cli(['logs', '--json', '-n', 'all', '-c', config])
  t.equal(r.code, 0, r.err)
  t.equal(r.out, all.map((l) => `${l}\n`).join(''))
})

t.test('filters by target, level and since', async (t) => {
  const { config, logs } = setup(t)
  const all = writeLog(logs)
  const json = async (...args: string[]) => {
    const r = await cli(['logs', '--json', '-n', 'all', ...args, '-c', config])
    t.equal(r.code, 0, r.err)
    return r.out
      .split('\n')
      .filter(Boolean)
      .map((l) => ((JSON.parse(l) as { time: number }).time - T0) / 1000)
  }
  t.same(await json('web#0'), [2, 6, 8, 12], 'one instance')
  t.same(await json('web#1'), [0, 1, 3, 5, 7, 10, 11, 13], 'its lines and the events about it')
  t.same(await json('web'), [0, 1, 2, 3, 5, 6, 7, 8, 10, 11, 12, 13])
  t.same(
    await json('all'),
    all.map((_, i) => i),
  )
  t.same(await json('db'), [], 'a component with no record yet')
  t.same(await json('--level', 'error'), [3, 6, 12])
  t.same(await json('--level', 'WARN', 'web#0'), [6, 12])
  t.same(await json('--since', new Date(T0 + 11_000).toISOString()), [11, 12, 13, 14])
  const r = await cli([
    'logs',
    'web',
    '--since',
    new Date(T0 + 9_000).toISOString(),
    '-n',
    '2',
    '-c',
    config,
  ])
  t.match(r.out, /line 12\n.*line 13\n$/)
})

t.test('--since takes an age, and alone prints every record since', async (t) => {
  const { config, logs } = setup(t)
  mkdirSync(logs)
  const now = Date.now()
  // 3 h ago ... 20 s ago, and one 5 s ahead: each age stays on its side of the --since asked
  // for even when the five commands take a minute on a loaded machine.
  const ages = [3 * 3_600_000, 20 * 60_000, 5 * 60_000, 20_000, -5000]
  writeFileSync(join(logs, 'tandem.log'), ages.map((a, i) => `${rec(i, {}, now - a)}\n`).join(''))
  const count = async (since: string) => {
    const r = await cli(['logs', '--since', since, '-c', config])
    t.equal(r.code, 0, r.err)
    return r.out.trimEnd().split('\n').filter(Boolean).length
  }
  t.equal(await count('1d'), 5)
  t.equal(await count('2h'), 4)
  t.equal(await count('10m'), 3)
  t.equal(await count('1m'), 2)
  t.equal(await count('10s'), 1)
})

t.test('bad arguments exit 2 naming what is expected', async (t) => {
  const { config, logs } = setup(t)
  writeLog(logs)
  for (const [args, message] of [
    [['nope'], /unknown target "nope".*among web, db/],
    [['web#2'], /unknown target "web#2": web has instances #0 to #1/],
    [['--level', 'loud'], /--level "loud": expected one of trace, debug, info, warn, error, fatal/],
    [['-n', '-3'], /-n "-3": expected a number of records/],
    [['-n', 'ten'], /-n "ten"/],
    [['--since', 'yesterday'], /--since "yesterday": expected an age like 30s/],
    [['--reopen', 'web'], /--reopen takes no target/],
  ] as const) {
    const r = await cli(['logs', ...args, '-c', config])
    t.equal(r.code, 2, `${args.join(' ')}: exit 2`)
    t.match(r.err, message)
    t.equal(r.out, '')
  }
})

t.test('without a log it says where it looked and exits 1', async (t) => {
  const { config, logs } = setup(t)
  const r = await cli(['logs', '-c', config])
  t.equal(r.code, 1)
  t.equal(r.err, `tandem: no log at ${join(logs, 'tandem.log')} yet\n`)
})

t.test('skips unreadable lines and says how many', async (t) => {
  const { config, logs } = setup(t)
  mkdirSync(logs)
  writeFileSync(join(logs, 'tandem.log.1'), `${rec(0)}\n{"level":30,"tim\n${rec(1)}\n`)
  writeFileSync(join(logs, 'tandem.log'), `not json\n${rec(2)}\n`)
  const r = await cli(['logs', '-n', 'all', '-c', config])
  t.equal(r.code, 0)
  t.match(r.out, /line 0\n.*line 1\n.*line 2\n$/)
  t.match(r.err, /^tandem: 2 unreadable lines skipped/)
})

t.test('--reopen without a supervisor says none runs and exits 1', async (t) => {
  const { config } = setup(t)
  const r = await cli(['logs', '--reopen', '-c', config])
  t.equal(r.code, 1)
  t.match(r.err, /no supervisor is running for state dir/)
})

/** `tandem logs -f ...` in the background, its output lines as they come. */
const follow = (t: { teardown(fn: () => void): void }, args: string[]) => {
  const p = spawn(process.execPath, [BIN, 'logs', '-f', ...args], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  t.teardown(() => killGroup(p.pid!))
  const out: string[] = []
  let err = ''
  createInterface({ input: p.stdout }).on('line', (l) => out.push(l))
  p.stderr.on('data', (d) => (err += d))
  const exited = new Promise<{ code: number | null; signal: string | null }>((r) =>
    p.once('close', (code, signal) => r({ code, signal })),
  )
  return { p, out, exited, err: () => err }
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  t.test(`-f follows across a rotation, then exits 0 on ${signal}`, async (t) => {
    const { config, logs } = setup(t)
    mkdirSync(logs)
    const log = join(logs, 'tandem.log')
    writeFileSync(log, `${rec(0)}\n${rec(1)}\n`)
    const f = follow(t, ['--json', '-n', '1', '-c', config])
    await waitUntil('the last record', () => f.out.length === 1)
    appendFileSync(log, `${rec(2)}\n${rec(3)}\n`)
    renameSync(log, `${log}.1`) // rotation: rename, a new file
    appendFileSync(`${log}.1`, `${rec(4)}\n`) // the last write to the old file
    writeFileSync(log, `${rec(5)}\n`)
    await waitUntil('records up to 5', () => f.out.length === 5)
    appendFileSync(log, `${rec(6)}\n`)
    await waitUntil('record 6', () => f.out.length === 6)
    t.same(
      f.out.map((l) => (JSON.parse(l) as { msg: string }).msg),
      [1, 2, 3, 4, 5, 6].map((n) => `line ${n}`),
    )
    f.p.kill(signal)
    t.same(await f.exited, { code: 0, signal: null })
    t.equal(f.err(), '')
  })
}

/** Whether process `pid` has `file` open (Linux: its /proc fd links). */
const hasOpen = (pid: number, file: string): boolean => {
  const fds = join('/proc', String(pid), 'fd')
  try {
    return readdirSync(fds).some((fd) => {
      try {
        return readlinkSync(join(fds, fd)) === file
      } catch {
        return false // closed meanwhile
      }
    })
  } catch {
    return false
  }
}

t.test(
  '-f with -n 0 prints only new records, filtered, in the human format',
  { skip: process.platform !== 'linux' && 'needs /proc to see when the follower is ready' },
  async (t) => {
    const { config, logs } = setup(t)
    mkdirSync(logs)
    const log = join(logs, 'tandem.log')
    writeFileSync(log, `${rec(0, child(1))}\n`)
    const f = follow(t, ['web#1', '-n', '0', '-c', config])
    // Nothing is printed before the new records: ready once it holds the log open.
    await waitUntil('the follower to open the log', () => hasOpen(f.p.pid!, log))
    appendFileSync(log, `${rec(1, child(0))}\n${rec(2, child(1))}\n${rec(3, { event: 'x' })}\n`)
    await waitUntil('one record', () => f.out.length === 1)
    t.match(f.out[0], new RegExp(`^${TIME} INFO: web#1 out \\| line 2$`))
    f.p.kill('SIGTERM')
    t.equal((await f.exited).code, 0)
    t.same(f.out.length, 1, 'nothing else')
  },
)

t.test('--reopen makes the running supervisor reopen its log after a logrotate', async (t) => {
  const dir = tempDir(t)
  const config = writeConfig(
    dir,
    { web: fixture({ port: 24520 }) },
    { logs: { dir: 'logs', stdout: false } },
  )
  const logs = join(dir, 'logs')
  const sup = new Supervisor(config)
  t.teardown(() => sup.kill())
  const log = join(logs, 'tandem.log')
  const records = (file: string) =>
    existsSync(file)
      ? readFileSync(file, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as { event?: string; msg: string })
      : []
  await waitUntil('web#0 ready in the log', () => records(log).some((r) => r.event === 'ready'))
  renameSync(log, `${log}.1`) // logrotate without copytruncate: the supervisor still writes .1
  const r = await cli(['logs', '--reopen', '-c', config])
  t.equal(r.code, 0, r.err)
  t.equal(r.out, `log files reopened: ${log}\n`)
  await waitUntil('the reopen event in a new tandem.log', () =>
    records(log).some((r) => r.event === 'log-reopen'),
  )
  t.ok(
    records(`${log}.1`).some((r) => r.event === 'ready'),
    'the earlier records stay in the renamed file',
  )
  // Both files read as one log, with or without the supervisor.
  const all = await cli(['logs', '--json', '-n', 'all', '-c', config])
  const events = all.out
    .trimEnd()
    .split('\n')
    .map((l) => (JSON.parse(l) as { event?: string }).event)
  t.ok(events.indexOf('ready') < events.indexOf('log-reopen'), 'in order across the files')
})
