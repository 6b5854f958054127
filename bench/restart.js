#!/usr/bin/env node
// Restart latency benchmark: `npm run bench:restart` (builds first) or `node bench/restart.js`.
//
// Measures how long the supervisor takes to bring a SIGKILLed instance back to accepting TCP
// connections on its fixed port, and compares it with the child's own cold start (the same
// server spawned directly, no supervisor). The difference at p50 is the latency tandem adds.
//
// Restart backoff is configured to 0 ms (backoff.initialMs 0) and the crash-loop limit is raised,
// so that 50 kills in a row are not delayed or stopped by policy: this measures the supervisor's
// mechanical latency (exit detection, port check, spawn), not its restart policy.
//
// Then the client's view, in two modes side by side, each with a fixed-rate load straight at the
// instance's port (bench/fixed-rate-load.js: BENCH_RATE requests/s, default 200, each on a new
// connection, no load balancer) while the instance is killed BENCH_CLIENT_ROUNDS times (default
// 20), BENCH_QUIET_MS (300) after it was ready again:
// - plain: the instance binds its port itself (the supervisor above);
// - socket-held: `socket: { activation: "node" }`, tandem holds the listening socket across
//   restarts (the same examples/server.js, which then serves fd 3; readiness http /health).
// Each kill is a SIGKILL at a moment the process holds no accepted connection (SIGSTOP, look at
// its fds in /proc, SIGCONT and retry if it holds one): a request a process has accepted dies with
// it whatever holds the port, so what is counted is what the restart itself costs clients.
// Then BENCH_UPGRADES (default 5) `tandem upgrade --all` (a new VERSION in the config each time)
// under the same load, in three setups: plain; socket-held with readiness http (the old process
// is stopped, then the new one started: connections wait in the backlog meanwhile); socket-held
// with readiness ipc (a handover: the new process starts on the same socket while the old one
// serves, and the old one is stopped once the new one is ready).
// Reported per mode: failed requests (goal 0 with the held socket), latency before the first
// kill or upgrade and from it on (p99: the added latency), and the longest wait of a request per
// kill or upgrade.
//
// Environment: BENCH_ROUNDS (default 50), BENCH_CLIENT_ROUNDS, BENCH_RATE, BENCH_QUIET_MS,
// BENCH_UPGRADES, BENCH_PORTS (the range free ports are taken from, default 27000-27999).
import { execFile, spawn } from 'node:child_process'
import {
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { connect } from 'node:net'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { canBind, exitOnSignal, gitState, killGroup } from './common.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const CLI = join(ROOT, 'bin', 'tandem.js')
const SERVER = join(ROOT, 'examples', 'server.js')
const LOAD = join(ROOT, 'bench', 'fixed-rate-load.js')
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 50)
const CLIENT_ROUNDS = Number(process.env.BENCH_CLIENT_ROUNDS ?? 20)
const RATE = Number(process.env.BENCH_RATE ?? 200)
const QUIET_MS = Number(process.env.BENCH_QUIET_MS ?? 300)
const UPGRADES = Number(process.env.BENCH_UPGRADES ?? 5)
const [PORT_LOW, PORT_HIGH] = (process.env.BENCH_PORTS ?? '27000-27999').split('-').map(Number)
const GOAL_MS = 10
const HOST = '127.0.0.1'
const POLL_MS = 1
const STEP_TIMEOUT_MS = 15_000

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const run = promisify(execFile)

// ---------------------------------------------------------------------------------------------
// Ports and probes

/**
 * Free ports in BENCH_PORTS (27000-27999), starting at a random offset. Below the ephemeral
 * range (Linux default 32768-60999) on purpose: the thousands of connects this benchmark makes
 * take their local ports from that range, and a port in it would now and then be held by one of
 * them (or its TIME_WAIT), so the server could not bind it.
 */
