#!/usr/bin/env node
// Rolling upgrade under load: `npm run bench:rollout` (builds first) or `node bench/rollout.js`.
//
// Four instances of bench/rollout-server.js (an HTTP server that answers after RESPONSE_MS and
// listens STARTUP_MS after its process starts) behind a real HAProxy, under a constant load
// (autocannon, RATE requests/s over CONNECTIONS keep-alive connections, in a worker thread of
// this process), are replaced one after the other with a new version (VERSION v1 -> v2):
//
// - tandem: `tandem start`, HAProxy configured with exactly what `tandem lb-config haproxy`
//   prints (control.agent on, rollout.drainMs DRAIN_MS, default 0; minReadyMs 0; maxUnavailable
//   MAX_UNAVAILABLE, default 1), then `tandem upgrade --all --json` with VERSION v2 in the config.
// - PM2 (installed from npm into a cache dir once, its own PM2_HOME in a temp dir): one app,
//   fork mode, `instances: 4` with `increment_var: 'PORT'` (one port per instance), and PM2's
//   documented zero-downtime settings: `wait_ready: true` (the server sends 'ready' once
//   listening; PM2 waits for it before it goes on), `listen_timeout` STARTUP_MS + 10 s,
//   `kill_timeout` 5000 (time for a graceful shutdown before SIGKILL), kill signal SIGINT (its
//   default; the server shuts down gracefully on it). HAProxy in front with the same backend
//   (lb-config of the same ports) without the agent, which PM2 does not have: the same checks,
//   retries and redispatch. Then `VERSION=v2 pm2 reload web --update-env`. In fork mode PM2's
//   reload is a restart of each process (stop, wait for exit, start, wait for 'ready'), 2 at a
//   time by default (PM2_CONCURRENT_ACTIONS; BENCH_PM2_PARALLEL sets `--parallel`).
//
// Both run in the same invocation, one after the other, on the same server, load and windows:
// WARMUP_S of load, then BEFORE_S of load measured as "before", then the upgrade command
// ("during" = from its spawn to its exit), then once HAProxy shows every server UP again
// AFTER_S more. Each request is placed in a window by its send time (answer time - latency).
// Failed requests = connection errors + timeouts (10 s) + non-2xx answers, over the whole load.
//
// Start-to-ready of an instance is measured the same way on both sides, by the server itself:
// from its process's start (performance.timeOrigin: node's own start, before its boot) to its
// listen callback; both written to an events file with the stop signal's arrival and the exit.
// ratio = rollout time / sum of the four new processes' start-to-ready. Rollout time is given
// three ways: the supervisor's own (tandem's `done` event elapsedMs: from the rollout's start in
// the supervisor to the last instance ready; the goal is judged on it); the upgrade command's
// wall time (with the CLI's own start: about 0.2 s for tandem, more for PM2); and, for both
// sides alike, from the first stop signal an old server received to the last new server
// listening (server clocks).
//
// Environment: STARTUP_MS (default 2000: a server that needs time to start, as Zowe's Java
// servers do; 0: node's own start only, about 50-100 ms, where a supervisor's overhead weighs
// most), RESPONSE_MS (default 5), RATE (default 500), CONNECTIONS (default 10), WARMUP_S (1),
// BEFORE_S (5), AFTER_S (2), DRAIN_MS (tandem rollout.drainMs, default 0), MAX_UNAVAILABLE
// (default 1), BENCH_PM2=0 (skip PM2), BENCH_PM2_PARALLEL (pm2 reload --parallel N), PM2_CACHE
// (where pm2 is installed; default ~/.cache/tandem-bench/pm2), BENCH_KEEP=1 (keep the temp dir
// with configs, logs and events files).
import { execFile, spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads'
import {
  canBind,
  ensurePm2,
  exitOnSignal,
  gitState,
  groupRunner,
  killGroup,
  killProcessesNaming,
  pm2Bin,
  processesNaming,
} from './common.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const CLI = join(ROOT, 'bin', 'tandem.js')
const SERVER = join(ROOT, 'bench', 'rollout-server.js')
const HAPROXY = ['/usr/sbin/haproxy', '/usr/local/sbin/haproxy', '/usr/bin/haproxy'].find((p) =>
  existsSync(p),
)
const INSTANCES = 4
const num = (name, dflt) => Number(process.env[name] ?? dflt)
const STARTUP_MS = num('STARTUP_MS', 2000)
const RESPONSE_MS = num('RESPONSE_MS', 5)
const RATE = num('RATE', 500)
const CONNECTIONS = num('CONNECTIONS', 10)
const WARMUP_S = num('WARMUP_S', 1)
const BEFORE_S = num('BEFORE_S', 5)
const AFTER_S = num('AFTER_S', 2)
const DRAIN_MS = num('DRAIN_MS', 0)
const MAX_UNAVAILABLE = num('MAX_UNAVAILABLE', 1)
const WITH_PM2 = process.env.BENCH_PM2 !== '0'
const PM2_PARALLEL = process.env.BENCH_PM2_PARALLEL
const KEEP = process.env.BENCH_KEEP === '1'

const GOALS = { failed: 0, ratio: 1.2 }
const PM2_KILL_TIMEOUT_MS = 5_000
const STEP_TIMEOUT_MS = 60_000
const REQUEST_TIMEOUT_S = 10
/** Ports of this benchmark (restart uses 27000-27999, failover 28000-28099, tests below). */
const PORT_BASE = 29000
const PORT_SPAN = 1000

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const run = promisify(execFile)

// ---------------------------------------------------------------------------------------------
// The load, in a worker thread: its event loop is not delayed by this one's (log parsing, spawns)

const loadWorker = async () => {
  const { default: autocannon } = await import('autocannon')
  const { url, rate, connections } = workerData
  const samples = [] // flat: send time (epoch ms), latency (ms), status
  const errors = [] // flat: time (epoch ms), code
  const instance = autocannon(
    { url, connections, overallRate: rate, duration: 3600, timeout: REQUEST_TIMEOUT_S },
    (err, r) =>
      parentPort.postMessage({
        type: 'done',
        error: err ? String(err) : undefined,
        samples,
        errors,
        totals: r && {
          // In a worker thread autocannon returns its raw result (histograms encoded).
          requests: r.totalRequests,
          completed: r.totalCompletedRequests,
          errors: r.errors,
          timeouts: r.timeouts,
          non2xx: r.non2xx,
          resets: r.resets,
        },
      }),
  )
  instance.on('response', (_client, status, _bytes, ms) =>
    samples.push(Date.now() - ms, ms, status),
  )
  instance.on('reqError', (err) => errors.push(Date.now(), err.code ?? err.message))
  parentPort.on('message', (m) => m === 'stop' && instance.stop())
  parentPort.postMessage({ type: 'started' })
}

/** Starts the load on `url`; stop() resolves with everything the worker recorded. */
const startLoad = async (url) => {
  const worker = new Worker(fileURLToPath(import.meta.url), {
    workerData: { url, rate: RATE, connections: CONNECTIONS },
  })
  let onDone
  const done = new Promise((resolve, reject) => {
    onDone = resolve
    worker.once('error', reject)
  })
  await new Promise((resolve, reject) => {
    worker.on('message', (m) => (m.type === 'started' ? resolve() : onDone(m)))
    worker.once('error', reject)
  })
  return {
    startedAt: Date.now(),
    stop: async () => {
      worker.postMessage('stop')
      const r = await done
      await worker.terminate()
      if (r.error) throw new Error(`autocannon: ${r.error}`)
      return r
    },
  }
}

const percentile = (sorted, p) =>
  sorted.length
    ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]
    : NaN

