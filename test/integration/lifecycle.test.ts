// Ports 24200-24299 belong to this file (test files run in parallel).
import { spawn } from 'node:child_process'
import { readFileSync, statSync, writeFileSync } from 'node:fs'
import { connect, createServer, type AddressInfo, type Socket } from 'node:net'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { processStartTime } from '../../src/process/process-start-time.js'
import {
  accepting,
  alive,
  cli,
  fixture,
  FIXTURE,
  killGroup,
  status,
  Supervisor,
  tempDir,
  waitUntil,
  writeConfig,
} from '../helpers/supervisor.js'

const start = (t: Test, components: Record<string, unknown>) => {
  const dir = tempDir(t)
  const config = writeConfig(dir, components)
  const sup = new Supervisor(config)
  t.teardown(() => sup.kill())
  return { dir, config, sup }
}

const indexOf = (sup: Supervisor, pred: (r: { event?: string; component?: string }) => boolean) =>
  sup.records.findIndex(pred)

t.test(
  'starts dependents after their dependencies are ready, stops them first, and exits 0 on SIGTERM',
  async (t) => {
    const { sup } = start(t, {
      gateway: fixture({ port: 24200, instances: 3, dependsOn: ['discovery'] }),
      discovery: fixture({ port: 24210, instances: 2 }, { READY_DELAY_MS: '300' }),
    })
    await sup.waitLog('all ready', (r) => r.event === 'all-ready')
    const pids = sup.records.filter((r) => r.event === 'spawned').map((r) => r.childPid!)
    t.equal(pids.length, 5)
    const lastDiscoveryReady = Math.max(
      ...[0, 1].map((i) =>
        indexOf(
          sup,
          (r) =>
            r.event === 'ready' &&
            r.component === 'discovery' &&
            (r as { instance?: number }).instance === i,
        ),
      ),
    )
    const firstGatewaySpawn = indexOf(
      sup,
      (r) => r.event === 'spawned' && r.component === 'gateway',
    )
    t.ok(
      lastDiscoveryReady >= 0 && lastDiscoveryReady < firstGatewaySpawn,
      'gateway spawned only after both discovery instances were ready',
    )
    process.kill(sup.pid, 'SIGTERM')
    const { code, signal } = await sup.exited
    t.equal(code, 0, 'exit 0')
    t.equal(signal, null)
    await sup.ended
    t.equal(
      sup.records.at(-1)?.msg,
      'all instances stopped; exiting',
      'the shutdown ran to its end',
    )
    const lastGatewayStopped = Math.max(
      ...sup.records.map((r, i) => (r.event === 'stopped' && r.component === 'gateway' ? i : -1)),
    )
    const firstDiscoveryStopping = indexOf(
      sup,
      (r) => r.event === 'stopping' && r.component === 'discovery',
    )
    t.ok(
      lastGatewayStopped < firstDiscoveryStopping,
      'every gateway stopped before discovery began stopping',
    )
    for (const p of pids) t.notOk(alive(p), `child ${p} is gone`)
    for (const port of [24200, 24201, 24202, 24210, 24211])
      t.notOk(await accepting(port), `port ${port} closed`)
  },
)

t.test('a second SIGINT forces the shutdown', async (t) => {
  const { config, sup } = start(t, {
    slow: fixture(
      { port: 24220, stop: { signal: 'SIGTERM', timeoutMs: 60000 } },
      { IGNORE_TERM: '1' },
    ),
  })
  await sup.waitLog('ready', (r) => r.event === 'ready')
  const pid = (await status(config)).instances[0]!.pid!
  process.kill(sup.pid, 'SIGINT')
  await sup.waitLog('stopping', (r) => r.event === 'stopping')
  await waitUntil('SIGTERM reached the child', () =>
    sup.records.some((r) => r.msg === 'ignoring SIGTERM'),
  )
  process.kill(sup.pid, 'SIGINT')
  const { code } = await sup.exited
  t.equal(code, 1, 'a forced stop is not a clean exit')
  await waitUntil('child killed', () => !alive(pid))
  t.ok(sup.records.some((r) => /second SIGINT/.test(r.msg)))
})

t.test('a second supervisor on the same state dir exits 1 naming the running one', async (t) => {
  const { config, sup } = start(t, { one: fixture({ port: 24230 }) })
  await sup.waitLog('ready', (r) => r.event === 'ready')
  const second = await cli(['start', '-c', config])
  t.equal(second.code, 1)
  t.match(second.err, new RegExp(`another supervisor \\(pid ${sup.pid}\\) is already running`))
  t.equal((await status(config)).instances[0]!.state, 'ready', 'the first one is unaffected')
})