const freePorts = async (count) => {
  const found = []
  const size = PORT_HIGH - PORT_LOW + 1
  const start = Math.floor(Math.random() * size)
  for (let i = 0; i < size && found.length < count; i++) {
    const port = PORT_LOW + ((start + i) % size)
    if (await canBind(port)) found.push(port)
  }
  if (found.length < count)
    throw new Error(`found only ${found.length} free ports in ${PORT_LOW}-${PORT_HIGH}`)
  return found
}

/** A localhost connect answers in well under a millisecond; one that does not (a SYN lost to a
 * listener closing under it) would otherwise wait for the 1 s SYN retransmit. */
const CONNECT_TIMEOUT_MS = 20
const probeStats = { timeouts: 0 }

/** One connect attempt with a fresh socket: 'open', 'refused', 'timeout' or another error code. */
const tryConnect = (port) =>
  new Promise((resolve) => {
    const s = connect({ host: HOST, port })
    const t = setTimeout(() => {
      probeStats.timeouts++
      s.destroy()
      resolve('timeout')
    }, CONNECT_TIMEOUT_MS)
    s.once('connect', () => {
      clearTimeout(t)
      s.destroy()
      resolve('open')
    })
    s.once('error', (err) => {
      clearTimeout(t)
      s.destroy()
      resolve(err.code === 'ECONNREFUSED' ? 'refused' : (err.code ?? 'error'))
    })
  })

const pidAlive = (pid) => {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return err.code === 'EPERM'
  }
}

/** Polls every POLL_MS until cond() is true; returns performance.now() at that moment. */
const pollUntil = async (what, cond) => {
  const deadline = performance.now() + STEP_TIMEOUT_MS
  for (;;) {
    if (await cond()) return performance.now()
    if (performance.now() > deadline)
      throw new Error(`timed out after ${STEP_TIMEOUT_MS} ms waiting for ${what}`)
    await sleep(POLL_MS)
  }
}

// ---------------------------------------------------------------------------------------------
// Statistics

const quantile = (sorted, q) =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]
const summary = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  return {
    n: s.length,
    p50: quantile(s, 0.5),
    p95: quantile(s, 0.95),
    max: s[s.length - 1],
    min: s[0],
  }
}
const f1 = (x) => (x === undefined || Number.isNaN(x) ? '-' : x.toFixed(1))
const r1 = (x) => Math.round(x * 10) / 10

// ---------------------------------------------------------------------------------------------
// The supervisor

