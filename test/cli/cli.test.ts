// Ports 24300-24399 belong to this file (test files run in parallel).
import { spawn } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import {
  cli,
  fixture,
  FIXTURE,
  ROOT,
  status,
  Supervisor,
  tempDir,
  writeConfig,
  BIN,
  killGroup,
  waitUntil,
} from '../helpers/supervisor.js'

t.test('commands that need a supervisor say none runs and exit 1', async (t) => {
  const config = writeConfig(tempDir(t), { web: fixture({ port: 24300 }) })
  for (const args of [
    ['status'],
    ['stop', 'web'],
    ['restart', 'all'],
    ['start', 'web'],
    ['shutdown'],
    ['upgrade'],
    ['reload'],
  ]) {
    const r = await cli([...args, '-c', config])
    t.equal(r.code, 1, `${args[0]}: exit 1`)
    t.match(r.err, /no supervisor is running for state dir .*state/, `${args[0]}: says why`)
  }
})

t.test('a bad config exits 78 listing every problem, and starts nothing', async (t) => {
  const dir = tempDir(t)
  const config = join(dir, 'tandem.json')
  writeFileSync(
    config,
    JSON.stringify({
      stateDir: 'state',
      components: {
        a: { command: [], port: 80000, bogus: 1 },
        b: { command: ['x'], dependsOn: ['nope'] },
      },
    }),
  )
  const r = await cli(['start', '-c', config])
  t.equal(r.code, 78)
  t.match(r.err, /invalid config .*tandem\.json/)
  t.match(r.err, /components\.a\.command: Too small/)
  t.match(r.err, /components\.a\.port: Too big.*\(got 80000\)/)
  t.match(r.err, /components\.a: Unrecognized key: "bogus"/)
  t.equal(r.out, '', 'no log line: nothing started')
  t.notOk(existsSync(join(dir, 'state')), 'no state dir created')
  const v = await cli(['validate', '-c', config])
  t.equal(v.code, 78)
})

t.test('invalid JSON names line and column', async (t) => {
  const config = join(tempDir(t), 'tandem.json')
  writeFileSync(config, '{\n  "components": {\n    "a": { "command": ["x"], }\n  }\n}\n')
  const r = await cli(['validate', '-c', config])
  t.equal(r.code, 78)
  t.match(r.err, /invalid JSON at line 3 column \d+/)
})

