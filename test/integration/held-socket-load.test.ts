// Listening sockets held by tandem under a real load (issue 17): a fixed-rate load generator
// (bench/fixed-rate-load.js, its own process, one new connection per request) straight at the
// instance's port, no load balancer in between; every request's outcome is counted.
// Ports 29400-29419 belong to this file.
import { spawn } from 'node:child_process'
import { readdirSync, readlinkSync } from 'node:fs'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { createInterface } from 'node:readline'
import t, { type Test } from 'tap'
import {
  cli,
  FIXTURE,
  killGroup,
  ROOT,
  sleep,
  status,
  Supervisor,
  tempDir,
  waitUntil,
  writeConfig,
} from '../helpers/supervisor.js'

const SOCKET_SERVER = join(ROOT, 'test/fixtures/socket-server.js')
const LOAD = join(ROOT, 'bench/fixed-rate-load.js')
const RATE = 100

interface LoadSummary {
  sent: number
  ok: number
  failures: Record<string, number>
  latencyMs: { p50: number; p99: number; max: number }
  /** [due at (ms, wall scale), latency ms, outcome] */
  samples: [number, number, string][]
}

const wall = () => performance.timeOrigin + performance.now()

/** Starts the load generator on `port`; stop() ends it and resolves with its summary. */
const startLoad = async (t: Test, port: number) => {
  const proc = spawn(process.execPath, [LOAD, '--port', String(port), '--rate', String(RATE)], {
    detached: true,
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  t.teardown(() => killGroup(proc.pid!))
  let out = ''
  proc.stdout.setEncoding('utf8').on('data', (d: string) => (out += d))
  const closed = new Promise<void>((r) => proc.once('close', () => r()))
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: proc.stderr }).once('line', (l) =>
      l.startsWith('started') ? resolve() : reject(new Error(`load generator: ${l}`)),
    )
  })
  return {
    stop: async (): Promise<LoadSummary> => {
      proc.stdin.end()
      await closed
      return JSON.parse(out) as LoadSummary
    },
  }
}

const start = (t: Test, components: Record<string, unknown>) => {
  const dir = tempDir(t)
  const config = writeConfig(dir, components)
  const sup = new Supervisor(config)
  t.teardown(() => sup.kill())
  return { dir, config, sup }
}

const readyPid = async (config: string, id: string, not?: number): Promise<number> =>
  waitUntil(`${id} ready${not ? ` with a pid other than ${not}` : ''}`, async () => {
    const i = (await status(config)).instances.find((x) => x.id === id)
    return i?.state === 'ready' && i.pid !== undefined && i.pid !== not && i.pid
  })

/** The inodes of the sockets among a process's fds 3 and up (0-2: its stdio, socketpairs). */
const socketInodes = (pid: number): string[] => {
  const out: string[] = []
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    if (Number(fd) < 3) continue
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))
      if (m) out.push(m[1]!)
    } catch {
      // closed meanwhile
    }
  }
  return out
}

/**
 * SIGKILL at a moment the process holds no accepted connection: stopped (SIGSTOP) it accepts
 * nothing more, so what its fds show then is what dies with it: any socket besides the listening
 * one it inherited as fd 3 (the fixture has no other: readiness http, no IPC channel). If it
 * holds one, it runs on for a few ms to finish it, and is looked at again. A connection a
 * process had accepted dies with it whatever holds the listening socket (the kernel resets it);
 * what the held socket saves is every connection not yet accepted, and that is what is counted.
 */
const killIdle = async (pid: number): Promise<void> => {
  const listener = readlinkSync(`/proc/${pid}/fd/3`).replace(/^socket:\[(\d+)\]$/, '$1')
  for (let attempt = 0; attempt < 200; attempt++) {
    process.kill(pid, 'SIGSTOP')
    if (socketInodes(pid).every((inode) => inode === listener)) break
    process.kill(pid, 'SIGCONT')
    await sleep(5)
  }
  killGroup(pid)
}

/** Requests due inside any of the windows [from, to]. */
const dueWithin = (s: LoadSummary, windows: [number, number][]) =>
  s.samples.filter(([at]) => windows.some(([from, to]) => at >= from && at <= to))

