// Ports 24100-24199 belong to this file (test files run in parallel).
import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import {
  accepting,
  alive,
  cli,
  fixture,
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

t.test('restarts a crashed instance on the same port', async (t) => {
  const { config, sup } = start(t, { web: fixture({ port: 24100, instances: 2 }) })
  await sup.waitLog('all ready', (r) => r.event === 'all-ready')
  const before = await status(config)
  const victim = before.instances[0]!
  const sibling = before.instances[1]!
  process.kill(victim.pid!, 'SIGKILL')
  await sup.waitLog(
    'web#0 ready again',
    (r) => r.event === 'ready' && r.instance === 0 && r.childPid !== victim.pid,
  )
  const after = await status(config)
  t.equal(after.instances[0]!.port, 24100, 'same port')
  t.not(after.instances[0]!.pid, victim.pid, 'new process')
  t.equal(after.instances[0]!.restarts, 1)
  t.match(after.instances[0]!.lastExit, { reason: 'exited', signal: 'SIGKILL' })
  t.equal(after.instances[1]!.pid, sibling.pid, 'the sibling was not touched')
  t.equal(after.instances[1]!.restarts, 0)
  t.ok(await accepting(24100), 'serving again')
})

t.test(
  'puts a crash-looping instance in failed with its last exit and stderr, siblings unaffected',
  async (t) => {
    const { config, sup } = start(t, {
      loop: fixture(
        {
          port: 24110,
          backoff: { initialMs: 10, maxMs: 50 },
          crashLoop: { maxExits: 3, windowMs: 60000 },
        },
        {
          CRASH_AFTER_MS: '50',
          EXIT_CODE: '3',
          STDERR_LINES: 'boom: database unreachable|at connect()',
        },
      ),
      steady: fixture({ port: 24111 }),
    })
    const failed = await sup.waitLog('loop failed', (r) => r.event === 'failed')
    t.equal(failed.level, 50, 'logged as an error')
    t.match(failed.msg, /crash loop: 3 failures within 60000 ms, last: exit code 3/)
    t.match(failed.stderrTail, ['boom: database unreachable', 'at connect()'])
    const s = await status(config)
    t.match(
      s.instances.find((i) => i.id === 'loop#0'),
      { state: 'failed', lastExit: { code: 3 } },
    )
    t.match(
      s.instances.find((i) => i.id === 'steady#0'),
      { state: 'ready', restarts: 0 },
    )
    t.equal(
      sup.count((r) => r.event === 'spawned' && r.component === 'loop'),
      3,
      'no start after failed',
    )
  },
)

t.test('an operator restart clears failed', async (t) => {
  const flagDir = tempDir(t)
  const flag = join(flagDir, 'crash')
  const { config, sup } = start(t, {
    app: fixture({
      port: 24120,
      command: [
        process.execPath,
        '-e',
        `if (require('fs').existsSync(${JSON.stringify(flag)})) process.exit(4); require(${JSON.stringify(join(process.cwd(), 'test/fixtures/server.js'))})`,
      ],
      crashLoop: { maxExits: 2, windowMs: 60000 },
      backoff: { initialMs: 10 },
    }),
  })
  await sup.waitLog('ready', (r) => r.event === 'ready')
  writeFileSync(flag, '') // from now on every start exits 4 at once
  const pid = (await status(config)).instances[0]!.pid!
  process.kill(pid, 'SIGKILL')
  await sup.waitLog('failed', (r) => r.event === 'failed')
  rmSync(flag)
  const r = await cli(['restart', 'app', '-c', config])
  t.equal(r.code, 0, r.err)
  t.match(r.out, /app#0: ready/)
  t.equal((await status(config)).instances[0]!.state, 'ready')
})

t.test('kills a child that ignores SIGTERM after stop.timeoutMs', async (t) => {
  const { config, sup } = start(t, {
    stubborn: fixture(
      { port: 24130, stop: { signal: 'SIGTERM', timeoutMs: 300 } },
      { IGNORE_TERM: '1' },
    ),
  })
  await sup.waitLog('ready', (r) => r.event === 'ready')
  const pid = (await status(config)).instances[0]!.pid!
  const r = await cli(['stop', 'stubborn#0', '--json', '-c', config])
  t.equal(r.code, 0, r.err)
  const stopped = await sup.waitLog('stopped', (r) => r.event === 'stopped')
  t.match(stopped.exit, { reason: 'stopped', signal: 'SIGKILL', killedAfterTimeout: true })
  t.notOk(alive(pid), 'the process is gone')
  t.ok(
    sup.records.some((r) => r.msg === 'ignoring SIGTERM'),
    'it did get SIGTERM first',
  )
})

t.test('stopping an instance stops its grandchildren too', async (t) => {
  const pidfile = join(tempDir(t), 'grandchild.pid')
  const { config, sup } = start(t, {
    parent: fixture(
      { port: 24140, stop: { signal: 'SIGTERM', timeoutMs: 300 } },
      { GRANDCHILD_PIDFILE: pidfile },
    ),
  })
  await sup.waitLog('ready', (r) => r.event === 'ready')
  const grandchild = Number(readFileSync(pidfile, 'utf8'))
  t.ok(alive(grandchild), 'grandchild runs')
  t.equal((await cli(['stop', 'parent', '-c', config])).code, 0)
  await waitUntil('grandchild gone', () => !alive(grandchild))
  t.pass('grandchild (which ignores SIGTERM) was killed with its group')
})

t.test('a crashed child takes its grandchildren with it before the restart', async (t) => {
  const pidfile = join(tempDir(t), 'grandchild.pid')
  const { config, sup } = start(t, {
    parent: fixture(
      { port: 24150, stop: { signal: 'SIGTERM', timeoutMs: 300 } },
      { GRANDCHILD_PIDFILE: pidfile },
    ),
  })
  await sup.waitLog('ready', (r) => r.event === 'ready')
  const first = Number(readFileSync(pidfile, 'utf8'))
  process.kill((await status(config)).instances[0]!.pid!, 'SIGKILL')
  await sup.waitLog(
    'ready again',
    (r) => r.event === 'ready' && sup.count((x) => x.event === 'ready') === 2,
  )
  t.notOk(alive(first), 'the old grandchild is gone')
})

t.test(
  'restart "never" leaves a crashed instance failed; a clean exit under on-failure is stopped',
  async (t) => {
    const { config, sup } = start(t, {
      once: fixture({ port: 24160, restart: 'never' }, { CRASH_AFTER_MS: '50', EXIT_CODE: '2' }),
      done: fixture({ port: 24161 }, { CRASH_AFTER_MS: '50', EXIT_CODE: '0' }),
    })
    await sup.waitLog('once failed', (r) => r.event === 'failed' && r.component === 'once')
    await sup.waitLog('done stopped', (r) => r.event === 'stopped' && r.component === 'done')
    const s = await status(config)
    t.match(
      s.instances.find((i) => i.id === 'once#0'),
      { state: 'failed', reason: /exit code 2.*"never"/ },
    )
    t.match(
      s.instances.find((i) => i.id === 'done#0'),
      { state: 'stopped', restarts: 0 },
    )
  },
)

t.test(
  'a start that is not ready within the readiness timeout counts as a failed start',
  async (t) => {
    const { config, sup } = start(t, {
      mute: fixture(
        {
          port: 24170,
          readiness: { type: 'tcp', timeoutMs: 300, intervalMs: 20 },
          crashLoop: { maxExits: 2, windowMs: 60000 },
          backoff: { initialMs: 10 },
        },
        { NO_LISTEN: '1' },
      ),
    })
    const exited = await sup.waitLog('not ready', (r) => r.event === 'exited')
    t.match(exited.exit, { reason: 'not-ready' })
    t.match(exited.msg, /was not ready within 300 ms \(tcp readiness/)
    await sup.waitLog('failed', (r) => r.event === 'failed')
    t.equal((await status(config)).instances[0]!.state, 'failed')
  },
)

t.test('ipc and http readiness', async (t) => {
  const { config, sup } = start(t, {
    viaIpc: fixture(
      { port: 24180, readiness: { type: 'ipc', timeoutMs: 20000 } },
      { IPC_READY: '1', READY_DELAY_MS: '100' },
    ),
    viaHttp: fixture({ port: 24181, readiness: { type: 'http', path: '/health' } }),
  })
  await sup.waitLog('all ready', (r) => r.event === 'all-ready')
  const s = await status(config)
  t.same(
    s.instances.map((i) => i.state),
    ['ready', 'ready'],
  )
  t.ok(
    sup.records.findIndex((r) => r.msg.includes('listening on 24180')) <
      sup.records.findIndex((r) => r.event === 'ready' && r.component === 'viaIpc'),
    'ipc: ready only after the child said so',
  )
})
