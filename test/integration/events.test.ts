// Ports 29020-29099 belong to this file (test files run in parallel).
// The event stream end to end: a real supervisor, real children, real signals; the events read
// back with `tandem events`, live with `tandem events -f`, and through hooks.
import { spawn } from 'node:child_process'
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import t, { type Test } from 'tap'
import {
  alive,
  BIN,
  cli,
  fixture,
  killGroup,
  status,
  Supervisor,
  tempDir,
  waitUntil,
  writeConfig,
} from '../helpers/supervisor.js'

interface Ev {
  seq: number
  time: string
  node: string
  event: string
  id?: string
  component?: string
  instance?: number
  childPid?: number
  message: string
  [k: string]: unknown
}

const start = (
  t: Test,
  components: Record<string, unknown>,
  extra: Record<string, unknown> = {},
) => {
  const dir = tempDir(t)
  const config = writeConfig(dir, components, extra)
  const sup = new Supervisor(config)
  t.teardown(() => sup.kill())
  return { dir, config, sup }
}

/** `tandem events --json`: every event kept, parsed. */
const events = async (config: string, ...args: string[]): Promise<Ev[]> => {
  const r = await cli(['events', '--json', ...args, '-c', config])
  if (r.code !== 0) throw new Error(`tandem events failed (${r.code}): ${r.err}`)
  return r.out
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Ev)
}

const namesOf = (list: Ev[], id: string) => list.filter((e) => e.id === id).map((e) => e.event)

/** A program that exits 3 at once: with ipc readiness it never becomes ready. */
const crasher = (extra: Record<string, unknown> = {}) => ({
  command: [process.execPath, '-e', 'process.exit(3)'],
  readiness: { type: 'ipc', timeoutMs: 60000 },
  backoff: { initialMs: 10, maxMs: 50 },
  crashLoop: { maxExits: 3, windowMs: 60000 },
  ...extra,
})