const socketWeb = (port: number, extra: Record<string, unknown> = {}) => ({
  command: [process.execPath, SOCKET_SERVER],
  port,
  socket: { activation: 'node' },
  readiness: { type: 'http', path: '/', intervalMs: 10 },
  stop: { signal: 'SIGTERM', timeoutMs: 5000 },
  backoff: { initialMs: 0, maxMs: 20 },
  crashLoop: { maxExits: 1000, windowMs: 1000 },
  ...extra,
})

t.test(
  'SIGKILLed 20 times under a fixed-rate load, an instance with a held socket refuses and resets no connection',
  async (t) => {
    const { config, sup } = start(t, { web: socketWeb(29400) })
    await sup.waitLog('ready', (r) => r.event === 'ready')
    let pid = await readyPid(config, 'web#0')
    const load = await startLoad(t, 29400)
    const restarts: [number, number][] = []
    for (let i = 0; i < 20; i++) {
      const readies = sup.count((r) => r.event === 'ready')
      const killedAt = wall()
      await killIdle(pid)
      // The next process's `ready` line: its time (the supervisor's clock, the same host's) ends
      // the restart.
      await sup.waitLog(
        'the next process ready',
        () => sup.count((r) => r.event === 'ready') > readies,
      )
      const ready = sup.records.filter((r) => r.event === 'ready').at(-1)!
      restarts.push([killedAt, ready.time as number])
      pid = ready.childPid!
    }
    const s = await load.stop()
    t.same(s.failures, {}, `no request failed (${s.ok} of ${s.sent} served)`)
    t.equal(s.ok, s.sent)
    const during = dueWithin(s, restarts)
    t.ok(
      during.length >= 20,
      `${during.length} requests were due while the instance was down or starting`,
    )
    // The rest were due after a `ready` line: they may still have waited for the new process to
    // work through the backlog.
    const waits = during.map(([, ms]) => ms).sort((a, b) => a - b)
    t.comment(
      `${s.sent} requests at ${RATE}/s; latency p50 ${s.latencyMs.p50} ms, p99 ${s.latencyMs.p99} ms, max ${s.latencyMs.max} ms; requests due during the 20 restarts: ${during.length}, their latency p50 ${waits[Math.floor(waits.length / 2)]} ms, max ${waits.at(-1)} ms`,
    )
    t.equal(
      sup.count((r) => r.event === 'failed'),
      0,
    )
  },
)

t.test(
  'upgrade --all of a one-instance component with a held socket fails no request under load',
  async (t) => {
    // Each answer takes 50 ms: the old process has requests in progress when its stop signal
    // comes, and finishes them while new connections wait for the new process.
    const env = { VERSION: 'v1', RESPONSE_DELAY_MS: '50' }
    const web = socketWeb(29401, { env })
    const { dir, config, sup } = start(t, { web })
    await sup.waitLog('ready', (r) => r.event === 'ready')
    const before = await readyPid(config, 'web#0')
    const load = await startLoad(t, 29401)
    // Load on the old process first (time passing is the point here, not a condition; the
    // requests it served are checked below).
    await sleep(1000)
    writeConfig(dir, { web: { ...web, env: { ...env, VERSION: 'v2' } } })
    const from = wall()
    const up = await cli(['upgrade', '--all', '-c', config])
    const to = wall()
    t.equal(up.code, 0, up.err)
    const after = await readyPid(config, 'web#0')
    t.not(after, before, 'a new process serves')
    await sleep(500)
    const s = await load.stop()
    t.same(s.failures, {}, `no request failed (${s.ok} of ${s.sent} served)`)
    t.ok(
      s.samples.filter(([at]) => at < from).length >= 50,
      'the old process served the load before the upgrade',
    )
    const during = dueWithin(s, [[from, to]])
    t.ok(during.length >= 5, `${during.length} requests were due during the upgrade`)
    t.comment(
      `upgrade took ${Math.round(to - from)} ms; latency over the run p50 ${s.latencyMs.p50} ms, p99 ${s.latencyMs.p99} ms, max ${s.latencyMs.max} ms`,
    )
    const at = (pred: (r: (typeof sup.records)[number]) => boolean) =>
      sup.records.find(pred)?.time as number | undefined
    const stopping = at((r) => r.event === 'stopping' && r.childPid === before)
    t.comment(
      `old stopping -> stopped ${(at((r) => r.event === 'stopped' && r.childPid === before) ?? NaN) - (stopping ?? NaN)} ms, -> new spawned ${(at((r) => r.event === 'spawned' && r.childPid === after) ?? NaN) - (stopping ?? NaN)} ms, -> new ready ${(at((r) => r.event === 'ready' && r.childPid === after) ?? NaN) - (stopping ?? NaN)} ms`,
    )
    t.match(
      sup.records.find((r) => r.event === 'stopped' && r.childPid === before),
      { exit: { reason: 'stopped', code: 0, killedAfterTimeout: false } },
      'the old process finished its requests and exited by itself',
    )
  },
)

