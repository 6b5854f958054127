// The unified log end to end: real children, real pipes, real files.
// Ports 24600-24699 belong to this file (test files run in parallel).
import { existsSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import {
  fixture,
  ROOT,
  status,
  Supervisor,
  tempDir,
  waitUntil,
  writeConfig,
  type LogRecord,
} from '../helpers/supervisor.js'

const PRINTER = join(ROOT, 'test/fixtures/printer.js')

const printer = (env: Record<string, string>, extra: Record<string, unknown> = {}) => ({
  command: [process.execPath, PRINTER],
  env,
  readiness: { type: 'none' },
  restart: 'never',
  ...extra,
})

const start = (
  t: Test,
  components: Record<string, unknown>,
  logs: Record<string, unknown> = {},
) => {
  const dir = tempDir(t)
  const config = writeConfig(dir, components, { logs: { dir: join(dir, 'logs'), ...logs } })
  const sup = new Supervisor(config)
  t.teardown(() => sup.kill())
  return { dir, config, sup, logDir: join(dir, 'logs') }
}

/**
 * Records of tandem.log and its rotated files, oldest first. A rotation while the files are read
 * renames them under the reader (tandem.log.27 becomes .28): then the whole read starts again.
 */
const readLog = (logDir: string, base = 'tandem.log'): LogRecord[] => {
  for (;;) {
    const rotated = readdirSync(logDir)
      .map((f) => (f.startsWith(`${base}.`) ? Number(f.slice(base.length + 1)) : NaN))
      .filter((n) => Number.isInteger(n))
      .sort((a, b) => b - a)
    try {
      return [...rotated.map((n) => `${base}.${n}`), base]
        .filter((f) => existsSync(join(logDir, f)))
        .flatMap((f) => readFileSync(join(logDir, f), 'utf8').split('\n').slice(0, -1))
        .map((l) => JSON.parse(l) as LogRecord)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
  }
}

t.test(
  'child lines become records: joined across chunks, JSON merged, long lines cut, the last line flushed at exit',
  async (t) => {
    const { sup, logDir } = start(
      t,
      { p: printer({ CHUNKED: '1', JSON: '1', LONG: '5000', PARTIAL: 'no newline at the end' }) },
      { maxLineBytes: 1024 },
    )
    await sup.waitLog('p stopped', (r) => r.event === 'stopped' && r.component === 'p')
    process.kill(sup.pid, 'SIGTERM')
    await sup.ended
    const lines = readLog(logDir).filter((r) => r.stream === 'out')
    t.match(lines[0], {
      level: 30,
      component: 'p',
      instance: 0,
      port: null,
      stream: 'out',
      msg: 'first half, second half',
    })
    t.equal(typeof lines[0]!.childPid, 'number')
    t.equal(typeof lines[0]!.time, 'number')
    t.match(lines[1], {
      level: 50,
      msg: 'from pino',
      reqId: 'r-1',
      childTime: 1,
      component: 'p',
      stream: 'out',
    })
    t.match(lines[2], { msg: 'x'.repeat(1024), truncated: true })
    t.match(lines[3], { msg: 'after long' })
    t.notOk('truncated' in lines[3]!)
    t.match(lines[4], { msg: 'no newline at the end' })
    t.equal(lines.length, 5)
    const exited = readLog(logDir).findIndex((r) => r.event === 'exited')
    t.ok(
      readLog(logDir).findIndex((r) => r.msg === 'no newline at the end') < exited,
      'the last line is logged before the exit',
    )
    t.same(
      readFileSync(join(logDir, 'tandem.log'), 'utf8')
        .split('\n')
        .slice(0, -1)
        .map((l) => JSON.parse(l) as unknown),
      sup.records,
      'stdout carries the same records as the file, in the same order',
    )
  },
)

t.test(
  'numbered lines across restarts, rotation and shutdown: none missing, none doubled',
  async (t) => {
    const LINES = 5000
    const { sup, logDir } = start(
      t,
      {
        crasher: printer(
          { LINES: String(LINES), EXIT_CODE: '1' },
          { restart: 'on-failure', crashLoop: { maxExits: 3, windowMs: 600_000 } },
        ),
        stayer: printer({ LINES: String(LINES), DONE: '1', STAY: '1' }),
      },
      { rotate: { maxBytes: 100_000, keep: 100 }, perInstance: true },
    )
    await sup.waitLog(
      'crasher failed after 3 runs',
      (r) => r.event === 'failed' && r.component === 'crasher',
    )
    await waitUntil('the stayer to be done', () =>
      readLog(logDir).some((r) => r.component === 'stayer' && r.msg === `done ${LINES}`),
    )
    process.kill(sup.pid, 'SIGTERM')
    t.equal((await sup.exited).code, 0)
    await sup.ended
    const records = readLog(logDir)
    t.ok(
      readdirSync(logDir).filter((f) => f.startsWith('tandem.log.')).length >= 5,
      'rotated several times',
    )
    const runs = new Map<number, number[]>()
    for (const r of records) {
      if (r.stream !== 'out') continue
      const seqs = runs.get(r.childPid!) ?? []
      seqs.push(Number(r.msg.split(' ')[1]))
      runs.set(r.childPid!, seqs)
    }
    const all = Array.from({ length: LINES }, (_, i) => i)
    t.equal(runs.size, 4, '3 runs of the crasher, 1 of the stayer')
    for (const [pid, seqs] of runs) t.same(seqs, all, `pid ${pid}: every line once, in order`)
    t.equal(records.at(-1)?.msg, 'all instances stopped; exiting')

    const own = readLog(logDir, 'crasher.0.log')
    t.same(
      own.filter((r) => r.stream === 'out').length,
      3 * LINES,
      'the per-instance file has its lines too',
    )
    t.ok(
      own.some((r) => r.event === 'failed'),
      'and its events',
    )
    t.notOk(
      own.some((r) => r.component === 'stayer'),
      "and nobody else's",
    )
  },
)

t.test(
  'an unwritable log directory: children run, status and stderr say so, writing resumes',
  async (t) => {
    const dir = tempDir(t)
    const blocker = join(dir, 'blocked')
    writeFileSync(blocker, 'a file where the log directory should be')
    const { sup, config } = start(
      t,
      { web: fixture({ port: 24600 }) },
      { dir: join(blocker, 'logs') },
    )
    await sup.waitLog('web ready', (r) => r.event === 'ready')
    t.match(
      sup.stderr.join('\n'),
      /tandem: cannot write .*blocked\/logs\/tandem\.log: .*children keep running/,
    )
    const s = (await status(config)) as unknown as { logs: { path: string; error?: string }[] }
    t.match(s.logs[0], { path: join(blocker, 'logs', 'tandem.log'), error: /ENOTDIR|EEXIST/ })
    rmSync(blocker)
    await waitUntil('the log file to be written', () =>
      existsSync(join(blocker, 'logs', 'tandem.log')),
    )
    const written = await waitUntil('the lines from before to arrive', () => {
      const r = readLog(join(blocker, 'logs'))
      return (
        r.some((x) => x.event === 'ready') && r.some((x) => /writing .* again/.test(x.msg)) && r
      )
    })
    t.ok(
      written.some((r) => r.event === 'start'),
      'from the very first record',
    )
    const after = (await status(config)) as unknown as { logs: { error?: string }[] }
    t.notOk(after.logs[0]!.error)
  },
)

t.test(
  'a child or a hook writing to /dev/stdout and /dev/stderr is logged (real pipes)',
  async (t) => {
    // nginx's `error_log /dev/stderr`, a script's `echo ... > /dev/stdout`: a socketpair refuses
    // these (ENXIO); the pipes tandem gives its children and hooks do not.
    const dir = tempDir(t)
    const config = writeConfig(
      dir,
      {
        sh: {
          command: [
            '/bin/sh',
            '-c',
            'echo via-dev-stdout > /dev/stdout && echo via-dev-stderr > /dev/stderr && [ -p /proc/$$/fd/1 ] && echo stdout-is-a-pipe',
          ],
          readiness: { type: 'none' },
          restart: 'never',
        },
      },
      {
        logs: { dir: join(dir, 'logs') },
        hooks: [
          {
            on: ['exited'],
            command: ['/bin/sh', '-c', 'echo hook-via-dev-stderr > /dev/stderr'],
          },
        ],
      },
    )
    const sup = new Supervisor(config)
    t.teardown(() => sup.kill())
    await sup.waitLog('sh exited', (r) => r.event === 'exited' && r.component === 'sh')
    const lines = (component: string, stream: string) =>
      sup.records.filter((r) => r.component === component && r.stream === stream).map((r) => r.msg)
    // Each stream in order (the two pipes are read independently).
    t.same(lines('sh', 'out'), ['via-dev-stdout', 'stdout-is-a-pipe'])
    t.same(lines('sh', 'err'), ['via-dev-stderr'])
    t.match(
      sup.records.find((r) => r.event === 'exited' && r.component === 'sh'),
      { exit: { code: 0 } },
    )
    await sup.waitLog(
      "the hook's line",
      (r) => r.component === '(hook)' && r.msg === 'hook-via-dev-stderr',
    )
    t.notOk(
      sup.records.some((r) => r.event === 'pipes'),
      'no warning: mkfifo made the pipes',
    )
  },
)

t.test('SIGUSR2 reopens the log file after an external rotation', async (t) => {
  const { sup, logDir } = start(t, { web: fixture({ port: 24601 }) })
  await sup.waitLog('web ready', (r) => r.event === 'ready')
  await waitUntil('ready in the file', () => readLog(logDir).some((r) => r.event === 'ready'))
  renameSync(join(logDir, 'tandem.log'), join(logDir, 'rotated-by-logrotate'))
  process.kill(sup.pid, 'SIGUSR2')
  await waitUntil('a new tandem.log', () => existsSync(join(logDir, 'tandem.log')))
  const fresh = await waitUntil('the reopen record', () => {
    const r = readLog(logDir)
    return r.some((x) => x.event === 'log-reopen') && r
  })
  t.notOk(
    fresh.some((r) => r.event === 'ready'),
    'the new file starts after the rename',
  )
  const old = readFileSync(join(logDir, 'rotated-by-logrotate'), 'utf8')
  t.match(old, /"event":"ready"/, 'the renamed file keeps what came before')
})