const startSupervisor = (cfgPath) => {
  const child = spawn(process.execPath, [CLI, 'start', '-c', cfgPath], {
    cwd: ROOT,
    detached: true, // its own process group, killed as a whole at the end
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const events = [] // every JSON log line, with the monotonic time we read it
  const waiters = new Set()
  const stderr = []
  createInterface({ input: child.stdout, crlfDelay: Infinity }).on('line', (line) => {
    let e
    try {
      e = JSON.parse(line)
    } catch {
      return
    }
    e.seenAt = performance.now()
    events.push(e)
    for (const w of [...waiters]) if (w.match(e)) (waiters.delete(w), w.resolve(e))
  })
  createInterface({ input: child.stderr, crlfDelay: Infinity }).on('line', (l) => stderr.push(l))
  const exited = new Promise((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  )
  /** Resolves with the first log event (already seen or future) matching. */
  const waitEvent = (what, match, since = 0) => {
    const seen = events.slice(since).find(match)
    if (seen) return Promise.resolve(seen)
    return new Promise((resolve, reject) => {
      const w = { match, resolve }
      waiters.add(w)
      const t = setTimeout(() => {
        waiters.delete(w)
        reject(
          new Error(
            `timed out waiting for ${what}; supervisor stderr: ${stderr.slice(-5).join(' | ') || '-'}`,
          ),
        )
      }, STEP_TIMEOUT_MS)
      t.unref()
      void exited.then(({ code, signal }) => {
        if (!waiters.has(w)) return
        waiters.delete(w)
        clearTimeout(t)
        reject(
          new Error(
            `supervisor exited (code ${code}, signal ${signal}) while waiting for ${what}; stderr: ${stderr.slice(-5).join(' | ') || '-'}`,
          ),
        )
      })
    })
  }
  return { child, events, waitEvent, exited, stderr }
}

const status = async (cfgPath) => {
  const { stdout } = await run(process.execPath, [CLI, 'status', '--json', '-c', cfgPath], {
    cwd: ROOT,
  })
  return JSON.parse(stdout).instances[0]
}

/** Polls `tandem status --json` until the instance is ready with a pid other than `oldPid`. */
const waitStatusReady = async (cfgPath, oldPid) => {
  const deadline = performance.now() + STEP_TIMEOUT_MS
  for (;;) {
    const s = await status(cfgPath)
    if (s.state === 'ready' && s.pid !== undefined && s.pid !== oldPid) return s
    if (s.state === 'failed') throw new Error(`instance failed: ${s.reason}`)
    if (performance.now() > deadline) {
      const sockets = await run('ss', [
        '-tanp',
        `( sport = :${s.port} or dport = :${s.port} )`,
      ]).then(
        (r) => r.stdout,
        (e) => String(e),
      )
      throw new Error(
        `instance not ready after ${STEP_TIMEOUT_MS} ms: ${JSON.stringify(s)}\nsockets on port ${s.port}:\n${sockets}`,
      )
    }
    await sleep(20)
  }
}

const anomalies = { portInUse: 0, errors: [], openBeforeSpawn: 0 }

/** One supervised restart: SIGKILL the instance, time until its port accepts again. */
const measureRestart = async (sup, cfgPath, port) => {
  const before = await status(cfgPath)
  if (before.state !== 'ready' || before.pid === undefined)
    throw new Error(`instance not ready before kill: ${JSON.stringify(before)}`)
  const oldPid = before.pid
  const mark = sup.events.length
  const t0 = performance.now()
  process.kill(oldPid, 'SIGKILL')
  // The old listener must be gone first (a connect that still reached it would end the timing).
  const tClosed = await pollUntil(
    `port ${port} of pid ${oldPid} to close`,
    async () => !pidAlive(oldPid) || (await tryConnect(port)) === 'refused',
  )
  // The supervisor checks that the port is free by listening on it for an instant before it
  // spawns: a connect can land on that probe listener. Only a connect accepted after the
  // "spawned" line counts (the child needs tens of ms to listen, the line follows its spawn by
  // a few), and the early ones are counted.
  const spawnedNow = () =>
    sup.events.slice(mark).some((e) => e.event === 'spawned' && e.childPid !== oldPid)
  const t1 = await pollUntil(`port ${port} to accept again`, async () => {
    if ((await tryConnect(port)) !== 'open') return false
    if (spawnedNow()) return true
    anomalies.openBeforeSpawn++
    return false
  })
  const after = await waitStatusReady(cfgPath, oldPid)
  // Breakdown from the supervisor's log lines, timed when this process read them (same clock as
  // the kill; includes the pipe hop, well under a millisecond on an idle event loop).
  const evs = sup.events.slice(mark)
  const iExited = evs.findIndex((e) => e.event === 'exited' && e.childPid === oldPid)
  const exited = evs[iExited]
  const starting = iExited < 0 ? undefined : evs.slice(iExited).find((e) => e.event === 'starting')
  const spawned = evs.find((e) => e.event === 'spawned' && e.childPid === after.pid)
  const ready = evs.find((e) => e.event === 'ready' && e.childPid === after.pid)
  for (const e of evs) {
    if (e.exit?.reason === 'port-in-use') anomalies.portInUse++
    if (e.level >= 50) anomalies.errors.push(e.msg)
  }
  const gap = (a, b) => (a && b ? b.seenAt - a.seenAt : NaN)
  return {
    ms: t1 - t0,
    oldPid,
    newPid: after.pid,
    killToClosed: tClosed - t0,
    closedToExited: exited ? exited.seenAt - tClosed : NaN,
    exitedToStarting: gap(exited, starting),
    startingToOpen: starting ? t1 - starting.seenAt : NaN,
    startingToSpawned: gap(starting, spawned),
    openToReady: ready ? ready.seenAt - t1 : NaN,
  }
}

// ---------------------------------------------------------------------------------------------
// The client's view: a fixed-rate load while the instance is killed, plain and socket-held

const wall = () => performance.timeOrigin + performance.now()
/** Process groups this part started (load generators): killed on Ctrl-C. */
const loadGroups = new Set()

/** Starts bench/fixed-rate-load.js on `port`; stop() ends it and resolves with its summary. */
const startLoad = async (port) => {
  const proc = spawn(process.execPath, [LOAD, '--port', String(port), '--rate', String(RATE)], {
    detached: true,
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  loadGroups.add(proc.pid)
  let out = ''
  proc.stdout.setEncoding('utf8').on('data', (d) => (out += d))
  const closed = new Promise((resolve) => proc.once('close', resolve))
  await new Promise((resolve, reject) =>
    createInterface({ input: proc.stderr }).once('line', (l) =>
      l.startsWith('started') ? resolve() : reject(new Error(`load generator: ${l}`)),
    ),
  )
  return {
    stop: async () => {
      proc.stdin.end()
      await closed
      loadGroups.delete(proc.pid)
      return JSON.parse(out)
    },
  }
}

/** The inodes of the sockets among a process's fds 3 and up (0-2: its stdio, socketpairs). */
const socketInodes = (pid) => {
  const out = []
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    if (Number(fd) < 3) continue
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))
      if (m) out.push(m[1])
    } catch {
      // closed meanwhile
    }
  }
  return out
}

/** The inodes of the sockets listening on `port` (from /proc/net/tcp and tcp6). */
const listeningInodes = (port) => {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')}`
  const out = new Set()
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(file, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/)
      if (f[3] === '0A' && f[1]?.endsWith(hex)) out.add(f[9])
    }
  }
  return out
}

