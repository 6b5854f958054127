// Rolling upgrades and config reloads with real children: one batch at a time, rollback of a
// failing new version, one rollout at a time, reload adding, removing and rolling components.
// Ports 25000-25099 belong to this file (test files run in parallel).
import { spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
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
  type LogRecord,
} from '../helpers/supervisor.js'

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

const pids = async (config: string) =>
  Object.fromEntries((await status(config)).instances.map((i) => [i.id, i.pid]))

type Rollout = LogRecord & { phase?: string; id?: string }
const phases = (sup: Supervisor) =>
  (sup.records as Rollout[])
    .filter((r) => r.event === 'rollout' && r.id)
    .map((r) => `${r.id} ${r.phase}`)

t.test(
  'upgrade --all replaces instances one at a time, each ready before the next goes down',
  async (t) => {
    const { config, sup } = start(t, { web: fixture({ port: 25000, instances: 3 }) })
    await sup.waitLog('all ready', (r) => r.event === 'all-ready')
    const before = await pids(config)
    const up = await cli(['upgrade', '--all', '--json', '-c', config])
    t.equal(up.code, 0, up.err)
    const events = up.out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>)
    t.match(events.at(-1), { result: { replaced: ['web#0', 'web#1', 'web#2'] } })
    t.match(
      events.find((e) => e.phase === 'starting' && e.id === 'web#1'),
      { n: 2, of: 3 },
    )
    const after = await pids(config)
    for (const id of ['web#0', 'web#1', 'web#2'])
      t.not(after[id], before[id], `${id} has a new process`)
    t.same(
      phases(sup).filter((p) => /stopping|replaced/.test(p)),
      [
        'web#0 stopping',
        'web#0 replaced',
        'web#1 stopping',
        'web#1 replaced',
        'web#2 stopping',
        'web#2 replaced',
      ],
      'the next goes down only when the one before is back',
    )
    // Never more than one instance down: replay the state events.
    const ready = new Set(['web#0', 'web#1', 'web#2'])
    let fewest = 3
    const from = sup.records.findIndex((r) => r.event === 'rollout')
    for (const r of sup.records.slice(from)) {
      const id = `${r.component}#${r.instance as number}`
      if (r.event === 'ready') ready.add(id)
      else if (r.event === 'stopping' || r.event === 'exited') ready.delete(id)
      fewest = Math.min(fewest, ready.size)
    }
    t.equal(fewest, 2, 'at least 2 of 3 ready throughout')
  },
)

