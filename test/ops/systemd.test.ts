// Ports 26100-26199 belong to this file (test files run in parallel).
import { spawn, spawnSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import t, { type Test } from 'tap'
import { loadConfig } from '../../src/config/load-config.js'
import {
  LEFTOVER_REAP_MS,
  serviceTimeouts,
  START_SLACK_MS,
  START_STEP_SLACK_MS,
  STOP_SLACK_MS,
  STOP_STEP_SLACK_MS,
} from '../../src/ops/service-timeouts.js'
import {
  SYSTEMD_DEFAULT_PATH,
  systemdUnit,
  TIMEOUT_MARGIN,
  unitTimeouts,
} from '../../src/ops/systemd-unit.js'
import {
  BIN,
  cli,
  fixture,
  killGroup,
  ROOT,
  Supervisor,
  tempDir,
  waitUntil,
  writeConfig,
} from '../helpers/supervisor.js'

/**
 * A stack with a chain (web -> api -> db) and a component beside it whose single stop is long
 * but does not add up with the chain's.
 */
const sampleComponents = {
  db: fixture({
    port: 26150,
    stop: { timeoutMs: 4000 },
    readiness: { type: 'tcp', timeoutMs: 10_000 },
  }),
  api: fixture({
    port: 26151,
    instances: 2,
    dependsOn: ['db'],
    stop: { timeoutMs: 2000 },
    readiness: { type: 'http', path: '/', timeoutMs: 20_000 },
  }),
  web: fixture({
    port: 26160,
    dependsOn: ['api'],
    stop: { timeoutMs: 1000 },
    readiness: { type: 'tcp', timeoutMs: 5000 },
  }),
  sidecar: fixture({ env: {}, stop: { timeoutMs: 8000 }, readiness: { type: 'none' } }),
}

/** The settings of a unit file: `Key` -> values, in order (comments left out). */
const settings = (unit: string): Map<string, string[]> => {
  const m = new Map<string, string[]>()
  for (const line of unit.split('\n')) {
    const match = /^([A-Za-z]+)=(.*)$/.exec(line)
    if (match) m.set(match[1]!, [...(m.get(match[1]!) ?? []), match[2]!])
  }
  return m
}

const one = (s: Map<string, string[]>, key: string): string | undefined => {
  const v = s.get(key)
  return v?.length === 1 ? v[0] : undefined
}

/** The comments of a unit file as one line of text: what they say, not how they wrap. */
const comments = (unit: string): string =>
  unit
    .split('\n')
    .filter((l) => l.startsWith('# '))
    .map((l) => l.slice(2))
    .join(' ')

t.test('pins the slack the timeouts allow', async (t) => {
  t.equal(STOP_STEP_SLACK_MS, 1000)
  t.equal(STOP_SLACK_MS, 5000)
  t.equal(START_STEP_SLACK_MS, 1000)
  t.equal(START_SLACK_MS, 10_000)
  t.equal(LEFTOVER_REAP_MS, 5000)
  t.equal(TIMEOUT_MARGIN, 1.25)
  t.equal(
    SYSTEMD_DEFAULT_PATH,
    '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    "systemd's own, where /bin is not merged into /usr/bin (systemd-notify in /bin)",
  )
})

t.test('start and stop bounds add up along the heaviest dependsOn chain', async (t) => {
  const plan = loadConfig(writeConfig(tempDir(t), sampleComponents))
  const s = serviceTimeouts(plan)
  // Stop, dependents first: web 2*1000+1000, api 2*2000+1000, db 2*4000+1000 = 17 s; the
  // sidecar alone (2*8000+1000 = 17 s) is no heavier; then 5 s to close.
  t.same(s.stopChain, ['web', 'api', 'db'])
  t.equal(s.stopMs, 17_000 + 5_000)
  // Start, dependencies first: db 10+1, api 20+1, web 5+1 = 38 s.
  t.same(s.startChain, ['db', 'api', 'web'])
  t.equal(s.readyWithinMs, 38_000)
  // 10 s to load, leftovers: the longest stop (8 s) and 5 s to reap, then 38 s.
  t.equal(s.startMs, 10_000 + 13_000 + 38_000)
  t.same(unitTimeouts(s), { startSec: Math.ceil(61 * 1.25), stopSec: Math.ceil(22 * 1.25) })
})

t.test(
  'the unit runs tandem start in the foreground with absolute paths, notify, reload, mixed kill mode and computed timeouts',
  async (t) => {
    const dir = tempDir(t)
    const plan = loadConfig(writeConfig(dir, sampleComponents))
    const unit = systemdUnit(plan, {
      node: '/opt/node/bin/node',
      tandem: '/opt/tandem/bin/tandem.js',
      watchdogSec: 30,
      runAs: 'tandem',
    })
    const s = settings(unit)
    t.equal(one(s, 'Type'), 'notify')
    t.equal(one(s, 'NotifyAccess'), 'all', 'systemd-notify is a process other than the main one')
    t.equal(
      one(s, 'ExecStart'),
      `/opt/node/bin/node /opt/tandem/bin/tandem.js start -c ${join(dir, 'tandem.json')}`,
    )
    t.equal(one(s, 'WorkingDirectory'), dir)
    t.equal(
      one(s, 'Environment'),
      'PATH=/opt/node/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      'instances find the same node on PATH',
    )
    t.equal(one(s, 'ExecReload'), '/bin/kill -HUP $MAINPID')
    const said = comments(unit)
    t.match(
      said,
      '`systemctl reload` returns once the signal is sent, before the rollout has finished',
    )
    t.match(said, '`tandem reload` waits for the rollout')
    t.notMatch(said, 'RELOADING=1')
    t.equal(one(s, 'KillMode'), 'mixed')
    t.match(said, 'KillMode=mixed: `systemctl stop` sends SIGTERM to tandem alone')
    t.match(
      said,
      'As soon as tandem has exited, systemd sends SIGKILL to everything left in the cgroup at once',
    )
    t.match(
      said,
      'If tandem has not exited after TimeoutStopSec, systemd sends SIGKILL to the whole cgroup',
    )
    t.match(
      said,
      'Before systemd 246, systemd-notify does not wait for systemd to read its message',
    )
    t.match(said, 'sends READY=1 again every 2 s until TimeoutStartSec has passed')
    t.equal(
      one(s, 'TimeoutStopSec'),
      String(Math.ceil((22_000 * 1.25) / 1000)),
      '22 s and a quarter',
    )
    t.equal(one(s, 'TimeoutStartSec'), String(Math.ceil((61_000 * 1.25) / 1000)))
    t.match(unit, /longest chain of dependsOn \(web -> api -> db\)/)
    t.equal(one(s, 'WatchdogSec'), '30')
    t.equal(one(s, 'Restart'), 'on-failure')
    t.equal(one(s, 'RestartPreventExitStatus'), '78')
    t.equal(one(s, 'OOMPolicy'), 'continue')
    t.equal(one(s, 'User'), 'tandem')
    t.same(s.get('Wants'), ['network-online.target'])
    t.same(s.get('After'), ['network-online.target'])
    t.equal(one(s, 'WantedBy'), 'multi-user.target')
    t.notOk(s.has('RequiresMountsFor'), 'no shared dir without ha')
    t.ok(
      unit.split('\n').every((l) => l.length <= 100 || !l.startsWith('#')),
      'comments are wrapped',
    )
  },
)

t.test('quotes paths with spaces and escapes specifiers and variables', async (t) => {
  const dir = join(tempDir(t), 'my 100% $stack')
  mkdirSync(dir)
  const plan = loadConfig(
    writeConfig(
      dir,
      { a: fixture({ port: 26130 }) },
      { ha: { name: 'c', sharedDir: 'shared dir' } },
    ),
  )
  const s = settings(systemdUnit(plan, { node: '/usr/bin/node', tandem: '/t/tandem.js' }))
  const escaped = dir.replace(/%/g, '%%')
  t.equal(
    one(s, 'ExecStart'),
    `/usr/bin/node /t/tandem.js start -c "${escaped.replace(/\$/g, '$$$$')}/tandem.json"`,
  )
  t.equal(one(s, 'WorkingDirectory'), escaped)
  t.notOk(s.has('Environment'), "node in systemd's default PATH needs none")
  t.equal(one(s, 'RequiresMountsFor'), `"${escaped}/shared dir"`, 'ha: the shared dir is mounted')
})

t.test('a user unit has no User= and is wanted by default.target', async (t) => {
  const plan = loadConfig(writeConfig(tempDir(t), { a: fixture({ port: 26130 }) }))
  const s = settings(
    systemdUnit(plan, { node: '/usr/bin/node', tandem: '/t/tandem.js', userUnit: true }),
  )
  t.notOk(s.has('User'))
  t.notOk(s.has('After'))
  t.equal(one(s, 'WantedBy'), 'default.target')
})

const hasCommand = (name: string) => spawnSync('sh', ['-c', `command -v ${name}`]).status === 0

/**
 * A test that needs these programs: skipped where they are missing, except where CI is set
 * (.ci/run installs them), where it fails saying which: a broken install must not leave CI green
 * with the systemd tests skipped.
 */
const testNeeding = (programs: string[], name: string, body: (t: Test) => Promise<void>) => {
  const missing = programs.filter((p) => !hasCommand(p))
  const skip =
    missing.length && !process.env.CI
      ? `needs ${missing.join(' and ')} (Debian packages systemd, python3)`
      : false
  return t.test(name, { skip }, async (t) => {
    if (missing.length)
      return void t.fail(
        `${missing.join(' and ')} not on PATH, and CI is set: .ci/run installs them`,
      )
    await body(t)
  })
}

/** `systemd-analyze verify` on a unit file: its output, which lists every problem. */
const verify = (file: string, user: boolean, runtimeDir: string) => {
  const r = spawnSync(
    'systemd-analyze',
    [...(user ? ['--user'] : []), '--man=no', 'verify', file],
    {
      encoding: 'utf8',
      // A user manager needs a runtime dir, even for verifying.
      env: { ...process.env, XDG_RUNTIME_DIR: runtimeDir, SYSTEMD_LOG_LEVEL: 'notice' },
    },
  )
  return { code: r.status, output: `${r.stdout}${r.stderr}`.trim() }
}

testNeeding(
  ['systemd-analyze'],
  'systemd-analyze verify finds no problem in the units tandem unit systemd prints',
  async (t) => {
    const dir = tempDir(t)
    const config = writeConfig(dir, sampleComponents, {
      ha: { name: 'c', sharedDir: 'shared' },
    })
    const runtimeDir = join(dir, 'run')
    mkdirSync(runtimeDir, { mode: 0o700 })
    for (const args of [['--watchdog', '20', '--run-as', 'root'], ['--user']]) {
      const r = await cli(['unit', 'systemd', '-c', config, ...args])
      t.equal(r.code, 0, r.err)
      t.match(r.out, `ExecStart=${process.execPath} ${BIN} start -c ${config}\n`)
      t.equal(BIN, join(ROOT, 'bin/tandem.js'))
      // The name must end in .service; verify checks that ExecStart's program exists.
      const file = join(dir, `tandem-test${args.join('')}.service`)
      writeFileSync(file, r.out)
      const v = verify(file, args.includes('--user'), runtimeDir)
      t.same(v, { code: 0, output: '' }, `systemd-analyze verify ${args.join(' ')}`)
    }
  },
)

t.test('tandem unit with an unknown kind names it and the choices (exit 2)', async (t) => {
  const config = writeConfig(tempDir(t), { a: fixture({ port: 26130 }) })
  const r = await cli(['unit', 'upstart', '-c', config])
  t.equal(r.code, 2)
  t.match(r.err, 'unknown unit kind "upstart": expected one of systemd')
  const missing = await cli(['unit', '-c', config])
  t.equal(missing.code, 2)
  t.match(missing.err, "missing required argument 'kind'")
})

t.test('tandem unit refuses bad options (exit 2) and a bad config (exit 78)', async (t) => {
  const dir = tempDir(t)
  const config = writeConfig(dir, { a: fixture({ port: 26130 }) })
  for (const [args, message] of [
    [
      ['--watchdog', 'soon'],
      '--watchdog expects a whole number of seconds of at least 2, got "soon"',
    ],
    [['--user', '--run-as', 'bob'], '--run-as bob is for a system unit'],
    [['--run-as', 'bob smith'], '--run-as expects a user name or uid'],
    [['--node', 'node'], '--node expects an absolute path'],
  ] as const) {
    const r = await cli(['unit', 'systemd', '-c', config, ...args])
    t.equal(r.code, 2, args.join(' '))
    t.match(r.err, message)
  }
  const bad = writeConfig(dir, { a: { command: [], port: 70000 } })
  const r = await cli(['unit', 'systemd', '-c', bad])
  t.equal(r.code, 78)
  t.match(r.err, /invalid config .*tandem\.json:\n {2}components\.a\./)
})

interface Notification {
  fields: Record<string, string>
  pid: number
  accepting?: Record<string, boolean>
}

/** The stand-in notify socket (python3: Node.js has no Unix datagram sockets). */
const listen = async (t: Test, socket: string, ports: number[]) => {
  const proc = spawn(
    'python3',
    [join(ROOT, 'test/fixtures/notify-listener.py'), socket, ...ports.map(String)],
    { detached: true, stdio: ['ignore', 'pipe', 'inherit'] },
  )
  t.teardown(() => killGroup(proc.pid!))
  const received: Notification[] = []
  let listening = false
  createInterface({ input: proc.stdout }).on('line', (l) => {
    const o = JSON.parse(l) as Notification & { listening?: string }
    if (o.listening) listening = true
    // systemd-notify's BARRIER=1 is the protocol's, not tandem's.
    else if (!('BARRIER' in o.fields)) received.push(o)
  })
  await waitUntil('the notify socket', () => listening)
  return received
}

testNeeding(
  ['python3', 'systemd-notify'],
  'under systemd, tandem start reports READY=1 once the ports accept, STATUS, WATCHDOG, a reload in STATUS, and STOPPING',
  async (t) => {
    const dir = tempDir(t)
    const socket = join(dir, 'notify')
    const received = await listen(t, socket, [26100, 26110, 26111])
    const components = (version: string) => ({
      discovery: fixture({ port: 26100 }, { READY_DELAY_MS: '700' }),
      gateway: fixture(
        { port: 26110, instances: 2, dependsOn: ['discovery'] },
        { READY_DELAY_MS: '500', VERSION: version },
      ),
      // A one-shot job: done once it has exited 0, neither ready nor missing.
      migrate: {
        command: [process.execPath, '-e', 'process.exit(0)'],
        readiness: { type: 'none' },
      },
      // Tells whether the notify variables reached the children.
      env: {
        command: [
          process.execPath,
          '-e',
          'console.log(`notify socket: ${process.env.NOTIFY_SOCKET ?? "none"} ${process.env.WATCHDOG_USEC ?? "none"}`); setInterval(() => {}, 1000)',
        ],
        readiness: { type: 'none' },
      },
    })
    const config = writeConfig(dir, components('1'))
    const sup = new Supervisor(config, {
      NOTIFY_SOCKET: socket,
      WATCHDOG_USEC: '400000',
    })
    t.teardown(() => sup.kill())
    const ready = await waitUntil('READY=1', () => received.find((n) => n.fields.READY === '1'))
    t.same(ready.accepting, { 26100: true, 26110: true, 26111: true }, 'every port accepted first')
    t.equal(ready.fields.MAINPID, String(sup.pid), 'systemd-notify --pid=<supervisor>')
    // The one-shot job counts as ready while it runs (readiness none), as done once it has
    // exited 0; on a loaded machine it may still run when the others are ready.
    t.match(
      ready.fields.STATUS,
      /^(4\/4 ready, 1 completed|5\/5 ready)$/,
      'the one-shot job is not missing',
    )
    await waitUntil('the one-shot job counted as completed', () =>
      received.find((n) => n.fields.STATUS === '4/4 ready, 1 completed'),
    )
    const before = received.slice(0, received.indexOf(ready))
    t.ok(
      before.some((n) => /^starting: \d\/[45] ready/.test(n.fields.STATUS ?? '')),
      'STATUS while starting',
    )
    t.notOk(
      before.some((n) => n.fields.READY),
      'no READY=1 before',
    )
    await waitUntil(
      'three watchdog pings',
      () => received.filter((n) => n.fields.WATCHDOG).length >= 3,
    )
    await sup.waitLog('the child without notify variables', (r) => /notify socket:/.test(r.msg))
    t.ok(
      sup.records.some((r) => r.msg === 'notify socket: none none'),
      'children do not get NOTIFY_SOCKET nor WATCHDOG_USEC',
    )

    // A changed gateway: the reload replaces its instances one by one, which takes a while.
    writeConfig(dir, components('2'))
    sup.proc.kill('SIGHUP')
    const reloading = await waitUntil('the reload in STATUS', () =>
      received.find((n) => n.fields.STATUS?.startsWith('reloading the config: ')),
    )
    await waitUntil('the usual STATUS after the reload', () =>
      received
        .slice(received.indexOf(reloading))
        .find((n) => n.fields.STATUS === '4/4 ready, 1 completed'),
    )
    const done = await sup.waitLog(
      'the end of the rollout',
      (r) => r.event === 'rollout' && r.phase === 'done',
    )
    t.match(done.msg, 'rollout done: 2 replaced', 'the reload replaced the gateway')

    sup.proc.kill('SIGTERM')
    t.same(await sup.exited, { code: 0, signal: null })
    await sup.ended
    const stopping = await waitUntil('STOPPING=1', () =>
      received.find((n) => n.fields.STOPPING === '1'),
    )
    t.match(stopping.fields.STATUS, /^stopping: \d of 5 instances still running/)
    t.ok(received.indexOf(stopping) > received.indexOf(reloading), 'in the order sent')
    t.notOk(
      received.some((n) => 'RELOADING' in n.fields),
      'no RELOADING=1: a rollout is not bounded by TimeoutStartSec',
    )
    // A watchdog ping has a lane of its own: one on its way when STOPPING=1 was sent may
    // arrive after it with its READY=1, which changes nothing once systemd is stopping.
    t.notOk(
      received.slice(received.indexOf(stopping)).some((n) => n.fields.READY && !n.fields.WATCHDOG),
      'no READY=1 once stopping',
    )
    t.equal(
      sup.count((r) => r.event === 'systemd' && r.level >= 40),
      0,
      'no notify problem',
    )
  },
)

testNeeding(
  ['systemd-notify'],
  'a notify socket that does not answer costs one warning and nothing else',
  async (t) => {
    const dir = tempDir(t)
    const sup = new Supervisor(writeConfig(dir, { web: fixture({ port: 26120 }) }), {
      NOTIFY_SOCKET: join(dir, 'nobody-listens'),
      WATCHDOG_USEC: '200000',
    })
    t.teardown(() => sup.kill())
    await sup.waitLog('all ready', (r) => r.event === 'all-ready')
    await sup.waitLog('the notify warning', (r) => r.event === 'systemd' && r.level === 40)
    sup.proc.kill('SIGTERM')
    t.same(await sup.exited, { code: 0, signal: null })
    await sup.ended
    const warnings = sup.records.filter((r) => r.event === 'systemd' && r.level >= 40)
    t.equal(warnings.length, 1, 'once, though every watchdog ping failed too')
    t.match(warnings[0]?.msg, /systemd-notify .*exited with code 1.*nobody-listens/)
  },
)

testNeeding(
  ['python3', 'systemd-notify'],
  'reports READY=1 degraded, with a warning naming it, once an instance that cannot come up has given up',
  async (t) => {
    const dir = tempDir(t)
    const socket = join(dir, 'notify')
    const received = await listen(t, socket, [26130])
    const config = writeConfig(dir, {
      ok: fixture({ port: 26130 }),
      broken: fixture(
        {
          port: 26131,
          readiness: { type: 'tcp', timeoutMs: 300 },
          crashLoop: { maxExits: 2, windowMs: 60_000 },
        },
        { NO_LISTEN: '1' },
      ),
    })
    const sup = new Supervisor(config, { NOTIFY_SOCKET: socket })
    t.teardown(() => sup.kill())
    const ready = await waitUntil('READY=1', () => received.find((n) => n.fields.READY === '1'))
    t.equal(ready.fields.STATUS, '1/2 ready, 1 failed (not ready: broken#0)')
    t.same(ready.accepting, { 26130: true })
    const warning = await sup.waitLog('the warning', (r) => r.event === 'systemd' && r.level === 40)
    t.match(
      warning.msg,
      'told systemd READY=1 with not every instance ready (the others have given up): 1/2 ready, 1 failed (not ready: broken#0)',
    )
  },
)

testNeeding(
  ['python3', 'systemd-notify'],
  'reports READY=1 degraded once every instance has had its readiness timeout',
  async (t) => {
    const dir = tempDir(t)
    const socket = join(dir, 'notify')
    const received = await listen(t, socket, [26140])
    // A port held by someone else: retried with backoff for ever, never a crash loop.
    const holder = createServer().listen(26141, '127.0.0.1')
    t.teardown(() => holder.close())
    // ok is ready at its spawn, however loaded the machine: READY=1 can only be the deadline's.
    const config = writeConfig(dir, {
      ok: fixture({ port: 26140, readiness: { type: 'none' } }),
      blocked: fixture({ port: 26141, readiness: { type: 'tcp', timeoutMs: 1000 } }),
    })
    const sup = new Supervisor(config, { NOTIFY_SOCKET: socket })
    t.teardown(() => sup.kill())
    const ready = await waitUntil('READY=1', () => received.find((n) => n.fields.READY === '1'))
    t.match(ready.fields.STATUS, /^1\/2 ready, 1 (backing off|starting) \(not ready: blocked#0\)$/)
    const warning = await sup.waitLog('the warning', (r) => r.event === 'systemd' && r.level === 40)
    t.match(
      warning.msg,
      "not every instance ready (after 2000 ms, each one's readiness timeout included)",
    )
  },
)