t.test('the config path comes from -c, then TANDEM_CONFIG, then tandem.json', async (t) => {
  const dir = tempDir(t)
  const config = writeConfig(dir, { web: fixture({ port: 24310, instances: 2 }) })
  const fromEnv = await cli(['validate'], { TANDEM_CONFIG: config })
  t.equal(fromEnv.code, 0, fromEnv.err)
  t.match(fromEnv.out, /web#1 +port 24311/)
  const missing = await cli(['validate', '-c', join(dir, 'nope.json')])
  t.equal(missing.code, 78)
  t.match(missing.err, /nope\.json:\n\s+\(root\): cannot read the file/)
})

t.test('validate prints every instance with its port', async (t) => {
  const r = await cli(['validate', '-c', join(ROOT, 'config.example.json')])
  t.equal(r.code, 0, r.err)
  t.match(r.out, /is valid: node \S+, 4 instances/)
  for (const [id, port] of [
    ['discovery#0', 7553],
    ['gateway#0', 7554],
    ['gateway#1', 7555],
    ['gateway#2', 7556],
  ] as const) {
    t.match(r.out, new RegExp(`${id} +port ${port}`))
  }
  t.equal(r.err, '', 'no warning for ports below the ephemeral range')
})

t.test('validate warns about fixed ports inside the kernel ephemeral port range', async (t) => {
  const [lo, hi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
    .trim()
    .split(/\s+/)
    .map(Number)
  // Only validated, never bound: a port at the range's low end, next to one below it.
  const config = writeConfig(tempDir(t), { web: fixture({ ports: [lo! - 1, lo!], instances: 2 }) })
  const r = await cli(['validate', '-c', config])
  t.equal(r.code, 0, 'a warning, not an error')
  t.equal(
    r.err.trim(),
    `warning: port ${lo} lies in the ephemeral port range ${lo}-${hi} (net.ipv4.ip_local_port_range): outgoing connections can hold it and make a start fail with the port in use; choose ports outside it, or reserve them with net.ipv4.ip_local_reserved_ports`,
  )
})

t.test('status, stop, start, restart and shutdown through the control socket', async (t) => {
  const dir = tempDir(t)
  const config = writeConfig(dir, {
    api: fixture({ port: 24320, instances: 2 }),
    worker: { command: [process.execPath, FIXTURE], env: { NO_LISTEN: '1' }, dependsOn: ['api'] },
  })
  const sup = new Supervisor(config)
  t.teardown(() => sup.kill())
  await sup.waitLog('all ready', (r) => r.event === 'all-ready')

  const s = await status(config)
  t.match(s, {
    role: 'standalone',
    instances: [
      { id: 'api#0', port: 24320, state: 'ready', restarts: 0 },
      { id: 'api#1', port: 24321 },
      { id: 'worker#0', state: 'ready' },
    ],
  })
  for (const i of s.instances) t.ok(i.pid! > 0 && i.uptimeMs! >= 0, `${i.id} has pid and uptime`)
  const table = await cli(['status', '-c', config])
  t.match(table.out, /INSTANCE +PORT +PID +STATE +RESTARTS +UPTIME/)
  t.match(table.out, /api#1 +24321 +\d+ +ready/)

  const bad = await cli(['stop', 'api#7', 'nope', '-c', config])
  t.equal(bad.code, 2, 'a bad target is a usage error')
  t.match(bad.err, /unknown target "api#7": api has instances #0 to #1/)
  t.match(bad.err, /unknown target "nope"/)
  t.equal(
    (await status(config)).instances[0]!.state,
    'ready',
    'nothing was stopped on a bad target',
  )

  const before = (await status(config)).instances.map((i) => i.pid)
  const restarted = await cli(['restart', 'api', '--json', '-c', config])
  t.equal(restarted.code, 0, restarted.err)
  const after = JSON.parse(restarted.out) as {
    instances: { id: string; state: string; pid: number; restarts: number }[]
  }
  t.match(after.instances, [
    { id: 'api#0', state: 'ready', restarts: 1 },
    { id: 'api#1', state: 'ready', restarts: 1 },
  ])
  t.not(after.instances[0]!.pid, before[0])
  // One at a time: api#1 went down only after the new api#0 was ready.
  const newPid0 = after.instances[0]!.pid
  const ready0 = sup.records.findIndex((r) => r.event === 'ready' && r.childPid === newPid0)
  const stopping1 = sup.records.findIndex(
    (r) => r.event === 'stopping' && r.component === 'api' && r.instance === 1,
  )
  t.ok(ready0 >= 0 && ready0 < stopping1, 'rolled one instance at a time')
  t.equal((await status(config)).instances[2]!.pid, before[2], 'worker untouched')

  const stopAll = await cli(['stop', 'all', '-c', config])
  t.equal(stopAll.code, 0, stopAll.err)
  t.same(
    (await status(config)).instances.map((i) => i.state),
    ['stopped', 'stopped', 'stopped'],
  )
  const startAll = await cli(['start', 'all', '-c', config])
  t.equal(startAll.code, 0, startAll.err)
  t.same(
    (await status(config)).instances.map((i) => i.state),
    ['ready', 'ready', 'ready'],
  )

  const down = await cli(['shutdown', '-c', config])
  t.equal(down.code, 0, down.err)
  t.match(down.out, new RegExp(`supervisor ${sup.pid} is shutting down`))
  t.equal((await sup.exited).code, 0)
  await sup.ended
  t.equal(sup.records.at(-1)?.msg, 'all instances stopped; exiting', 'the shutdown ran to its end')
})

t.test('usage errors exit 2; --help exits 0', async (t) => {
  t.equal((await cli(['frobnicate'])).code, 2)
  t.equal((await cli(['stop'])).code, 2, 'stop needs a target')
  const help = await cli(['--help'])
  t.equal(help.code, 0)
  t.match(help.out, /start.*status.*stop.*restart.*shutdown.*validate/s)
})

t.test(
  'a state dir too long for a Unix socket is a config error, before anything starts',
  async (t) => {
    const dir = tempDir(t)
    const config = writeConfig(
      dir,
      { web: fixture({ port: 24330 }) },
      { stateDir: 'x'.repeat(100) },
    )
    for (const cmd of ['start', 'validate']) {
      const r = await cli([cmd, '-c', config])
      t.equal(r.code, 78, cmd)
      t.match(
        r.err,
        /stateDir: the control socket .* would be \d+ bytes long; Unix sockets allow at most 103/,
      )
    }
    t.notOk(existsSync(join(dir, 'x'.repeat(100))), 'nothing created')
  },
)

t.test('status --watch refreshes until SIGINT; a bad interval is a usage error', async (t) => {
  const config = writeConfig(tempDir(t), { web: fixture({ port: 24340 }) })
  const sup = new Supervisor(config)
  t.teardown(() => sup.kill())
  await sup.waitLog('ready', (r) => r.event === 'ready')
  const watcher = spawn(process.execPath, [BIN, 'status', '--watch', '0.2', '-c', config], {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  })
  t.teardown(() => killGroup(watcher.pid!))
  let out = ''
  watcher.stdout.on('data', (d) => (out += d))
  const exited = new Promise<number | null>((r) => watcher.once('exit', (code) => r(code)))
  await waitUntil(
    'three refreshes',
    () => (out.match(/web#0 +24340 +\d+ +ready/g) ?? []).length >= 3,
  )
  t.match(out, /every 0\.2s, Ctrl-C to stop/)
  watcher.kill('SIGINT')
  t.equal(await exited, 0, 'Ctrl-C ends it with exit 0')
  const bad = await cli(['status', '--watch', 'often', '-c', config])
  t.equal(bad.code, 2)
  t.match(bad.err, /--watch expects a number of seconds of at least 0\.1, got "often"/)
})