/**
 * SIGKILL at a moment the process holds no accepted connection (see the header): stopped, it
 * accepts nothing more, so what its fds show then is what would die with it: any socket besides
 * its listener (the server here has no other: no IPC channel, no connections of its own). If it
 * holds one, it runs on for a few ms to finish it, and is looked at again.
 */
const killIdle = async (pid, port) => {
  const listener = listeningInodes(port)
  for (let attempt = 0; attempt < 200; attempt++) {
    process.kill(pid, 'SIGSTOP')
    if (socketInodes(pid).every((inode) => listener.has(inode))) break
    process.kill(pid, 'SIGCONT')
    await sleep(5)
  }
  killGroup(pid, 'SIGKILL')
}

/**
 * A round of clientView: SIGKILL the instance; resolves with [the kill, the next process logged
 * ready], on the wall() scale.
 */
const killRound = (sup, cfgPath) => async () => {
  const { pid, port } = await status(cfgPath)
  const mark = sup.events.length
  const killedAt = wall()
  await killIdle(pid, port)
  const ready = await sup.waitEvent(
    'the next process ready',
    (e) => e.event === 'ready' && e.childPid !== pid,
    mark,
  )
  return [killedAt, performance.timeOrigin + ready.seenAt]
}

/** A round of clientView: a new VERSION in the config, then `tandem upgrade --all`. */
const upgradeRound = (cfgPath, write) => async (i) => {
  write(`v${i + 2}`)
  const from = wall()
  await run(process.execPath, [CLI, 'upgrade', '--all', '-c', cfgPath], { cwd: ROOT })
  return [from, wall()]
}

/**
 * A second of steady load, then `rounds` acts under it (kills or upgrades: `act` resolves with
 * when it began and when the instance was back, on the wall() scale); the load's requests split into
 * those due before the first kill (the baseline) and those due from each kill to the next (or to
 * the end): a request due during a restart waits for the next process (or fails), and so may
 * the ones after it while that process works through the backlog.
 */