t.test(
  'a supervisor killed with SIGKILL can be started again at once on its state dir',
  async (t) => {
    const dir = tempDir(t)
    const config = writeConfig(dir, { one: fixture({ port: 24235 }) })
    const first = new Supervisor(config)
    t.teardown(() => first.kill())
    await first.waitLog('ready', (r) => r.event === 'ready')
    first.proc.kill('SIGKILL')
    await first.exited
    // Its lock is still there (nobody removed it) and not yet stale: its holder is dead, though.
    const second = new Supervisor(config)
    t.teardown(() => second.kill())
    await second.waitLog('ready again', (r) => r.event === 'ready')
    t.equal(second.stderr.join('\n'), '', 'not refused')
    const third = await cli(['start', '-c', config])
    t.equal(third.code, 1, 'a live holder is still exclusive')
    t.match(third.err, new RegExp(`another supervisor \\(pid ${second.pid}\\) is already running`))
    // Its lock is kept fresh (proper-lockfile's update, every 2 s) for longer than the takeover
    // lock's refresh interval (5 s), and the supervisor lives on.
    const lock = join(dir, 'state', 'supervisor.lock')
    const refreshed = new Set<number>()
    await waitUntil(
      'the state dir lock refreshed 4 times',
      () => {
        refreshed.add(statSync(lock).mtimeMs)
        return refreshed.size >= 5
      },
      30_000,
    )
    t.equal(second.proc.exitCode, null, 'still running')
    t.equal(second.stderr.join('\n'), '', 'nothing on stderr')
  },
)