t.test(
  'a failing new version is rolled back; the command says which instance and why',
  async (t) => {
    const web = fixture({ port: 25010, instances: 3, rollout: { minReadyMs: 1000 } })
    const other = fixture({ port: 25020 })
    const { dir, config, sup } = start(t, { web, other })
    await sup.waitLog('all ready', (r) => r.event === 'all-ready')
    const before = await pids(config)
    writeConfig(dir, {
      web: {
        ...web,
        env: {
          ...web.env,
          CRASH_AFTER_MS: '100',
          EXIT_CODE: '3',
          STDERR_LINES: 'boom: bad config',
        },
      },
      other,
    })
    const up = await cli(['upgrade', '-c', config])
    t.equal(up.code, 1)
    t.match(
      up.err,
      /web#0 exited during the rollout: exit code 3 after \d+ ms; stderr: boom: bad config; rolled back web#0/,
    )
    await waitUntil('web#0 serving the old version again', async () =>
      (await status(config)).instances.every((i) => i.state === 'ready'),
    )
    const after = await pids(config)
    t.not(after['web#0'], before['web#0'], 'web#0 runs a fresh process of the old version')
    t.equal(after['web#1'], before['web#1'], 'web#1 was never touched')
    t.equal(after['web#2'], before['web#2'], 'web#2 was never touched')
    t.equal(after['other#0'], before['other#0'], 'an unchanged component is not touched')
    t.match(phases(sup), [
      'web#0 stopping',
      'web#0 starting',
      'web#0 rollback',
      'web#0 stopping',
      'web#0 starting',
      'web#0 replaced',
    ])

    // Fixed config: the upgrade now goes through, web only.
    writeConfig(dir, { web: { ...web, env: { ...web.env, VERSION: '2' } }, other })
    const again = await cli(['upgrade', '-c', config])
    t.equal(again.code, 0, again.err)
    t.match(again.out, /\[3\/3\] web#2 replaced: ready/)
    t.equal((await pids(config))['other#0'], before['other#0'])
  },
)

t.test('one rollout at a time; status shows draining', async (t) => {
  const { config, sup } = start(
    t,
    {
      web: fixture({ port: 25030, instances: 2, rollout: { drainMs: 1500 } }),
    },
    { control: { http: { port: 25090 } } },
  )
  await sup.waitLog('all ready', (r) => r.event === 'all-ready')
  const first = cli(['upgrade', '--all', '-c', config])
  const draining = await waitUntil('an instance draining', async () =>
    (await status(config)).instances.find((i) => (i as { draining?: boolean }).draining),
  )
  t.equal(draining.id, 'web#0')
  t.match(
    await (await fetch('http://127.0.0.1:25090/ready')).json(),
    { draining: ['web#0'] },
    '/ready names it for load balancers',
  )
  const second = await cli(['upgrade', '--all', '-c', config])
  t.equal(second.code, 1)
  t.match(second.err, /an upgrade started at \S+ is running; try again when it has finished/)
  t.equal((await first).code, 0)
})

t.test(
  'reload: adds, removes and rolls components, leaves the rest; a bad config changes nothing',
  async (t) => {
    const keep = fixture({ port: 25040 })
    const change = fixture({ port: 25050, instances: 2 })
    const { dir, config, sup } = start(t, { keep, change, drop: fixture({ port: 25060 }) })
    await sup.waitLog('all ready', (r) => r.event === 'all-ready')
    const before = await pids(config)
    writeConfig(dir, {
      keep,
      change: { ...change, env: { ...change.env, VERSION: '2' } },
      add: fixture({ port: 25070, dependsOn: ['keep'] }),
    })
    process.kill(sup.pid, 'SIGHUP')
    await sup.waitLog(
      'reload done',
      (r) => r.event === 'rollout' && (r as Rollout).phase === 'done',
    )
    await waitUntil('add ready', async () =>
      (await status(config)).instances.find((i) => i.id === 'add#0' && i.state === 'ready'),
    )
    const after = await pids(config)
    t.same(Object.keys(after).sort(), ['add#0', 'change#0', 'change#1', 'keep#0'])
    t.equal(after['keep#0'], before['keep#0'], 'unchanged: not touched')
    t.not(after['change#0'], before['change#0'])
    t.not(after['change#1'], before['change#1'])
    t.notOk(alive(before['drop#0']!), 'removed: stopped')

    writeFileSync(config, '{ "components": { "x": { "command": [] } } ')
    const bad = await cli(['reload', '-c', config])
    t.equal(bad.code, 78)
    t.match(bad.err, /tandem\.json/)
    for (const [id, pid] of Object.entries(after)) t.ok(alive(pid!), `${id} still runs`)
    // (status itself needs a readable config to find the state dir: put the good one back.)
    writeConfig(dir, {
      keep,
      change: { ...change, env: { ...change.env, VERSION: '2' } },
      add: fixture({ port: 25070, dependsOn: ['keep'] }),
    })
    t.same(await pids(config), after, 'nothing running changed')
  },
)

t.test('watchConfig: a change of the config file reloads it', async (t) => {
  const web = fixture({ port: 25080 })
  const { dir, config, sup } = start(t, { web }, { watchConfig: true })
  await sup.waitLog('all ready', (r) => r.event === 'all-ready')
  const before = await pids(config)
  writeConfig(dir, { web: { ...web, env: { ...web.env, VERSION: '2' } } }, { watchConfig: true })
  await sup.waitLog('reload done', (r) => r.event === 'rollout' && (r as Rollout).phase === 'done')
  t.not((await pids(config))['web#0'], before['web#0'])
})

t.test('a shutdown during a rollout ends it at once; the supervisor exits 0', async (t) => {
  const web = fixture({ port: 25085, rollout: { progressDeadlineMs: 600_000 } })
  const { dir, config, sup } = start(t, { web })
  await sup.waitLog('all ready', (r) => r.event === 'all-ready')
  writeConfig(dir, { web: { ...web, env: { ...web.env, NO_LISTEN: '1' } } }) // never ready
  const up = cli(['upgrade', '-c', config])
  await sup.waitLog(
    'the new web#0 spawned',
    (r) => r.event === 'rollout' && (r as Rollout).phase === 'starting',
  )
  process.kill(sup.pid, 'SIGTERM')
  t.equal((await sup.exited).code, 0)
  const r = await up
  t.equal(r.code, 1)
  t.match(
    r.err,
    /web#0 was not up yet when the supervisor began shutting down; nothing rolled back: the supervisor is shutting down/,
  )
})

t.test(
  'on a terminal the lasting step redraws one line, its elapsed time ticking; plain lines otherwise',
  async (t) => {
    const { config, sup } = start(t, {
      web: fixture({ port: 25095, instances: 1, rollout: { drainMs: 2000 } }),
    })
    await sup.waitLog('all ready', (r) => r.event === 'all-ready')
    // script(1) runs the command on a pseudo-terminal and copies what it draws.
    const tty = await new Promise<{ code: number | null; out: string }>((res) => {
      const p = spawn(
        'script',
        ['-qfec', `'${process.execPath}' '${BIN}' upgrade --all -c '${config}'`, '/dev/null'],
        { stdio: ['ignore', 'pipe', 'inherit'], detached: true },
      )
      t.teardown(() => killGroup(p.pid!))
      let out = ''
      p.stdout.on('data', (d: Buffer) => (out += d.toString()))
      p.once('close', (code) => res({ code, out }))
    })
    t.equal(tty.code, 0)
    const draws = tty.out.split('\r\x1b[K').map((d) => d.trim())
    const drains = draws.filter((d) => d.startsWith('[1/1] web#0 draining'))
    t.ok(
      new Set(drains.map((d) => /\((\d+\.\d)s\)$/.exec(d)?.[1])).size >= 3,
      `the draining line is redrawn with the time going on: ${JSON.stringify(drains)}`,
    )
    t.match(tty.out, /\r\x1b\[K\[1\/1\] web#0 replaced: ready \(pid \d+\) \(\d+\.\ds\)\r?\n/)
    const plain = await cli(['upgrade', '--all', '-c', config])
    t.equal(plain.code, 0)
    t.notMatch(plain.out, /\x1b|\r/, 'no terminal codes when stdout is not one')
    t.match(plain.out, /^\[1\/1\] web#0 draining for 2000 ms \(0\.\ds\)$/m)
  },
)

t.test('tandem restart drains a ready instance first, as a rollout does', async (t) => {
  const { config, sup } = start(t, {
    web: fixture({ port: 25097, instances: 1, rollout: { drainMs: 1500 } }),
  })
  await sup.waitLog('all ready', (r) => r.event === 'all-ready')
  const restart = cli(['restart', 'web#0', '-c', config])
  // The state is read from the same reply that shows the drain: a second request could come
  // after the drain on a loaded machine.
  const draining = await waitUntil('web#0 draining', async () =>
    (await status(config)).instances.find((i) => (i as { draining?: boolean }).draining),
  )
  t.equal(draining.state, 'ready', 'still serving while it drains')
  const r = await restart
  t.equal(r.code, 0, r.err)
  t.match(r.out, /web#0: ready/)
  t.notOk(
    (await status(config)).instances.some((i) => (i as { draining?: boolean }).draining),
    'not draining any more',
  )
})