const clientView = async (port, rounds, act) => {
  const load = await startLoad(port)
  await sleep(1000) // steady load before the first kill
  const kills = []
  const restartMs = []
  for (let i = 0; i < rounds; i++) {
    const [at, doneAt] = await act(i)
    kills.push(at)
    restartMs.push(doneAt - at)
    await sleep(QUIET_MS)
  }
  const r = await load.stop()
  const perRound = kills.map(() => ({ n: 0, failed: 0, maxWait: 0 }))
  const baseline = []
  const underKills = []
  const failures = {}
  for (const [at, latency, outcome] of r.samples) {
    // The round it belongs to: the last kill at or before it was due (-1: before the first).
    let w = kills.length - 1
    while (w >= 0 && kills[w] > at) w--
    if (outcome !== 'ok') {
      failures[outcome] = (failures[outcome] ?? 0) + 1
      if (w >= 0) perRound[w].failed++
      continue
    }
    if (w < 0) {
      baseline.push(latency)
      continue
    }
    underKills.push(latency)
    perRound[w].n++
    perRound[w].maxWait = Math.max(perRound[w].maxWait, latency)
  }
  const p99 = (xs) =>
    quantile(
      [...xs].sort((a, b) => a - b),
      0.99,
    )
  return {
    sent: r.sent,
    failed: r.sent - r.ok,
    failures,
    rounds,
    roundsWithFailures: perRound.filter((x) => x.failed > 0).length,
    baseline: { ...summary(baseline), p99: p99(baseline) },
    underKills: { ...summary(underKills), p99: p99(underKills) },
    restartMs: summary(restartMs),
    // The longest a served request waited in each round: about kill -> the new process serving.
    maxWaitPerRestart: summary(perRound.filter((x) => x.n > 0).map((x) => x.maxWait)),
  }
}

// ---------------------------------------------------------------------------------------------
// Baseline: the same server, spawned directly

let baselineChild
const measureColdStart = async (port) => {
  const t0 = performance.now()
  const child = spawn(process.execPath, [SERVER, 'bench'], {
    cwd: ROOT,
    env: { ...process.env, PORT: String(port) },
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'], // piped like the supervisor's children, and drained
  })
  baselineChild = child
  child.stdout.resume()
  child.stderr.resume()
  const gone = new Promise((resolve) => child.once('exit', resolve))
  let early
  void gone.then(() => (early = true))
  const t1 = await pollUntil(`baseline server on port ${port} to accept`, async () => {
    if (early) throw new Error(`baseline server exited before accepting on port ${port}`)
    return (await tryConnect(port)) === 'open'
  })
  process.kill(child.pid, 'SIGKILL')
  await gone
  await pollUntil(
    `port ${port} to be free`,
    async () => (await tryConnect(port)) === 'refused' && (await canBind(port)),
  )
  baselineChild = undefined
  return t1 - t0
}

// ---------------------------------------------------------------------------------------------

/** Writes a config of one instance of examples/server.js on `port` (`extra`: its overrides). */
const writeBenchConfig = (file, dir, name, port, extra = {}, version = 'v1') =>
  writeFileSync(
    file,
    JSON.stringify(
      {
        stateDir: join(dir, `state-${name}`),
        logs: { dir: join(dir, `logs-${name}`) },
        components: {
          bench: {
            command: [process.execPath, SERVER, 'bench'],
            cwd: ROOT,
            env: { PORT: '{port}', VERSION: version },
            instances: 1,
            port,
            backoff: { initialMs: 0 },
            crashLoop: { maxExits: 1000 },
            ...extra,
          },
        },
      },
      null,
      2,
    ),
  )