t.test('what an operator stopped stays stopped across a supervisor restart', async (t) => {
  const dir = tempDir(t)
  const config = writeConfig(dir, { web: fixture({ port: 24240, instances: 2 }) })
  const first = new Supervisor(config)
  t.teardown(() => first.kill())
  await first.waitLog('all ready', (r) => r.event === 'all-ready')
  const r = await cli(['stop', 'web#1', '-c', config])
  t.equal(r.code, 0, r.err)
  t.match(r.out, /web#1: stopped/)
  t.same(JSON.parse(readFileSync(join(dir, 'state/overrides.json'), 'utf8')), {
    stopped: ['web#1'],
  })
  t.notOk(await accepting(24241))
  process.kill(first.pid, 'SIGTERM')
  t.equal((await first.exited).code, 0)

  const second = new Supervisor(config)
  t.teardown(() => second.kill())
  await second.waitLog('all wanted ready', (r) => r.event === 'all-ready')
  const s = await status(config)
  t.match(s.instances, [
    { id: 'web#0', state: 'ready' },
    { id: 'web#1', state: 'stopped', stoppedByOperator: true },
  ])
  t.equal(
    second.count((r) => r.event === 'spawned'),
    1,
    'only web#0 was spawned',
  )
  const started = await cli(['start', 'web#1', '-c', config])
  t.equal(started.code, 0, started.err)
  t.match(started.out, /web#1: ready/)
  t.same(JSON.parse(readFileSync(join(dir, 'state/overrides.json'), 'utf8')), { stopped: [] })
})

t.test('a supervisor killed with SIGKILL leaves no child or grandchild running', async (t) => {
  const dir = tempDir(t)
  const pidfile = join(dir, 'grandchild.pid')
  const config = writeConfig(dir, {
    a: fixture({ port: 24250, instances: 2, stop: { signal: 'SIGTERM', timeoutMs: 500 } }),
    b: fixture(
      { port: 24260, stop: { signal: 'SIGTERM', timeoutMs: 500 } },
      { GRANDCHILD_PIDFILE: pidfile, IGNORE_TERM: '1' },
    ),
  })
  const sup = new Supervisor(config)
  t.teardown(() => sup.kill())
  await sup.waitLog('all ready', (r) => r.event === 'all-ready')
  const pids = (await status(config)).instances.map((i) => i.pid!)
  const grandchild = Number(readFileSync(pidfile, 'utf8'))
  process.kill(sup.pid, 'SIGKILL')
  await sup.exited
  for (const p of [...pids, grandchild]) await waitUntil(`process ${p} gone`, () => !alive(p))
  for (const port of [24250, 24251, 24260]) t.notOk(await accepting(port), `port ${port} closed`)
})

t.test(
  'terminates leftovers recorded in the state dir before binding ports, and says so',
  async (t) => {
    const dir = tempDir(t)
    const config = writeConfig(dir, { web: fixture({ port: 24270 }) })
    // A leftover of a previous supervisor: serving our port in its own process group, recorded.
    const leftover = spawn(process.execPath, [FIXTURE], {
      env: { ...process.env, PORT: '24270' },
      detached: true,
      stdio: 'ignore',
    })
    t.teardown(() => killGroup(leftover.pid!))
    await waitUntil('leftover serving', () => accepting(24270))
    const { mkdirSync } = await import('node:fs')
    mkdirSync(join(dir, 'state'))
    // And a record whose pid is now someone else's (start time differs): it must be left alone.
    const bystander = spawn(process.execPath, ['-e', 'setInterval(()=>{},1000)'], {
      detached: true,
      stdio: 'ignore',
    })
    t.teardown(() => killGroup(bystander.pid!))
    writeFileSync(
      join(dir, 'state/pids.json'),
      JSON.stringify([
        {
          id: 'web#0',
          pid: leftover.pid,
          startTime: processStartTime(leftover.pid!),
          port: 24270,
          stopSignal: 'SIGTERM',
          stopTimeoutMs: 2000,
        },
        {
          id: 'web#1',
          pid: bystander.pid,
          startTime: 'not-its-start-time',
          port: 24271,
          stopSignal: 'SIGTERM',
          stopTimeoutMs: 2000,
        },
      ]),
    )
    const sup = new Supervisor(config)
    t.teardown(() => sup.kill())
    const said = await sup.waitLog('leftover', (r) => r.event === 'leftover')
    t.match(said.msg, new RegExp(`terminated leftover web#0 \\(pid ${leftover.pid}, port 24270\\)`))
    await sup.waitLog('ready', (r) => r.event === 'ready')
    t.notOk(alive(leftover.pid!), 'leftover gone')
    t.ok(alive(bystander.pid!), 'a process that merely reused a recorded pid is left alone')
    t.not((await status(config)).instances[0]!.pid, leftover.pid)
    t.notOk(
      sup.records.some((r) => r.event === 'exited'),
      'the new instance never hit a busy port',
    )
  },
)

t.test(
  'a port held by a foreign process: that instance backs off naming the holder, others run',
  async (t) => {
    const foreign = createServer()
    await new Promise<void>((r) => foreign.listen(24281, '127.0.0.1', () => r()))
    t.teardown(() => foreign.close())
    const { config, sup } = start(t, {
      web: fixture({ port: 24280, instances: 2, backoff: { initialMs: 50, maxMs: 200 } }),
    })
    const blocked = await sup.waitLog(
      'port in use',
      (r) => r.event === 'exited' && r.instance === 1,
    )
    t.match(blocked.msg, new RegExp(`port 24281 is in use by pid ${process.pid}`))
    t.match(blocked.exit, { reason: 'port-in-use' })
    await sup.waitLog('web#0 ready', (r) => r.event === 'ready' && r.instance === 0)
    const s = await status(config)
    t.match(s.instances[0], { state: 'ready' })
    t.match(s.instances[1], { reason: /port 24281 is in use/ })
    t.ok(sup.count((r) => r.event === 'backoff' && r.instance === 1) >= 1, 'backs off')
    t.equal(
      sup.count((r) => r.event === 'spawned' && r.instance === 1),
      0,
      'never spawned onto a busy port',
    )
    await new Promise<void>((r) => foreign.close(() => r()))
    await sup.waitLog(
      'web#1 ready once the port is free',
      (r) => r.event === 'ready' && r.instance === 1,
      60_000,
    )
    t.notOk(
      sup.records.some((r) => r.event === 'failed'),
      'port conflicts do not count as a crash loop',
    )
  },
)

t.test(
  'a port held by a connection rather than a listener: the log says so, the instance waits it out',
  async (t) => {
    // An outgoing connection takes a local port from the kernel's ephemeral range; an instance
    // configured on that very port finds it held. The server side closes first at the end, so
    // that the TIME_WAIT stays on the server's port, not on the instance's.
    const server = createServer()
    const accepted = new Promise<Socket>((r) => server.once('connection', r))
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
    t.teardown(() => server.close())
    const { port: serverPort } = server.address() as AddressInfo
    const client = connect({ host: '127.0.0.1', port: serverPort })
    t.teardown(() => client.destroy())
    await new Promise((r) => client.once('connect', r))
    const port = client.localPort!
    const serverSide = await accepted
    const { sup } = start(t, { web: fixture({ port, backoff: { initialMs: 50, maxMs: 200 } }) })
    const warning = await sup.waitLog('config warning', (r) => r.event === 'config-warning')
    t.match(warning.msg, new RegExp(`^port ${port} lies in the ephemeral port range`))
    const blocked = await sup.waitLog('port in use', (r) => r.event === 'exited')
    t.match(
      blocked.msg,
      new RegExp(
        `port ${port} is in use by a connection, not a listener: it lies in the ephemeral port range`,
      ),
    )
    const clientClosed = new Promise((r) => client.once('close', r))
    serverSide.destroy()
    client.end()
    await clientClosed
    await sup.waitLog('ready once the connection is gone', (r) => r.event === 'ready', 60_000)
  },
)

t.test(
  'a program that cannot be spawned fails that instance with the reason; others run',
  async (t) => {
    const dir = tempDir(t)
    const notExecutable = join(dir, 'not-executable.sh')
    writeFileSync(notExecutable, '#!/bin/sh\n', { mode: 0o644 })
    const { config, sup } = start(t, {
      missing: { command: ['/nonexistent/bin/server'], port: 24290 },
      denied: { command: [notExecutable], port: 24291 },
      fine: fixture({ port: 24292 }),
    })
    await sup.waitLog('fine ready', (r) => r.event === 'ready' && r.component === 'fine')
    await sup.waitLog('missing failed', (r) => r.event === 'failed' && r.component === 'missing')
    await sup.waitLog('denied failed', (r) => r.event === 'failed' && r.component === 'denied')
    const s = await status(config)
    t.match(
      s.instances.find((i) => i.id === 'missing#0'),
      {
        state: 'failed',
        reason: /cannot execute \/nonexistent\/bin\/server: no such file \(ENOENT\)/,
      },
    )
    t.match(
      s.instances.find((i) => i.id === 'denied#0'),
      { state: 'failed', reason: /permission denied \(EACCES\)/ },
    )
    t.match(
      s.instances.find((i) => i.id === 'fine#0'),
      { state: 'ready' },
    )
  },
)

t.test('the control socket is private to its owner', async (t) => {
  const { dir, sup } = start(t, { one: fixture({ port: 24295 }) })
  await sup.waitLog('ready', (r) => r.event === 'ready')
  t.equal(statSync(join(dir, 'state/tandem.sock')).mode & 0o777, 0o600)
})

t.test(
  'a one-shot component that exits 0 counts as done: all ready is logged and /ready answers 200',
  async (t) => {
    const dir = tempDir(t)
    const config = writeConfig(
      dir,
      {
        migrate: {
          command: [process.execPath, '-e', 'console.log("migrated")'],
          readiness: { type: 'none' },
          restart: 'on-failure',
        },
        web: fixture({ port: 24296, dependsOn: ['migrate'] }),
      },
      { control: { http: { port: 24297 } } },
    )
    const sup = new Supervisor(config)
    t.teardown(() => sup.kill())
    await sup.waitLog('all ready', (r) => r.event === 'all-ready')
    // Its line is logged, though not necessarily before all-ready: after an exit the supervisor
    // waits at most 100 ms for the pipes' last bytes (a loaded machine can take longer; CI did).
    t.ok(
      await sup.waitLog(
        'the one-shot line',
        (r) => r.component === 'migrate' && r.msg === 'migrated',
      ),
    )
    const ready = await fetch('http://127.0.0.1:24297/ready')
    t.equal(ready.status, 200, JSON.stringify(await ready.json()))
  },
)

t.test(
  'tandem shutdown during start-up (leftovers still being stopped): exits 0, starts nothing',
  async (t) => {
    const dir = tempDir(t)
    const config = writeConfig(dir, { web: fixture({ port: 24272 }) })
    // A leftover that ignores SIGTERM holds start-up for its whole stop timeout (3 s).
    const leftover = spawn(
      process.execPath,
      ['-e', "process.on('SIGTERM', () => {}); setInterval(() => {}, 1000)"],
      { detached: true, stdio: 'ignore' },
    )
    t.teardown(() => killGroup(leftover.pid!))
    const { mkdirSync } = await import('node:fs')
    mkdirSync(join(dir, 'state'))
    writeFileSync(
      join(dir, 'state/pids.json'),
      JSON.stringify([
        {
          id: 'web#0',
          pid: leftover.pid,
          startTime: processStartTime(leftover.pid!),
          port: 24272,
          stopSignal: 'SIGTERM',
          stopTimeoutMs: 3000,
        },
      ]),
    )
    const sup = new Supervisor(config)
    t.teardown(() => sup.kill())
    await sup.waitLog('start', (r) => r.event === 'start')
    const r = await cli(['shutdown', '-c', config])
    t.equal(r.code, 0, r.err)
    t.same(await sup.exited, { code: 0, signal: null })
    t.notOk(
      sup.records.some((x) => x.event === 'spawned'),
      'no instance spawned after the shutdown',
    )
    t.ok(
      sup.records.some((x) => x.event === 'shutdown'),
      'the shutdown is logged',
    )
    t.notOk(alive(leftover.pid!), 'the leftover was still terminated')
    t.notOk(await accepting(24272), 'nothing listens on the port')
  },
)