/** Requests sent in [from, to): count, latency percentiles, non-2xx; errors timed in it. */
const windowStats = (load, from, to) => {
  const lat = []
  let non2xx = 0
  const statuses = {}
  const s = load.samples
  for (let i = 0; i < s.length; i += 3) {
    if (s[i] < from || s[i] >= to) continue
    lat.push(s[i + 1])
    if (s[i + 2] < 200 || s[i + 2] > 299) {
      non2xx++
      statuses[s[i + 2]] = (statuses[s[i + 2]] ?? 0) + 1
    }
  }
  lat.sort((a, b) => a - b)
  let errors = 0
  const codes = {}
  for (let i = 0; i < load.errors.length; i += 2) {
    if (load.errors[i] < from || load.errors[i] >= to) continue
    errors++
    codes[load.errors[i + 1]] = (codes[load.errors[i + 1]] ?? 0) + 1
  }
  return {
    requests: lat.length,
    p50: percentile(lat, 50),
    p99: percentile(lat, 99),
    max: lat.length ? lat[lat.length - 1] : NaN,
    non2xx,
    statuses,
    errors,
    codes,
    ratePerS: lat.length / ((to - from) / 1000),
  }
}

// ---------------------------------------------------------------------------------------------
// Processes: everything spawned is tracked and killed by process group, also on Ctrl-C. Every
// process of ours names this run's temp dir in its command line (the servers get it as an
// argument they ignore), so none can be missed or confused with another run's.

const spawned = new Set() // pids of process group leaders we started
let runDir

/** Processes whose command line names this run's temp dir. */
const ourProcesses = () => (runDir ? processesNaming(runDir) : [])

/** SIGKILLs every group we started and every process left that names our temp dir. */
const killEverything = () => {
  for (const pgid of spawned) killGroup(pgid, 'SIGKILL')
  if (runDir) killProcessesNaming(runDir)
}