t.test(
  'each event once and in order: a SIGKILL, a crash loop, an operator stop; numbered without gaps',
  async (t) => {
    const { config, sup } = start(t, {
      web: fixture({ port: 29020 }),
      loop: crasher(),
    })
    await sup.waitLog('web ready', (r) => r.event === 'ready' && r.component === 'web')
    await sup.waitLog('loop failed', (r) => r.event === 'failed' && r.component === 'loop')
    const victim = (await status(config)).instances.find((i) => i.id === 'web#0')!.pid!
    process.kill(victim, 'SIGKILL')
    await sup.waitLog(
      'web#0 ready again',
      (r) => r.event === 'ready' && r.component === 'web' && r.childPid !== victim,
    )
    t.equal((await cli(['stop', 'web', '-c', config])).code, 0)
    const all = await waitUntil('the stop published', async () => {
      const list = await events(config)
      return list.some((e) => e.event === 'stopped') && list
    })
    t.same(
      all.map((e) => e.seq),
      all.map((_, i) => i + 1),
      'numbered 1, 2, 3 ... with no gap',
    )
    t.same(namesOf(all, 'web#0'), [
      'spawned',
      'ready',
      'exited',
      'restarting',
      'spawned',
      'ready',
      'stopped',
    ])
    t.same(namesOf(all, 'loop#0'), [
      'spawned',
      'exited',
      'restarting',
      'spawned',
      'exited',
      'restarting',
      'spawned',
      'exited',
      'crashLoop',
    ])
    const exited = all.find((e) => e.id === 'web#0' && e.event === 'exited')!
    t.match(exited, {
      node: (await status(config)).node,
      component: 'web',
      instance: 0,
      port: 29020,
      childPid: victim,
      exit: { reason: 'exited', signal: 'SIGKILL' },
    })
    t.match(exited.message, /^web#0 exited: signal SIGKILL after \d+ ms$/)
    t.match(all.find((e) => e.event === 'crashLoop')!.message, /crash loop: 3 failures/)
    t.notOk(
      all.some((e) => e.event === 'failed'),
      'a crash loop is crashLoop, not also failed',
    )
    // The log records of published events carry their number.
    const logged = sup.records.find((r) => r.event === 'exited' && r.childPid === victim)
    t.equal(logged?.seq, exited.seq, 'the log record names the event')

    // Targets, --since and the human format.
    const loopOnly = await events(config, 'loop')
    t.ok(loopOnly.length > 0 && loopOnly.every((e) => e.id === 'loop#0'))
    const since = await events(config, '--since', String(exited.seq))
    t.equal(since[0]?.seq, exited.seq + 1)
    const human = await cli(['events', 'web#0', '-c', config])
    t.match(
      human.out,
      new RegExp(`\\s${exited.seq}  \\S+Z  exited\\s+web#0\\s+exited: signal SIGKILL`),
    )
    const unknown = await cli(['events', 'nope', '-c', config])
    t.equal(unknown.code, 2, 'an unknown target is a usage error')
    t.match(unknown.err, /unknown target "nope"/)
  },
)

t.test(
  'a liveness failure is unhealthy and a memory limit is memory, each before its exit',
  async (t) => {
    const { sup, config } = start(
      t,
      {
        hung: fixture(
          {
            port: 29025,
            health: { type: 'http', path: '/', intervalMs: 200, timeoutMs: 300, failures: 2 },
          },
          { HANG_AFTER_MS: '500' },
        ),
        hog: fixture({ port: 29026, maxMemoryMb: 150 }, { HOG_MB: '250' }),
      },
      { metrics: { intervalMs: 200 } },
    )
    await sup.waitLog('hung restarted', (r) => r.event === 'restart' && r.component === 'hung')
    await sup.waitLog('hog restarted', (r) => r.event === 'restart' && r.component === 'hog')
    const list = await waitUntil('both exits published', async () => {
      const l = await events(config)
      return (
        ['hung#0', 'hog#0'].every((id) => l.some((e) => e.id === id && e.event === 'restarting')) &&
        l
      )
    })
    t.same(namesOf(list, 'hung#0').slice(0, 5), [
      'spawned',
      'ready',
      'unhealthy',
      'exited',
      'restarting',
    ])
    t.same(namesOf(list, 'hog#0').slice(0, 5), [
      'spawned',
      'ready',
      'memory',
      'exited',
      'restarting',
    ])
    t.match(
      list.find((e) => e.event === 'unhealthy'),
      {
        cause: 'unhealthy',
        message: /^hung#0 restarting: unhealthy: http health check failed 2 times in a row/,
      },
    )
    t.match(
      list.find((e) => e.event === 'memory'),
      {
        message: /^hog#0 restarting: memory: RSS \d+ MB above maxMemoryMb 150/,
      },
    )
    t.match(
      list.find((e) => e.id === 'hog#0' && e.event === 'exited'),
      { exit: { reason: 'memory' } },
    )
  },
)

t.test('tandem events -f prints the kept events, then a kill as it happens', async (t) => {
  const { config, sup } = start(t, { web: fixture({ port: 29030, instances: 2 }) })
  await sup.waitLog('all ready', (r) => r.event === 'all-ready')
  const follower = spawn(process.execPath, [BIN, 'events', '-f', '--json', 'web#1', '-c', config], {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  })
  t.teardown(() => killGroup(follower.pid!))
  const seen: Ev[] = []
  createInterface({ input: follower.stdout }).on('line', (l) => seen.push(JSON.parse(l) as Ev))
  await waitUntil('the kept ready of web#1', () => seen.some((e) => e.event === 'ready'))
  t.ok(
    seen.every((e) => e.id === 'web#1'),
    'only the target',
  )
  const victim = (await status(config)).instances[1]!.pid!
  process.kill(victim, 'SIGKILL')
  await waitUntil('the kill seen live', () =>
    seen.some((e) => e.event === 'exited' && e.childPid === victim),
  )
  await waitUntil('then its restart', () =>
    seen.some((e) => e.event === 'ready' && e.seq > seen.find((x) => x.event === 'exited')!.seq),
  )
  t.same(
    seen.map((e) => e.event),
    ['spawned', 'ready', 'exited', 'restarting', 'spawned', 'ready'],
  )
  t.ok(alive(follower.pid!), 'still following')
})

t.test(
  'an upgrade whose new command does not become ready: rollout.started, then rollout.rolledBack; a config that does not validate: config.rejected',
  async (t) => {
    const web = fixture({
      port: 29040,
      instances: 2,
      rollout: { progressDeadlineMs: 3000 },
      readiness: { type: 'tcp', timeoutMs: 1500 },
    })
    const { dir, config, sup } = start(t, { web })
    await sup.waitLog('all ready', (r) => r.event === 'all-ready')
    writeConfig(dir, { web: { ...web, env: { ...web.env, NO_LISTEN: '1' } } })
    const up = await cli(['upgrade', '-c', config])
    t.equal(up.code, 1, 'the upgrade failed')
    const list = await events(config)
    const rollout = list.filter((e) => e.event.startsWith('rollout.'))
    t.same(
      rollout.map((e) => e.event),
      ['rollout.started', 'rollout.rolledBack'],
    )
    t.match(rollout[1], { what: 'upgrade', rolledBack: ['web#0'] })
    t.match(rollout[1]!.message, /upgrade rolled back: web#0/)
    t.ok(
      sup.records.some((r) => r.event === 'rollout.rolledBack' && r.seq === rollout[1]!.seq),
      'logged from the stream',
    )
    // A good upgrade back: started, one replaced per instance, done.
    writeConfig(dir, { web: { ...web, env: { ...web.env, VERSION: '2' } } })
    t.equal((await cli(['upgrade', '-c', config])).code, 0)
    const after = (await events(config)).filter((e) => e.seq > rollout[1]!.seq)
    t.same(
      after.filter((e) => e.event.startsWith('rollout.')).map((e) => [e.event, e.id]),
      [
        ['rollout.started', undefined],
        ['rollout.replaced', 'web#0'],
        ['rollout.replaced', 'web#1'],
        ['rollout.done', undefined],
      ],
    )
    t.match(
      after.find((e) => e.event === 'rollout.replaced'),
      { component: 'web', instance: 0, port: 29040, n: 1, of: 2 },
    )
    // Reload of a config that does not validate.
    writeFileSync(config, '{"stateDir": "state", "components": {"web": {"command": []}}}')
    const reload = await cli(['reload', '-c', config])
    t.equal(reload.code, 78)
    const last = (await events(config)).slice(-2)
    t.same(
      last.map((e) => e.event),
      ['reload', 'config.rejected'],
    )
    t.match(
      last[1]!.message,
      /^reload refused: invalid config .*: components\.web\.command: [^\n]+$/,
    )
    t.match(last[1], { problems: [{ path: 'components.web.command' }] })
  },
)

/** A node program that appends its environment as one JSON line to `file`. */
const recordEnv = (file: string) => [
  process.execPath,
  '-e',
  `require('fs').appendFileSync(${JSON.stringify(file)}, JSON.stringify(process.env) + '\\n')`,
]

t.test(
  'a hook gets the event and the instance variables, never the secret env; one run per event, in order',
  async (t) => {
    const dir = tempDir(t)
    const out = join(dir, 'hook-env.jsonl')
    const envFile = join(dir, 'secrets.env')
    writeFileSync(envFile, 'FROM_FILE=file-secret-7d1c\n', { mode: 0o600 })
    const config = writeConfig(
      dir,
      {
        web: fixture(
          { port: 29050, envFile: 'secrets.env', secretEnv: ['API'] },
          { DB_PASSWORD: 'pw-secret-91ab', API: 'api-secret-44ee', PLAIN: 'plain-value' },
        ),
        other: fixture({ port: 29051 }),
      },
      { hooks: [{ on: ['exited', 'ready'], target: 'web', command: recordEnv(out) }] },
    )
    const sup = new Supervisor(config)
    t.teardown(() => sup.kill())
    await sup.waitLog('all ready', (r) => r.event === 'all-ready')
    const victim = (await status(config)).instances.find((i) => i.id === 'web#0')!.pid!
    process.kill(victim, 'SIGKILL')
    const lines = await waitUntil('three hook runs', () => {
      const l = existsSync(out) ? readFileSync(out, 'utf8').trim().split('\n') : []
      return l.length >= 3 && l
    })
    const envs = lines.map((l) => JSON.parse(l) as Record<string, string>)
    t.same(
      envs.map((e) => e.TANDEM_EVENT),
      ['ready', 'exited', 'ready'],
      'ready, the kill, ready again: in order, only the target',
    )
    const exited = envs[1]!
    const ev = JSON.parse(exited.TANDEM_EVENT_JSON!) as Ev
    t.match(ev, { event: 'exited', id: 'web#0', childPid: victim, exit: { signal: 'SIGKILL' } })
    t.match(exited, {
      TANDEM_COMPONENT: 'web',
      TANDEM_INSTANCE: '0',
      TANDEM_PORT: '29050',
      TANDEM_PID: String(victim),
      TANDEM_SEQ: String(ev.seq),
      TANDEM_NODE: ev.node,
      TANDEM_CONFIG: config,
    })
    const text = readFileSync(out, 'utf8')
    for (const secret of ['pw-secret-91ab', 'api-secret-44ee', 'file-secret-7d1c', 'plain-value'])
      t.notOk(text.includes(secret), `the instance's env (${secret}) is not in the hook's`)
    t.ok(envs[0]!.PATH, "the supervisor's own environment")
    await sup.waitLog(
      'the hook run logged',
      (r) => r.event === 'hook' && /ran for event/.test(r.msg),
    )
    // The hook's output goes into the unified log, as a child's does.
  },
)

t.test('a hook that hangs is stopped at its timeout; supervision goes on', async (t) => {
  const dir = tempDir(t)
  const pidFile = join(dir, 'hook.pid')
  const config = writeConfig(
    dir,
    { web: fixture({ port: 29060 }) },
    {
      hooks: [
        {
          on: ['exited'],
          timeoutMs: 500,
          command: [
            process.execPath,
            '-e',
            `require('fs').writeFileSync(${JSON.stringify(pidFile)}, String(process.pid)); console.log('hook hanging'); process.on('SIGTERM', () => {}); setInterval(() => {}, 1000)`,
          ],
        },
      ],
    },
  )
  const sup = new Supervisor(config)
  t.teardown(() => {
    if (existsSync(pidFile)) killGroup(Number(readFileSync(pidFile, 'utf8')))
    sup.kill()
  })
  await sup.waitLog('ready', (r) => r.event === 'ready')
  const victim = (await status(config)).instances[0]!.pid!
  process.kill(victim, 'SIGKILL')
  await sup.waitLog('web ready again', (r) => r.event === 'ready' && r.childPid !== victim)
  const stopped = await sup.waitLog(
    'the hook stopped',
    (r) => r.event === 'hook' && /still ran after timeoutMs 500: stopped/.test(r.msg),
  )
  t.equal(stopped.level, 50)
  const hookPid = Number(readFileSync(pidFile, 'utf8'))
  t.notOk(alive(hookPid), 'the hook (which ignored SIGTERM) was killed')
  t.ok(
    sup.records.some(
      (r) => r.msg === 'hook hanging' && r.component === '(hook)' && r.instance === 0,
    ),
    "the hook's output is in the unified log",
  )
  // Supervision goes on: another kill is restarted as before.
  const second = (await status(config)).instances[0]!.pid!
  process.kill(second, 'SIGKILL')
  await sup.waitLog(
    'ready a third time',
    (r) => r.event === 'ready' && r.childPid !== victim && r.childPid !== second,
  )
  t.equal((await status(config)).instances[0]!.state, 'ready')
})

t.test('a hook whose queue is full drops events, counts them and says so', async (t) => {
  const dir = tempDir(t)
  const runs = join(dir, 'runs')
  const gate = join(dir, 'gate')
  const config = writeConfig(
    dir,
    // Each crash makes exited and restarting: many events while the hook sleeps.
    { loop: crasher({ crashLoop: { maxExits: 8, windowMs: 60000 } }) },
    {
      hooks: [
        {
          on: ['spawned', 'exited', 'restarting', 'crashLoop'],
          maxQueued: 2,
          command: [
            process.execPath,
            '-e',
            // Runs only once the gate is open: the first run holds the queue until the test says.
            `const fs = require('fs'); fs.appendFileSync(${JSON.stringify(runs)}, process.env.TANDEM_SEQ + '\\n'); const wait = () => fs.existsSync(${JSON.stringify(gate)}) || setTimeout(wait, 20); wait()`,
          ],
          timeoutMs: 60000,
        },
      ],
    },
  )
  const sup = new Supervisor(config)
  t.teardown(() => sup.kill())
  await sup.waitLog('crash loop', (r) => r.event === 'failed')
  const first = await sup.waitLog(
    'first drop',
    (r) => r.event === 'hook' && /queue full/.test(r.msg),
  )
  t.equal(first.level, 40)
  t.equal(first.seq, 4, 'events 1 runs, 2 and 3 wait, 4 is the first dropped')
  writeFileSync(gate, '')
  const summary = await sup.waitLog(
    'the count once it has room',
    (r) => r.event === 'hook' && /dropped \d+ events/.test(r.msg),
  )
  // 8 crashes: 8 spawned, 8 exited, 7 restarting, 1 crashLoop = 24 events; one runs, 2 wait.
  const all = await events(config)
  const matching = all.filter((e) =>
    ['spawned', 'exited', 'restarting', 'crashLoop'].includes(e.event),
  )
  t.equal(matching.length, 24)
  const dropped = summary.dropped as number
  t.equal(dropped, 21, '24 events, 1 ran at once, 2 waited: 21 dropped')
  const counted = (await status(config)) as unknown as { hooks: unknown[] }
  t.match(counted.hooks, [{ index: 0, dropped: 21 }], 'counted in status')
  const ran = await waitUntil('the queued runs', () => {
    const l = existsSync(runs) ? readFileSync(runs, 'utf8').trim().split('\n') : []
    return l.length >= 3 && l
  })
  t.same(ran.map(Number), [1, 2, 3], 'the first, then the two that waited, in event order')
})

t.test(
  'a log file that cannot be written: log.unwritable, then log.recovered, once each',
  async (t) => {
    const dir = tempDir(t)
    const blocker = join(dir, 'blocked')
    // A file where the log directory should be: the log file cannot be opened until it goes.
    writeFileSync(blocker, 'not a directory')
    const config = writeConfig(
      dir,
      { web: fixture({ port: 29070 }) },
      { logs: { dir: join(blocker, 'logs') } },
    )
    const sup = new Supervisor(config)
    t.teardown(() => sup.kill())
    await sup.waitLog('web ready', (r) => r.event === 'ready')
    const path = join(blocker, 'logs', 'tandem.log')
    const down = await waitUntil('log.unwritable', async () =>
      (await events(config)).find((e) => e.event === 'log.unwritable'),
    )
    t.match(down, { path, error: /ENOTDIR|EEXIST/, message: new RegExp(`^cannot write ${path}: `) })
    rmSync(blocker)
    const list = await waitUntil('log.recovered', async () => {
      const l = await events(config)
      return l.some((e) => e.event === 'log.recovered') && l
    })
    t.same(
      list.filter((e) => e.event.startsWith('log.')).map((e) => [e.event, e.path]),
      [
        ['log.unwritable', path],
        ['log.recovered', path],
      ],
    )
    t.match(
      list.find((e) => e.event === 'log.recovered'),
      { droppedLines: 0 },
    )
  },
)

t.test(
  'tandem reload applies changed hooks at once; unchanged components are not touched',
  async (t) => {
    const dir = tempDir(t)
    const out = join(dir, 'hooks.log')
    const mark = (name: string) => [
      process.execPath,
      '-e',
      `require('fs').appendFileSync(${JSON.stringify(out)}, ${JSON.stringify(name)} + ' ' + process.env.TANDEM_EVENT + '\\n')`,
    ]
    const components = { web: fixture({ port: 29080 }) }
    const config = writeConfig(dir, components, {
      hooks: [{ on: ['exited'], target: 'web', command: mark('A') }],
    })
    const sup = new Supervisor(config)
    t.teardown(() => sup.kill())
    await sup.waitLog('ready', (r) => r.event === 'ready')
    const lines = () => (existsSync(out) ? readFileSync(out, 'utf8').trim().split('\n') : [])
    const kill = async (n: number) => {
      const victim = (await status(config)).instances[0]!.pid!
      process.kill(victim, 'SIGKILL')
      await sup.waitLog(`ready again (${n})`, (r) => r.event === 'ready' && r.childPid !== victim)
      return victim
    }
    await kill(1)
    await waitUntil('hook A ran', () => lines().length >= 1)

    // Hook A replaced by B, and a second hook added: no restart of the supervisor.
    writeConfig(dir, components, {
      hooks: [
        { on: ['exited'], target: 'web', command: mark('B') },
        { on: ['ready'], target: 'web', command: mark('C') },
      ],
    })
    const before = (await status(config)).instances[0]!.pid
    const reload = await cli(['reload', '-c', config])
    t.equal(reload.code, 0, reload.err)
    t.equal((await status(config)).instances[0]!.pid, before, 'web was not restarted')
    await sup.waitLog(
      'the hooks change logged',
      (r) => r.event === 'hook' && /hooks changed/.test(r.msg),
    )
    await kill(2)
    await waitUntil('hooks B and C ran', () => lines().length >= 3)
    t.same(lines().sort(), ['A exited', 'B exited', 'C ready'], 'after the reload: B and C, not A')
    const counted = (await status(config)) as unknown as { hooks: { index: number; ran: number }[] }
    t.match(counted.hooks, [
      { index: 0, ran: 1 },
      { index: 1, ran: 1 },
    ])
    t.notOk(
      sup.records.some((r) => /the change of "hooks"/.test(r.msg ?? '')),
      'no "at the next start" warning for hooks',
    )
  },
)