const main = async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-bench-'))
  let sup
  const sups = [] // every supervisor started, the first one (sup) included
  // Every process an instance had: the groups killed at the end if a supervisor left one.
  const children = () =>
    sups.flatMap((s) =>
      (s?.events ?? []).filter((e) => e.event === 'spawned').map((e) => e.childPid),
    )
  // Ctrl-C or a TERM: run the same cleanup as the finally below.
  exitOnSignal(() => {
    if (baselineChild?.pid) killGroup(baselineChild.pid, 'SIGKILL')
    for (const s of sups) killGroup(s.child.pid, 'SIGKILL')
    for (const pid of [...children(), ...loadGroups]) killGroup(pid, 'SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  })
  try {
    const [port, basePort, sockPort, handPort] = await freePorts(4)
    const cfgPath = join(dir, 'tandem.json')
    const plainExtra = { readiness: { type: 'tcp', intervalMs: 5 } }
    writeBenchConfig(cfgPath, dir, 'plain', port, plainExtra)

    const { commit, srcDirty } = await gitState(ROOT)
    console.log('tandem restart latency benchmark')
    console.log(
      `  commit ${commit ?? 'unknown'}${srcDirty ? ' with uncommitted changes in src/' : ''}`,
    )
    const loadBefore = loadavg()[0]
    console.log(
      `  node ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model ?? 'unknown'}), ${process.platform} ${process.arch}`,
    )
    console.log(
      `  ${ROUNDS} supervised restarts (SIGKILL -> port ${port} accepts) and ${ROUNDS} direct cold starts (spawn -> port ${basePort} accepts), interleaved`,
    )
    console.log(
      "  backoff.initialMs = 0 and crashLoop.maxExits = 1000: this measures the supervisor's mechanical latency, not its restart policy",
    )
    console.log(`  goal: added latency <= ${GOAL_MS} ms at p50`)

    sup = startSupervisor(cfgPath)
    sups.push(sup)
    await sup.waitEvent('all-ready', (e) => e.event === 'all-ready')

    const restarts = []
    const cold = []
    for (let i = 0; i < ROUNDS; i++) {
      const r = await measureRestart(sup, cfgPath, port)
      restarts.push(r)
      cold.push(await measureColdStart(basePort))
      if (process.stdout.isTTY)
        process.stdout.write(
          `\r  round ${i + 1}/${ROUNDS}: restart ${f1(r.ms)} ms, cold start ${f1(cold[i])} ms   `,
        )
    }
    if (process.stdout.isTTY) process.stdout.write('\n')

    const final = await status(cfgPath)
    const R = summary(restarts.map((r) => r.ms))
    const B = summary(cold)
    const added = R.p50 - B.p50
    const med = (key) => summary(restarts.map((r) => r[key]).filter((x) => !Number.isNaN(x))).p50

    console.log('')
    console.log('                                       p50      p95      max   (ms)')
    console.log(
      `  supervised restart (kill -> accept)  ${f1(R.p50).padStart(6)}   ${f1(R.p95).padStart(6)}   ${f1(R.max).padStart(6)}`,
    )
    console.log(
      `  direct cold start (spawn -> accept)  ${f1(B.p50).padStart(6)}   ${f1(B.p95).padStart(6)}   ${f1(B.max).padStart(6)}`,
    )
    console.log(
      `  added latency at p50: ${f1(added)} ms (goal <= ${GOAL_MS} ms): ${added <= GOAL_MS ? 'MET' : 'NOT MET'}`,
    )
    console.log('')
    console.log(
      '  median breakdown of a supervised restart (supervisor log lines, timed on arrival here):',
    )
    console.log(
      `    kill -> old port closed         ${f1(med('killToClosed')).padStart(6)} ms (kernel tears the killed process down)`,
    )
    console.log(
      `    port closed -> "exited" logged  ${f1(med('closedToExited')).padStart(6)} ms (exit noticed, group reaped, pid file rewritten)`,
    )
    console.log(
      `    "exited" -> "starting" logged   ${f1(med('exitedToStarting')).padStart(6)} ms (restart decision; a 0 ms backoff sets no timer)`,
    )
    console.log(
      `    "starting" -> port open         ${f1(med('startingToOpen')).padStart(6)} ms (port check, spawn via setpriv, the child's own start; compare: direct cold start p50 ${f1(B.p50)} ms)`,
    )
    console.log(
      `    ("starting" -> "spawned" logged ${f1(med('startingToSpawned')).padStart(6)} ms: logged after spawn returns and the pid file is fsynced; the child already runs)`,
    )
    console.log(
      `    port open -> "ready" logged     ${f1(med('openToReady')).padStart(6)} ms (supervisor's tcp probe every 5 ms)`,
    )
    console.log(
      `  instance restarts counted by the supervisor: ${final.restarts}; port-in-use retries: ${anomalies.portInUse}; error log lines: ${anomalies.errors.length}${anomalies.errors.length ? ` (first: ${anomalies.errors[0]})` : ''}`,
    )
    console.log(
      `  connects accepted before the new child was spawned (the supervisor's port-free probe listening): ${anomalies.openBeforeSpawn}; connect attempts timed out after ${CONNECT_TIMEOUT_MS} ms: ${probeStats.timeouts}`,
    )
    console.log(
      `  1-minute load average: ${loadBefore.toFixed(2)} before, ${loadavg()[0].toFixed(2)} after (this benchmark alone adds about 1; other work on the machine skews p95/max)`,
    )

    // The client's view: plain (the supervisor above), then socket-held (a second one).
    console.log('')
    console.log(
      `  the client's view: ${RATE} requests/s on new connections straight at the port, ${CLIENT_ROUNDS} kills (SIGKILL while the process holds no accepted connection), ${QUIET_MS} ms apart after each ready`,
    )
    const plain = await clientView(port, CLIENT_ROUNDS, killRound(sup, cfgPath))
    const sockCfg = join(dir, 'tandem-socket.json')
    const sockExtra = {
      socket: { activation: 'node' },
      readiness: { type: 'http', path: '/health', intervalMs: 5 },
    }
    writeBenchConfig(sockCfg, dir, 'socket', sockPort, sockExtra)
    const sockSup = startSupervisor(sockCfg)
    sups.push(sockSup)
    await sockSup.waitEvent('all-ready (socket-held)', (e) => e.event === 'all-ready')
    const held = await clientView(sockPort, CLIENT_ROUNDS, killRound(sockSup, sockCfg))
    // Upgrades under the same load: plain, socket-held stopping the old process first (readiness
    // http), socket-held handing over (readiness ipc: the new process starts while the old one
    // serves).
    const handCfg = join(dir, 'tandem-handover.json')
    const handExtra = { socket: { activation: 'node' }, readiness: { type: 'ipc' } }
    writeBenchConfig(handCfg, dir, 'handover', handPort, handExtra)
    const handSup = startSupervisor(handCfg)
    sups.push(handSup)
    await handSup.waitEvent('all-ready (handover)', (e) => e.event === 'all-ready')
    console.log(
      `  then ${UPGRADES} \`tandem upgrade --all\` (a new VERSION each) under the same load, ${QUIET_MS} ms apart`,
    )
    const upgrades = []
    for (const [name, file, state, p, extra] of [
      ['plain, stop then start', cfgPath, 'plain', port, plainExtra],
      ['socket-held, stop then start (readiness http)', sockCfg, 'socket', sockPort, sockExtra],
      ['socket-held, handover (readiness ipc)', handCfg, 'handover', handPort, handExtra],
    ]) {
      const write = (version) => writeBenchConfig(file, dir, state, p, extra, version)
      upgrades.push([name, await clientView(p, UPGRADES, upgradeRound(file, write))])
    }
    const modes = [
      ['kills, plain (the instance binds its port)', plain],
      ['kills, socket-held (socket.activation node)', held],
      ...upgrades.map(([name, m]) => [`upgrades, ${name}`, m]),
    ]
    const kinds = (f) =>
      Object.entries(f)
        .map(([k, n]) => `${n} ${k}`)
        .join(', ') || 'none'
    console.log('')
    for (const [name, m] of modes) {
      console.log(`  ${name}:`)
      console.log(
        `    requests ${m.sent}, failed ${m.failed} (${kinds(m.failures)})${name.includes('socket-held') ? ' (goal 0)' : ''}; rounds with a failed request: ${m.roundsWithFailures} of ${m.rounds}`,
      )
      console.log(
        `    ${name.startsWith('kills') ? 'restart (kill -> "ready" logged)' : 'upgrade command'} p50 ${f1(m.restartMs.p50)} ms, max ${f1(m.restartMs.max)} ms`,
      )
      console.log(
        `    latency of served requests (ms): before p50 ${f1(m.baseline.p50)}, p99 ${f1(m.baseline.p99)}; from the first ${name.startsWith('kills') ? 'kill' : 'upgrade'} on p50 ${f1(m.underKills.p50)}, p99 ${f1(m.underKills.p99)}, max ${f1(m.underKills.max)}`,
      )
      console.log(
        `    added latency at p99: ${f1(m.underKills.p99 - m.baseline.p99)} ms; the longest wait of a served request per round: p50 ${f1(m.maxWaitPerRestart.p50)} ms, max ${f1(m.maxWaitPerRestart.max)} ms`,
      )
    }
    const view = (m) => ({
      sent: m.sent,
      failed: m.failed,
      failures: m.failures,
      roundsWithFailures: m.roundsWithFailures,
      roundP50Ms: r1(m.restartMs.p50),
      baselineMs: { p50: r1(m.baseline.p50), p99: r1(m.baseline.p99) },
      afterFirstMs: {
        p50: r1(m.underKills.p50),
        p99: r1(m.underKills.p99),
        max: r1(m.underKills.max),
      },
      maxWaitPerRestartMs: { p50: r1(m.maxWaitPerRestart.p50), max: r1(m.maxWaitPerRestart.max) },
    })
    console.log(
      JSON.stringify({
        bench: 'restart',
        node: process.version,
        cpus: cpus().length,
        rounds: ROUNDS,
        restartMs: { p50: r1(R.p50), p95: r1(R.p95), max: r1(R.max), min: r1(R.min) },
        coldStartMs: { p50: r1(B.p50), p95: r1(B.p95), max: r1(B.max), min: r1(B.min) },
        addedP50Ms: r1(added),
        goalMs: GOAL_MS,
        goalMet: added <= GOAL_MS,
        breakdownP50Ms: {
          killToClosed: r1(med('killToClosed')),
          closedToExited: r1(med('closedToExited')),
          exitedToStarting: r1(med('exitedToStarting')),
          startingToOpen: r1(med('startingToOpen')),
          startingToSpawned: r1(med('startingToSpawned')),
          openToReady: r1(med('openToReady')),
        },
        portInUse: anomalies.portInUse,
        openBeforeSpawn: anomalies.openBeforeSpawn,
        connectTimeouts: probeStats.timeouts,
        errorLines: anomalies.errors.length,
        commit,
        srcDirty,
        clientView: {
          rate: RATE,
          kills: CLIENT_ROUNDS,
          quietMs: QUIET_MS,
          killsPlain: view(plain),
          killsSocketHeld: view(held),
          upgrades: UPGRADES,
          upgradesPlain: view(upgrades[0][1]),
          upgradesSocketHeldStopStart: view(upgrades[1][1]),
          upgradesSocketHeldHandover: view(upgrades[2][1]),
        },
        load1: [r1(loadBefore), r1(loadavg()[0])],
      }),
    )
  } finally {
    if (baselineChild?.pid) killGroup(baselineChild.pid, 'SIGKILL')
    for (const pid of loadGroups) killGroup(pid, 'SIGKILL')
    for (const s of sups) {
      // Orderly first (the supervisor stops its instance), then the whole group regardless.
      if (s.child.exitCode === null && s.child.signalCode === null) {
        killGroup(s.child.pid, 'SIGTERM')
        await Promise.race([s.exited, sleep(5_000)])
      }
      killGroup(s.child.pid, 'SIGKILL')
    }
    // The instances run in their own process groups: none outlives the benchmark.
    for (const pid of children()) if (pidAlive(pid)) killGroup(pid, 'SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(`bench/restart: ${err?.stack ?? err}`)
    process.exit(1)
  },
)