/** Runs a command in its own process group to completion (see groupRunner). */
const runGroup = groupRunner({ cwd: ROOT, tracked: spawned, timeoutMs: STEP_TIMEOUT_MS })

const waitFor = async (what, fn, timeoutMs = STEP_TIMEOUT_MS) => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await fn()) return
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

// ---------------------------------------------------------------------------------------------
// Ports

/** `count` consecutive free ports (PM2's increment_var numbers them from the first). */
const freeBlock = async (count, taken) => {
  const start = Math.floor(Math.random() * PORT_SPAN)
  for (let i = 0; i < PORT_SPAN; i++) {
    const first = PORT_BASE + ((start + i) % (PORT_SPAN - count))
    const block = Array.from({ length: count }, (_, k) => first + k)
    if (block.some((p) => taken.has(p))) continue
    let ok = true
    for (const p of block) if (!(ok = await canBind(p))) break
    if (ok) {
      for (const p of block) taken.add(p)
      return block
    }
  }
  throw new Error(`no ${count} consecutive free ports in ${PORT_BASE}-${PORT_BASE + PORT_SPAN}`)
}

// ---------------------------------------------------------------------------------------------
// HAProxy, as test/helpers/haproxy.ts drives it

const startHaproxy = (dir, backends, port) => {
  const stats = join(dir, 'haproxy.sock')
  const cfg = join(dir, 'haproxy.cfg')
  writeFileSync(
    cfg,
    [
      'global',
      `    stats socket ${stats} mode 600 level admin`,
      '    log stderr format raw local0 notice',
      'defaults',
      '    log global',
      '    timeout client 30s',
      '    timeout server 30s',
      '    timeout connect 1s',
      'frontend www',
      `    bind 127.0.0.1:${port}`,
      '    mode http',
      '    default_backend tandem_web',
      '',
      backends,
    ].join('\n'),
  )
  const proc = spawn(HAPROXY, ['-db', '-f', cfg], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  spawned.add(proc.pid)
  const output = []
  for (const s of [proc.stdout, proc.stderr])
    s.on('data', (d) => output.push(...d.toString().split('\n').filter(Boolean)))
  const command = (line) =>
    new Promise((resolve, reject) => {
      const s = connect(stats)
      let out = ''
      s.on('data', (d) => (out += d.toString()))
      s.on('end', () => resolve(out))
      s.on('error', reject)
      s.end(`${line}\n`)
    })
  const servers = async () => {
    const lines = (await command('show stat')).split('\n')
    const head = lines[0].replace(/^# /, '').split(',')
    const out = {}
    for (const l of lines.slice(1)) {
      const f = l.split(',')
      const sv = f[head.indexOf('svname')]
      if (f[head.indexOf('pxname')] === 'tandem_web' && sv !== 'BACKEND' && sv !== 'FRONTEND')
        out[sv] = f[head.indexOf('status')]
    }
    return out
  }
  /** The backend's counters: retries, redispatches, connection and response errors. */
  const counters = async () => {
    const lines = (await command('show stat')).split('\n')
    const head = lines[0].replace(/^# /, '').split(',')
    const f = lines.find((l) => l.startsWith('tandem_web,BACKEND,'))?.split(',') ?? []
    const get = (name) => Number(f[head.indexOf(name)] ?? NaN)
    return {
      retries: get('wretr'),
      redispatches: get('wredis'),
      econ: get('econ'),
      eresp: get('eresp'),
    }
  }
  return {
    url: `http://127.0.0.1:${port}/`,
    output,
    counters,
    allUp: () =>
      waitFor('every server UP in HAProxy', async () => {
        if (proc.exitCode !== null)
          throw new Error(`haproxy exited ${proc.exitCode}: ${output.join('\n')}`)
        const s = await servers().catch(() => ({}))
        return Object.values(s).filter((v) => v === 'UP').length === INSTANCES
      }),
    stop: () => {
      killGroup(proc.pid, 'SIGKILL')
      spawned.delete(proc.pid)
    },
  }
}

/** The x-version of `n` answers through the load balancer, counted. */
const versionsServed = async (url, n = 20) => {
  const seen = {}
  for (let i = 0; i < n; i++) {
    const res = await fetch(url)
    await res.arrayBuffer()
    const v = `${res.status} ${res.headers.get('x-version') ?? '-'}`
    seen[v] = (seen[v] ?? 0) + 1
  }
  return seen
}

/** A tandem config for the four servers on `ports`; `agent`: control.agent's port. */
const tandemConfig = ({ dir, ports, agent, version, events }) => ({
  stateDir: join(dir, 'state'),
  logs: { dir: join(dir, 'logs'), stdout: true },
  ...(agent ? { control: { agent: { port: agent } } } : {}),
  components: {
    web: {
      command: [process.execPath, SERVER, runDir],
      instances: INSTANCES,
      ports,
      env: serverEnv({ PORT: '{port}', VERSION: version, EVENTS_FILE: events }),
      readiness: { type: 'http', path: '/ready' },
      stop: { signal: 'SIGTERM', timeoutMs: 5000 },
      rollout: {
        maxUnavailable: MAX_UNAVAILABLE,
        drainMs: DRAIN_MS,
        minReadyMs: 0,
        progressDeadlineMs: 120_000,
      },
    },
  },
})

const serverEnv = (extra) => ({
  STARTUP_MS: String(STARTUP_MS),
  RESPONSE_MS: String(RESPONSE_MS),
  ...extra,
})

const lbConfig = async (cfg) => {
  const r = await runGroup(process.execPath, [CLI, 'lb-config', 'haproxy', '-c', cfg])
  if (r.code !== 0) throw new Error(`tandem lb-config failed: ${r.stderr}`)
  return r.stdout
}

const readEvents = (file) =>
  existsSync(file)
    ? readFileSync(file, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l))
    : []

/**
 * Load through HAProxy: warm-up, the "before" window, then `upgrade()` (the command), then,
 * once every server is UP again, AFTER_S more. Returns the load and the windows.
 */
const underLoad = async (lb, upgrade) => {
  const load = await startLoad(lb.url)
  let recorded
  let cmd
  try {
    await sleep(WARMUP_S * 1000)
    await sleep(BEFORE_S * 1000)
    cmd = await upgrade()
    await lb.allUp()
    await sleep(AFTER_S * 1000)
  } finally {
    recorded = await load.stop()
  }
  const end = Date.now()
  return {
    cmd,
    totals: recorded.totals,
    all: windowStats(recorded, 0, end),
    before: windowStats(recorded, cmd.t0 - BEFORE_S * 1000, cmd.t0),
    during: windowStats(recorded, cmd.t0, cmd.t1),
    after: windowStats(recorded, cmd.t1, end),
  }
}

/**
 * Figures from the servers' events: the new (v2) processes' start-to-ready, the old ones' stop
 * (signal -> exit), and the gap from an old one's exit to its successor's start, per port.
 */
const serverFigures = (events, from) => {
  const byPid = new Map()
  for (const e of events) {
    const p = byPid.get(e.pid) ?? { pid: e.pid, port: e.port, version: e.version }
    p[e.ev] = e.t
    if (e.sig) p.sig = e.sig
    byPid.set(e.pid, p)
  }
  const procs = [...byPid.values()]
  const fresh = procs.filter((p) => p.version === 'v2' && p.start >= from - 1000)
  const old = procs.filter((p) => p.version === 'v1' && p.signal >= from)
  const perPort = fresh
    .sort((a, b) => a.start - b.start)
    .map((n) => {
      const o = old.find((x) => x.port === n.port)
      return {
        port: n.port,
        pid: n.pid,
        startToReady: n.listening - n.start,
        stop: o ? o.exit - o.signal : NaN,
        exitToStart: o ? n.start - o.exit : NaN,
        oldSignal: o?.signal,
        oldPid: o?.pid,
        oldExit: o?.exit,
        start: n.start,
        listening: n.listening,
      }
    })
  return {
    perPort,
    restarted: fresh.length,
    ownSum: perPort.reduce((s, p) => s + p.startToReady, 0),
    span: Math.max(...fresh.map((p) => p.listening)) - Math.min(...old.map((p) => p.signal)),
    signals: [...new Set(old.map((p) => p.sig ?? ''))],
    extraProcs: procs.filter((p) => p.version === 'v2').length - fresh.length,
  }
}

// ---------------------------------------------------------------------------------------------
// tandem

const runTandem = async (dir, ports, agent, front) => {
  mkdirSync(dir, { recursive: true })
  const events = join(dir, 'events.jsonl')
  const cfg = join(dir, 'tandem.json')
  const write = (version) =>
    writeFileSync(
      cfg,
      JSON.stringify(tandemConfig({ dir, ports, agent, version, events }), null, 2),
    )
  write('v1')
  const child = spawn(process.execPath, [CLI, 'start', '-c', cfg], {
    cwd: ROOT,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  spawned.add(child.pid)
  const records = []
  const stderr = []
  createInterface({ input: child.stdout, crlfDelay: Infinity }).on('line', (l) => {
    try {
      records.push(JSON.parse(l))
    } catch {
      // not a record
    }
  })
  createInterface({ input: child.stderr, crlfDelay: Infinity }).on('line', (l) => stderr.push(l))
  let exit
  const exited = new Promise((resolve) =>
    child.once('exit', (code, signal) => resolve((exit = { code, signal }))),
  )
  let lb
  try {
    await waitFor('tandem: all instances ready', () => {
      if (exit) throw new Error(`tandem exited: ${stderr.slice(-5).join(' | ')}`)
      return records.some((r) => r.event === 'all-ready')
    })
    const backends = await lbConfig(cfg)
    lb = startHaproxy(dir, backends, front)
    await lb.allUp()
    const measured = await underLoad(lb, async () => {
      write('v2')
      return runGroup(process.execPath, [CLI, 'upgrade', '--all', '--json', '-c', cfg], {
        timeoutMs: 300_000,
      })
    })
    const { cmd } = measured
    const lines = cmd.stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l))
    const done = lines.find((l) => l.phase === 'done')
    const result = lines.find((l) => l.result)
    if (cmd.code !== 0 || !done)
      throw new Error(`tandem upgrade failed (${cmd.code}): ${cmd.stderr || cmd.stdout}`)
    const versions = await versionsServed(lb.url)
    const haproxy = await lb.counters()
    const srv = serverFigures(readEvents(events), cmd.t0)
    // The supervisor's view: spawned -> ready of each new process, and listening -> ready.
    const at = (event, pid) => records.find((r) => r.event === event && r.childPid === pid)?.time
    for (const p of srv.perPort) {
      p.spawnedToReady = at('ready', p.pid) - at('spawned', p.pid)
      p.listeningToReady = at('ready', p.pid) - p.listening
      // old exit -> tandem logs it stopped -> tandem spawns the new one -> its node starts
      p.exitToStopped = at('stopped', p.oldPid) - p.oldExit
      p.stoppedToSpawned = at('spawned', p.pid) - at('stopped', p.oldPid)
      p.spawnedToStart = p.start - at('spawned', p.pid)
    }
    const stopping = records.filter((r) => r.event === 'rollout' && r.phase === 'stopping')
    const begin = records.find((r) => r.event === 'rollout' && r.phase === 'begin')?.time
    const doneAt = records.find((r) => r.event === 'rollout' && r.phase === 'done')?.time
    return {
      ...measured,
      srv,
      versions,
      haproxy,
      elapsedMs: done.elapsedMs,
      replaced: result?.result?.replaced?.length,
      firstStopping: stopping[0]?.time,
      cliToBegin: begin - cmd.t0,
      doneToExit: cmd.t1 - doneAt,
      backends,
      stderr,
    }
  } finally {
    lb?.stop()
    killGroup(child.pid, 'SIGTERM')
    await Promise.race([exited, sleep(10_000)])
    killGroup(child.pid, 'SIGKILL')
    spawned.delete(child.pid)
  }
}

// ---------------------------------------------------------------------------------------------
// PM2

const runPm2 = async (dir, ports, front) => {
  const home = join(dir, 'home') // PM2_HOME: never the user's ~/.pm2
  mkdirSync(home, { recursive: true })
  const events = join(dir, 'events.jsonl')
  const env = { ...process.env, PM2_HOME: home }
  const pm2 = (args, extraEnv = {}, timeoutMs) =>
    runGroup(process.execPath, [pm2Bin(), ...args], { env: { ...env, ...extraEnv }, timeoutMs })
  const ecosystem = join(dir, 'ecosystem.config.cjs')
  const app = {
    name: 'web',
    script: SERVER,
    args: [runDir],
    cwd: ROOT,
    interpreter: process.execPath,
    exec_mode: 'fork',
    instances: INSTANCES,
    increment_var: 'PORT',
    wait_ready: true,
    listen_timeout: STARTUP_MS + 10_000,
    kill_timeout: PM2_KILL_TIMEOUT_MS,
    env: serverEnv({ PORT: String(ports[0]), VERSION: 'v1', EVENTS_FILE: events }),
  }
  writeFileSync(ecosystem, `module.exports = ${JSON.stringify({ apps: [app] }, null, 2)}\n`)
  // The same backend as tandem's, for these ports, without the agent: lb-config of a tandem
  // config that only describes them (nothing runs from it).
  const lbCfg = join(dir, 'lb.json')
  writeFileSync(
    lbCfg,
    JSON.stringify(tandemConfig({ dir, ports, agent: undefined, version: 'v1', events })),
  )
  let daemonPid
  let lb
  try {
    const ping = await pm2(['ping'])
    if (ping.code !== 0) throw new Error(`pm2 ping failed: ${ping.stderr || ping.stdout}`)
    daemonPid = Number(readFileSync(join(home, 'pm2.pid'), 'utf8'))
    spawned.add(daemonPid) // detached by PM2: its own group
    const started = await pm2(['start', ecosystem])
    if (started.code !== 0) throw new Error(`pm2 start failed: ${started.stderr || started.stdout}`)
    const backends = await lbConfig(lbCfg)
    lb = startHaproxy(dir, backends, front)
    await lb.allUp()
    const parallel = PM2_PARALLEL ? ['--parallel', PM2_PARALLEL] : []
    const measured = await underLoad(lb, () =>
      pm2(['reload', 'web', '--update-env', ...parallel], { VERSION: 'v2' }, 300_000),
    )
    const { cmd } = measured
    if (cmd.code !== 0) throw new Error(`pm2 reload failed (${cmd.code}): ${cmd.stderr}`)
    const versions = await versionsServed(lb.url)
    const haproxy = await lb.counters()
    const srv = serverFigures(readEvents(events), cmd.t0)
    return { ...measured, srv, versions, haproxy, backends }
  } finally {
    lb?.stop()
    await pm2(['kill']).catch(() => undefined)
    if (daemonPid) {
      killGroup(daemonPid, 'SIGKILL')
      spawned.delete(daemonPid)
    }
  }
}

// ---------------------------------------------------------------------------------------------

const f0 = (x) => (x === undefined || Number.isNaN(x) ? '-' : Math.round(x).toLocaleString('en-US'))
const f1 = (x) => (x === undefined || Number.isNaN(x) ? '-' : x.toFixed(1))
const f2 = (x) => (x === undefined || Number.isNaN(x) ? '-' : x.toFixed(2))
const r1 = (x) => (x === undefined || Number.isNaN(x) ? null : Math.round(x * 10) / 10)
const r2 = (x) => (x === undefined || Number.isNaN(x) ? null : Math.round(x * 100) / 100)
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length

const failedOf = (s) => s.all.errors + s.all.non2xx

const main = async () => {
  if (!HAPROXY) throw new Error('haproxy is not installed (apt-get install haproxy)')
  runDir = mkdtempSync(join(tmpdir(), 'tandem-bench-rollout-'))
  exitOnSignal(() => {
    killEverything()
    if (!KEEP) rmSync(runDir, { recursive: true, force: true })
  })
  let leftover = []
  try {
    const { commit, srcDirty } = await gitState(ROOT)
    const pm2Version = WITH_PM2 ? await ensurePm2(runGroup) : undefined
    const haproxyVersion = (await run(HAPROXY, ['-v'])).stdout.split('\n')[0]
    const taken = new Set()
    const tPorts = await freeBlock(INSTANCES + 2, taken) // 4 instances, agent, frontend
    const pPorts = await freeBlock(INSTANCES + 1, taken) // 4 instances, frontend
    const loadBefore = loadavg()[0]
    console.log('tandem rolling upgrade under load benchmark')
    console.log(
      `  commit ${commit ?? 'unknown'}${srcDirty ? ' with uncommitted changes in src/' : ''}`,
    )
    console.log(
      `  node ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model ?? 'unknown'}), ${process.platform} ${process.arch}; ${haproxyVersion}`,
    )
    console.log(
      `  ${INSTANCES} instances of bench/rollout-server.js: STARTUP_MS ${STARTUP_MS} (idle wait before listening), RESPONSE_MS ${RESPONSE_MS}; graceful stop on SIGTERM/SIGINT`,
    )
    console.log(
      `  load: ${RATE} requests/s over ${CONNECTIONS} keep-alive connections through HAProxy (autocannon, timeout ${REQUEST_TIMEOUT_S} s); ${WARMUP_S} s warm-up, ${BEFORE_S} s before, the upgrade, ${AFTER_S} s after every server is UP again`,
    )
    console.log(
      `  tandem: control.agent on, rollout drainMs ${DRAIN_MS}, minReadyMs 0, maxUnavailable ${MAX_UNAVAILABLE}, readiness http /ready (default interval), stop SIGTERM; \`tandem upgrade --all --json\``,
    )
    if (WITH_PM2)
      console.log(
        `  PM2 ${pm2Version}: fork mode, instances ${INSTANCES}, increment_var PORT, wait_ready, listen_timeout ${STARTUP_MS + 10_000}, kill_timeout ${PM2_KILL_TIMEOUT_MS}, kill signal SIGINT (default); \`pm2 reload web --update-env${PM2_PARALLEL ? ` --parallel ${PM2_PARALLEL}` : ''}\` (${PM2_PARALLEL ?? '2, its default,'} at a time); HAProxy: the same backend without the agent`,
      )

    const tandem = await runTandem(join(runDir, 'tandem'), tPorts.slice(0, 4), tPorts[4], tPorts[5])
    const pm2 = WITH_PM2
      ? await runPm2(join(runDir, 'pm2'), pPorts.slice(0, 4), pPorts[4])
      : undefined

    const systems = [['tandem', tandem], ...(pm2 ? [[`PM2 ${pm2Version}`, pm2]] : [])]
    const row = (label, fn) =>
      console.log(
        `  ${label.padEnd(58)}${systems.map(([, s]) => String(fn(s) ?? '').padStart(20)).join('')}`,
      )
    const sum = (s) => s.srv.ownSum
    console.log('')
    row('', (s) => systems.find(([, x]) => x === s)[0])
    row('requests sent (whole load)', (s) => f0(s.totals.requests))
    row('FAILED requests (errors + timeouts + non-2xx)', (s) => f0(failedOf(s)))
    row(
      '  connection errors / timeouts',
      (s) => `${s.totals.errors - s.totals.timeouts} / ${s.totals.timeouts}`,
    )
    row('  non-2xx answers', (s) => f0(s.totals.non2xx))
    row(
      'HAProxy retries / redispatches (backend)',
      (s) => `${s.haproxy.retries} / ${s.haproxy.redispatches}`,
    )
    row(
      'HAProxy connection / response errors (backend)',
      (s) => `${s.haproxy.econ} / ${s.haproxy.eresp}`,
    )
    row('  failed during the upgrade command', (s) => f0(s.during.errors + s.during.non2xx))
    row(
      `latency p50 before (${BEFORE_S} s) / during (ms)`,
      (s) => `${f1(s.before.p50)} / ${f1(s.during.p50)}`,
    )
    row('latency p99 before (ms)', (s) => f1(s.before.p99))
    row('latency p99 during the upgrade (ms)', (s) => f1(s.during.p99))
    row('  p99 during / p99 before', (s) => f2(s.during.p99 / s.before.p99))
    row('latency max during (ms)', (s) => f0(s.during.max))
    row('requests/s during (sent)', (s) => f0(s.during.ratePerS))
    row('instances replaced (new processes)', (s) => s.srv.restarted)
    row('rollout: upgrade command wall time (ms)', (s) => f0(s.cmd.t1 - s.cmd.t0))
    row("rollout: supervisor's own (tandem: done elapsedMs)", (s) => f0(s.elapsedMs))
    row('rollout: 1st stop signal -> last new listening (ms)', (s) => f0(s.srv.span))
    row('sum of the 4 new processes start-to-ready (ms)', (s) => f0(sum(s)))
    row('  each: process start -> listening (ms)', (s) =>
      s.srv.perPort.map((p) => Math.round(p.startToReady)).join(' '),
    )
    row("RATIO supervisor's rollout time / sum", (s) => f2(s.elapsedMs / sum(s)))
    row('ratio command wall time / sum', (s) => f2((s.cmd.t1 - s.cmd.t0) / sum(s)))
    row('ratio stop signal -> last listening / sum', (s) => f2(s.srv.span / sum(s)))
    row('mean per instance: old stop signal -> exit (ms)', (s) =>
      f1(mean(s.srv.perPort.map((p) => p.stop))),
    )
    row('mean per instance: old exit -> new process start (ms)', (s) =>
      f1(mean(s.srv.perPort.map((p) => p.exitToStart))),
    )
    row('mean per instance: listening -> tandem ready event (ms)', (s) =>
      s.srv.perPort[0]?.listeningToReady === undefined
        ? ''
        : f1(mean(s.srv.perPort.map((p) => p.listeningToReady))),
    )
    row('mean per instance: tandem spawned -> ready event (ms)', (s) =>
      s.srv.perPort[0]?.spawnedToReady === undefined
        ? ''
        : f1(mean(s.srv.perPort.map((p) => p.spawnedToReady))),
    )
    const tandemRow = (label, key) =>
      row(label, (s) => (s === tandem ? f1(mean(s.srv.perPort.map((p) => p[key]))) : ''))
    tandemRow('  tandem: old exit -> its `stopped` event (ms)', 'exitToStopped')
    tandemRow('  tandem: `stopped` -> new `spawned` event (ms)', 'stoppedToSpawned')
    tandemRow('  tandem: `spawned` -> new node process start (ms)', 'spawnedToStart')
    row('tandem: upgrade command spawn -> rollout begins (ms)', (s) =>
      s === tandem ? f0(s.cliToBegin) : '',
    )
    row('tandem: rollout done -> upgrade command exits (ms)', (s) =>
      s === tandem ? f0(s.doneToExit) : '',
    )
    row('stop signal the old servers got', (s) => s.srv.signals.join(','))
    row('answers after the upgrade (x-version)', (s) =>
      Object.entries(s.versions)
        .map(([k, v]) => `${k.replace('200 ', '')}:${v}`)
        .join(' '),
    )
    console.log('')
    const codes = (s) =>
      Object.entries(s.all.codes)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ') || 'none'
    const statuses = (s) =>
      Object.entries(s.all.statuses)
        .map(([k, v]) => `${k} x${v}`)
        .join(', ') || 'none'
    for (const [name, s] of systems)
      console.log(`  ${name}: request errors by code: ${codes(s)}; non-2xx answers: ${statuses(s)}`)
    if (tandem.srv.extraProcs || pm2?.srv.extraProcs)
      console.log(
        `  new-version processes started before the command (not counted): tandem ${tandem.srv.extraProcs}, PM2 ${pm2?.srv.extraProcs ?? '-'}`,
      )

    const ratio = tandem.elapsedMs / sum(tandem)
    const goals = {
      noFailed: failedOf(tandem) === GOALS.failed,
      ratio: ratio <= GOALS.ratio,
    }
    const verdict = (ok) => (ok ? 'MET' : 'NOT MET')
    console.log('')
    console.log('  goals (tandem):')
    console.log(`    0 failed requests: ${failedOf(tandem)}: ${verdict(goals.noFailed)}`)
    console.log(
      `    rollout time / sum of start-to-ready <= ${GOALS.ratio} (minReadyMs 0): ${f2(ratio)} (${f0(tandem.elapsedMs)} / ${f0(sum(tandem))} ms): ${verdict(goals.ratio)}`,
    )
    console.log(
      `    p99 during vs before: ${f1(tandem.during.p99)} vs ${f1(tandem.before.p99)} ms (${f2(tandem.during.p99 / tandem.before.p99)}x)${pm2 ? `; PM2 ${f1(pm2.during.p99)} vs ${f1(pm2.before.p99)} ms (${f2(pm2.during.p99 / pm2.before.p99)}x)` : ''}`,
    )
    console.log(
      `  1-minute load average: ${loadBefore.toFixed(2)} before, ${loadavg()[0].toFixed(2)} after (other work on the machine takes CPU from both runs)`,
    )
    await sleep(500)
    leftover = ourProcesses()
    console.log(
      `  processes of this run still running: ${leftover.length ? leftover.map((p) => `${p.pid} ${p.cmd}`).join('; ') : 'none'}`,
    )
    const summary = (s) => ({
      requests: s.totals.requests,
      failed: failedOf(s),
      errors: s.totals.errors,
      timeouts: s.totals.timeouts,
      non2xx: s.totals.non2xx,
      non2xxStatuses: s.all.statuses,
      p99BeforeMs: r1(s.before.p99),
      p99DuringMs: r1(s.during.p99),
      maxDuringMs: r1(s.during.max),
      commandMs: s.cmd.t1 - s.cmd.t0,
      supervisorMs: s.elapsedMs ?? null,
      spanMs: Math.round(s.srv.span),
      startToReadyMs: s.srv.perPort.map((p) => Math.round(p.startToReady)),
      ratio: s.elapsedMs === undefined ? null : r2(s.elapsedMs / sum(s)),
      ratioCommand: r2((s.cmd.t1 - s.cmd.t0) / sum(s)),
      ratioSpan: r2(s.srv.span / sum(s)),
      versions: s.versions,
      haproxy: s.haproxy,
      perInstanceMs: Object.fromEntries(
        [
          'stop',
          'exitToStart',
          'startToReady',
          'listeningToReady',
          'exitToStopped',
          'stoppedToSpawned',
          'spawnedToStart',
        ]
          .filter((k) => s.srv.perPort[0]?.[k] !== undefined)
          .map((k) => [k, r1(mean(s.srv.perPort.map((p) => p[k])))]),
      ),
      ...(s.cliToBegin === undefined
        ? {}
        : { cliToBeginMs: s.cliToBegin, doneToExitMs: s.doneToExit }),
    })
    console.log(
      JSON.stringify({
        bench: 'rollout',
        node: process.version,
        cpus: cpus().length,
        startupMs: STARTUP_MS,
        responseMs: RESPONSE_MS,
        rate: RATE,
        connections: CONNECTIONS,
        drainMs: DRAIN_MS,
        maxUnavailable: MAX_UNAVAILABLE,
        tandem: summary(tandem),
        ...(pm2
          ? { pm2: { version: pm2Version, parallel: PM2_PARALLEL ?? null, ...summary(pm2) } }
          : {}),
        goals,
        goalsMet: Object.values(goals).every(Boolean),
        commit,
        srcDirty,
        load1: [r1(loadBefore), r1(loadavg()[0])],
      }),
    )
  } finally {
    killEverything()
    if (KEEP) console.error(`bench/rollout: kept ${runDir}`)
    else rmSync(runDir, { recursive: true, force: true })
  }
  if (leftover.length)
    throw new Error(`processes were left running (killed now): ${leftover.length}`)
}

if (isMainThread)
  main().then(
    () => process.exit(0),
    (err) => {
      console.error(`bench/rollout: ${err?.stack ?? err}`)
      process.exit(1)
    },
  )
else void loadWorker()