t.test(
  'upgrade --all hands over an instance ready by IPC: the old process serves until the new one is ready',
  async (t) => {
    const env = { VERSION: 'v1', RESPONSE_DELAY_MS: '50', IPC_READY: '1' }
    const web = socketWeb(29403, { env, readiness: { type: 'ipc' } })
    const { dir, config, sup } = start(t, { web })
    await sup.waitLog('ready', (r) => r.event === 'ready')
    const before = await readyPid(config, 'web#0')
    const load = await startLoad(t, 29403)
    await sleep(1000)
    writeConfig(dir, { web: { ...web, env: { ...env, VERSION: 'v2' } } })
    const from = wall()
    const up = await cli(['upgrade', '--all', '-c', config])
    const to = wall()
    t.equal(up.code, 0, up.err)
    const after = await readyPid(config, 'web#0')
    t.not(after, before, 'a new process serves')
    const retired = await sup.waitLog(
      'the old process retired',
      (r) => r.event === 'retired' && r.childPid === before,
    )
    await sleep(500)
    const s = await load.stop()
    t.same(s.failures, {}, `no request failed (${s.ok} of ${s.sent} served)`)
    const during = dueWithin(s, [[from, to]])
    t.ok(during.length >= 5, `${during.length} requests were due during the upgrade`)
    t.comment(
      `upgrade took ${Math.round(to - from)} ms; latency over the run p50 ${s.latencyMs.p50} ms, p99 ${s.latencyMs.p99} ms, max ${s.latencyMs.max} ms`,
    )
    const order = sup.records
      .filter(
        (r) =>
          (r.childPid === before && ['retired', 'stopping', 'stopped'].includes(r.event ?? '')) ||
          (r.childPid === after && ['spawned', 'ready'].includes(r.event ?? '')),
      )
      .map((r) => `${r.childPid === before ? 'old' : 'new'} ${r.event}`)
    t.same(
      order,
      ['new spawned', 'new ready', 'old retired'],
      'the old one stopped after the new one was ready',
    )
    t.match(retired, { exit: { reason: 'stopped', code: 0, killedAfterTimeout: false } })
  },
)

t.test('without a held socket the same upgrade fails requests (the test can fail)', async (t) => {
  const web = {
    command: [process.execPath, FIXTURE],
    port: 29402,
    env: { PORT: '{port}', VERSION: 'v1' },
    readiness: { type: 'http', path: '/', intervalMs: 10 },
    stop: { signal: 'SIGTERM', timeoutMs: 5000 },
  }
  const { dir, config, sup } = start(t, { web })
  await sup.waitLog('ready', (r) => r.event === 'ready')
  const load = await startLoad(t, 29402)
  await sleep(500)
  writeConfig(dir, { web: { ...web, env: { ...web.env, VERSION: 'v2' } } })
  const up = await cli(['upgrade', '--all', '-c', config])
  t.equal(up.code, 0, up.err)
  await sleep(300)
  const s = await load.stop()
  t.ok(s.sent > s.ok, `requests failed: ${JSON.stringify(s.failures)}`)
})
