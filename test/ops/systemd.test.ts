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
import { systemdUnit, TIMEOUT_MARGIN } from '../../src/ops/systemd-unit.js'
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

t.test('pins the slack the timeouts allow', async (t) => {
  t.equal(STOP_STEP_SLACK_MS, 1000)
  t.equal(STOP_SLACK_MS, 5000)
  t.equal(START_STEP_SLACK_MS, 1000)
  t.equal(START_SLACK_MS, 10_000)
  t.equal(LEFTOVER_REAP_MS, 5000)
  t.equal(TIMEOUT_MARGIN, 1.25)
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
      'PATH=/opt/node/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin',
      'instances find the same node on PATH',
    )
    t.equal(one(s, 'ExecReload'), '/bin/kill -HUP $MAINPID')
    t.equal(one(s, 'KillMode'), 'mixed')
    t.match(unit, /# KillMode=mixed: `systemctl stop` sends SIGTERM to tandem alone/)
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

t.test(
  'systemd-analyze verify finds no problem in the units tandem unit systemd prints',
  {
    skip: hasCommand('systemd-analyze')
      ? false
      : 'systemd-analyze is not installed (Debian package systemd)',
  },
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

t.test(
  'under systemd, tandem start reports READY=1 once the ports accept, STATUS, WATCHDOG, RELOADING and STOPPING',
  {
    skip:
      hasCommand('python3') && hasCommand('systemd-notify')
        ? false
        : 'needs python3 and systemd-notify',
  },
  async (t) => {
    const dir = tempDir(t)
    const socket = join(dir, 'notify')
    const received = await listen(t, socket, [26100, 26110, 26111])
    const config = writeConfig(dir, {
      discovery: fixture({ port: 26100 }, { READY_DELAY_MS: '700' }),
      gateway: fixture(
        { port: 26110, instances: 2, dependsOn: ['discovery'] },
        { READY_DELAY_MS: '500' },
      ),
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
    const sup = new Supervisor(config, {
      NOTIFY_SOCKET: socket,
      WATCHDOG_USEC: '400000',
    })
    t.teardown(() => sup.kill())
    const ready = await waitUntil('READY=1', () => received.find((n) => n.fields.READY === '1'))
    t.same(ready.accepting, { 26100: true, 26110: true, 26111: true }, 'every port accepted first')
    t.equal(ready.fields.MAINPID, String(sup.pid), 'systemd-notify --pid=<supervisor>')
    t.equal(ready.fields.STATUS, '4/4 ready')
    const before = received.slice(0, received.indexOf(ready))
    t.ok(
      before.some((n) => /^starting: \d\/4 ready/.test(n.fields.STATUS ?? '')),
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

    sup.proc.kill('SIGHUP')
    const reloading = await waitUntil('RELOADING=1', () =>
      received.find((n) => n.fields.RELOADING === '1'),
    )
    t.match(reloading.fields.MONOTONIC_USEC, /^\d+$/)
    t.match(reloading.fields.STATUS, /^reloading: /)
    await waitUntil('READY=1 after the reload', () =>
      received.slice(received.indexOf(reloading)).find((n) => n.fields.READY === '1'),
    )

    sup.proc.kill('SIGTERM')
    t.same(await sup.exited, { code: 0, signal: null })
    const stopping = received.find((n) => n.fields.STOPPING === '1')
    t.ok(stopping, 'STOPPING=1 before the exit')
    t.match(stopping?.fields.STATUS, /^stopping: \d of 4 instances still running/)
    t.ok(received.indexOf(stopping!) > received.indexOf(reloading), 'in the order sent')
    t.notOk(
      received.slice(received.indexOf(stopping!)).some((n) => n.fields.READY),
      'no READY=1 once stopping',
    )
    t.equal(
      sup.count((r) => r.event === 'systemd' && r.level >= 40),
      0,
      'no notify problem',
    )
  },
)

t.test(
  'a notify socket that does not answer costs one warning and nothing else',
  { skip: hasCommand('systemd-notify') ? false : 'needs systemd-notify' },
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

t.test(
  'reports READY=1 degraded, with a warning, once an instance that cannot come up has given up',
  {
    skip:
      hasCommand('python3') && hasCommand('systemd-notify')
        ? false
        : 'needs python3 and systemd-notify',
  },
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
    t.equal(ready.fields.STATUS, '1/2 ready, 1 failed')
    t.same(ready.accepting, { 26130: true })
    const warning = await sup.waitLog('the warning', (r) => r.event === 'systemd' && r.level === 40)
    t.match(
      warning.msg,
      'told systemd READY=1 with not every instance ready (the others have given up): 1/2 ready, 1 failed',
    )
  },
)

t.test(
  'reports READY=1 degraded once every instance has had its readiness timeout',
  {
    skip:
      hasCommand('python3') && hasCommand('systemd-notify')
        ? false
        : 'needs python3 and systemd-notify',
  },
  async (t) => {
    const dir = tempDir(t)
    const socket = join(dir, 'notify')
    const received = await listen(t, socket, [26140])
    // A port held by someone else: retried with backoff for ever, never a crash loop.
    const holder = createServer().listen(26141, '127.0.0.1')
    t.teardown(() => holder.close())
    const readiness = { type: 'tcp', timeoutMs: 1000 }
    const config = writeConfig(dir, {
      ok: fixture({ port: 26140, readiness }),
      blocked: fixture({ port: 26141, readiness }),
    })
    const sup = new Supervisor(config, { NOTIFY_SOCKET: socket })
    t.teardown(() => sup.kill())
    const ready = await waitUntil('READY=1', () => received.find((n) => n.fields.READY === '1'))
    t.match(ready.fields.STATUS, /^1\/2 ready, 1 (backing off|starting)$/)
    const warning = await sup.waitLog('the warning', (r) => r.event === 'systemd' && r.level === 40)
    t.match(
      warning.msg,
      "not every instance ready (after 2000 ms, each one's readiness timeout included)",
    )
  },
)
