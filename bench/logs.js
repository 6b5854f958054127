#!/usr/bin/env node
// Unified log throughput benchmark: `npm run bench:logs` (builds first) or `node bench/logs.js`.
//
// Four children (bench/log-writer.js) each write numbered lines to stdout as fast as they are
// taken, for DURATION seconds. Under tandem their lines go into the unified log
// (<logs.dir>/tandem.log, one JSON record per line); under PM2 (installed from npm into a cache
// dir, its own PM2_HOME in a temp dir, fork mode, its default per-app log files) into
// <PM2_HOME>/logs/writer-<i>-out.log. Both run in the same invocation, one after the other, on
// the same writers; then, for reference, the same writers each piped (a real pipe, made by sh)
// into `cat`, which copies raw chunks to a file in C (its CPU: `times` after cat; it reads as
// soon as bytes arrive, so with one line per write it makes many small reads and writes and
// supervisord, which reads less often, beats it); and the same writers with no supervisor at
// all (each one's stdout a file). The CPU budget printed with the goals is the ceiling that
// holds for any reader. Every line is checked: per writer, each seq 0..count-1 must be in the log
// exactly once.
//
// lines/s = distinct numbered lines found in the log / (last time the log grew - first writer's
// first write). "First write" is the earliest writer start (Date.now() in the writer, just
// before its first write); "last time the log grew" is when this process saw the log's size
// change for the last time, polling with stat every 20 ms (so at most 20 ms late). For tandem
// the log's last growth may include the few event records (exited, stopped) written just after
// the last line, a few ms: the figure errs on the low side.
//
// The supervisor's CPU and RSS (tandem: the `tandem start` process; PM2: its God daemon, pid in
// PM2_HOME/pm2.pid) are sampled with pidusage every 200 ms. CPU % is CPU time (user + system)
// over wall time between the samples that bracket the window above, in % of one core; peak RSS
// is the largest sample from the supervisor's start until the last line landed. The writers
// report their own CPU time (process.cpuUsage) at exit: with the supervisor's, it shows where
// the machine's cores went.
//
// supervisord (Debian's `supervisor` package, `apt-get install supervisor`; skipped, saying so,
// when it is missing) runs the same writers as four programs with their own log files, raw lines
// as PM2's. Both write patterns run in one invocation (PATTERNS, default "1,64": one line per
// write(), as a server's logger does, then 64 lines per write(), as a buffering logger does),
// each pattern through every system.
//
// During tandem's flood the benchmark asks for `GET /status` over the control socket every
// STATUS_EVERY_MS (default 100) and times each answer (status latency p50/p99/max), and reads
// the supervisor's main-thread event-loop lag from the last answer (status `supervisor.
// eventLoopLagMs`: monitorEventLoopDelay since the supervisor's start, the flood included).
//
// Environment: DURATION (seconds, default 10), PATTERNS (lines per write(), comma-separated;
// default "1,64"; LINES_PER_WRITE=n is the same as PATTERNS=n), LINE_BYTES (default 100),
// BENCH_PM2=0 (skip PM2), BENCH_SUPERVISORD=0 (skip supervisord), BENCH_PM2_TIME=1 (PM2 apps with `time: true`: it then splits lines and prefixes
// each with a date, per-line work like tandem's), BENCH_ORDER=pm2-first (PM2 runs before tandem:
// on a VM, the system that writes second can reuse the page cache memory the first one's deleted
// logs freed, which is much cheaper to write into than memory the guest has not touched yet; see
// docs/benchmarks.md), BENCH_RAW_PIPE=0 (skip the pipe-into-cat ceiling), BENCH_DIRECT=0 (skip the
// no-supervisor ceiling), PM2_CACHE (where pm2 is
// installed; default ~/.cache/tandem-bench/pm2), TANDEM_BASE=<dir> (also run the tandem built in
// that directory, e.g. an earlier commit exported and built there, as "tandem base" right after
// tandem: a before/after in one run), BENCH_CPU_PROF=<dir> (run the tandem
// supervisor under `node --cpu-prof`, copy the profile there and print where its main thread's
// time goes), BENCH_KEEP=1 (keep the temp dir with the logs), BENCH_WARM_MB (default 4096; 0:
// off): before each system's run, write a file of that many MiB into the run's directory and
// delete it, so that every system writes its logs into page cache memory the guest has just
// used, not into memory a VM's host provides only when first touched (about 9 times dearer to
// write into here: see "The order matters" in docs/benchmarks.md). Without it the system that
// runs first pays for it, and the more bytes it writes the more it pays.
import { execFileSync, spawn } from 'node:child_process'
import {
  closeSync,
  copyFileSync,
  createReadStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { performance } from 'node:perf_hooks'
import pidusage from 'pidusage'
import { controlRequest } from '../dist/control/client.js'
import {
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

/** Writes WARM_MB MiB into a file in `dir` and deletes it (see BENCH_WARM_MB above). */
let warmFailed = false
const warmPageCache = (dir) => {
  if (!(WARM_MB > 0) || warmFailed) return
  const file = join(dir, 'warm.bin')
  const block = Buffer.alloc(1024 * 1024, 0x61)
  let fd
  try {
    fd = openSync(file, 'w')
    for (let i = 0; i < WARM_MB; i++) writeSync(fd, block)
  } catch (err) {
    // A small tmpfs, a full disk: the runs go on unwarmed, saying so once.
    warmFailed = true
    console.log(`  page cache not warmed (${err.message}): BENCH_WARM_MB=0 to skip it`)
  } finally {
    if (fd !== undefined) closeSync(fd)
    rmSync(file, { force: true })
  }
}
const CLI = join(ROOT, 'bin', 'tandem.js')
const BASE = process.env.TANDEM_BASE
const WRITER = join(ROOT, 'bench', 'log-writer.js')
const WRITERS = 4
const DURATION_S = Number(process.env.DURATION ?? 10)
const PATTERNS = (process.env.PATTERNS ?? process.env.LINES_PER_WRITE ?? '1,64')
  .split(',')
  .map(Number)
  .filter((n) => Number.isInteger(n) && n > 0)
const LINE_BYTES = Number(process.env.LINE_BYTES ?? 100)
const WITH_PM2 = process.env.BENCH_PM2 !== '0'
const WITH_DIRECT = process.env.BENCH_DIRECT !== '0'
const WITH_RAW_PIPE = process.env.BENCH_RAW_PIPE !== '0'
const WITH_SUPERVISORD = process.env.BENCH_SUPERVISORD !== '0'
const STATUS_EVERY_MS = Number(process.env.STATUS_EVERY_MS ?? 100)
const PM2_TIME = process.env.BENCH_PM2_TIME === '1'
const PM2_FIRST = process.env.BENCH_ORDER === 'pm2-first'
const CPU_PROF_DIR = process.env.BENCH_CPU_PROF
const KEEP = process.env.BENCH_KEEP === '1'
const WARM_MB = Number(process.env.BENCH_WARM_MB ?? 4096)

/** Issue 16: against the faster of PM2 and supervisord, in the same run, for every pattern. */
const GOALS = { vsBest: 1.25, peakRssMb: 150, lagP99Ms: 20, statusP99Ms: 50 }
const SAMPLE_MS = 200
const POLL_MS = 20
/** The log must not grow for this long, after every writer has exited, to count as complete. */
const QUIET_MS = 1_000
const STEP_TIMEOUT_MS = 30_000

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const MB = 1024 * 1024

// ---------------------------------------------------------------------------------------------
// Processes: everything spawned is tracked and killed by process group, also on Ctrl-C.

const spawned = new Set() // pids of process group leaders we started
let runDir // every process of ours has this path in its command line

const pidAlive = (pid) => {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return err.code === 'EPERM'
  }
}

/** A running process's command line, or undefined when it is gone. */
const cmdlineOf = (pid) => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ').trim()
  } catch {
    return undefined
  }
}

/** Processes whose command line names this run's temp dir: the writers, tandem, PM2's daemon. */
const ourProcesses = () => (runDir ? processesNaming(runDir) : [])

/** /proc/<pid>/stat fields after the command: [state, ppid, pgrp, ...], or undefined. */
const procStat = (pid) => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  } catch {
    return undefined
  }
}
/** Start time (clock ticks since boot): with the pid, names one process even after pid reuse. */
const startTimeOf = (pid) => procStat(pid)?.[19]

/** Every descendant of `pid` (tandem's watchdog runs in a process group of its own). */
const descendants = (pid) => {
  const parent = new Map()
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const f = procStat(name)
    if (f) parent.set(Number(name), Number(f[1]))
  }
  const found = []
  const walk = (p) => {
    for (const [child, ppid] of parent) if (ppid === p) (found.push(child), walk(child))
  }
  walk(pid)
  return found
}

/**
 * Descendants seen of the supervisors we started (pid -> start time): checked at the end, killed
 * on the way out, but only while the pid still names the same process (pids wrap quickly on a
 * busy machine with a small pid_max).
 */
const seenDescendants = new Map()
const noteDescendants = (pid) => {
  for (const d of descendants(pid)) {
    const t = startTimeOf(d)
    if (t !== undefined && !seenDescendants.has(d)) seenDescendants.set(d, t)
  }
}
/** The descendants seen that still run (the same process, not a zombie). */
const descendantsLeft = () =>
  [...seenDescendants]
    .filter(([pid, t]) => startTimeOf(pid) === t && procStat(pid)?.[0] !== 'Z')
    .map(([pid]) => pid)

/** SIGKILLs every group we started and every process left that names our temp dir. */
const killEverything = () => {
  for (const pgid of spawned) noteDescendants(pgid)
  for (const pgid of spawned) killGroup(pgid, 'SIGKILL')
  for (const pid of descendantsLeft()) {
    // Its group when it leads one (tandem's watchdog, the writers), else the process alone.
    if (procStat(pid)?.[2] === String(pid)) killGroup(pid, 'SIGKILL')
    else {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // gone
      }
    }
  }
  if (runDir) killProcessesNaming(runDir)
}

/** Runs a command in its own process group to completion (see groupRunner). */
const runGroup = groupRunner({ cwd: ROOT, tracked: spawned, timeoutMs: STEP_TIMEOUT_MS })

// ---------------------------------------------------------------------------------------------
// Measurements

/** pidusage every SAMPLE_MS: { t (epoch ms), ctime (CPU ms, user + system), rss (bytes) }. */
const startSampler = (pid) => {
  const samples = []
  let busy = false
  const tick = async () => {
    if (busy) return
    busy = true
    try {
      const s = await pidusage(pid)
      samples.push({ t: Date.now(), ctime: s.ctime, rss: s.memory })
    } catch {
      // the process is gone: the samples so far are what there is
    } finally {
      busy = false
    }
  }
  void tick()
  const timer = setInterval(() => void tick(), SAMPLE_MS)
  return {
    samples,
    stop: async () => {
      clearInterval(timer)
      while (busy) await sleep(5)
      await tick()
      pidusage.clear()
    },
  }
}

/** Average CPU % of one core over [from, to], from the samples that bracket it; and the peaks. */
const cpuAndRss = (samples, from, to) => {
  if (samples.length < 2) return { cpuAvg: NaN, cpuPeak: NaN, peakRss: NaN, cpuMs: NaN }
  const before = samples.filter((s) => s.t <= from)
  const s0 = before.length ? before[before.length - 1] : samples[0]
  const s1 = samples.find((s) => s.t >= to) ?? samples[samples.length - 1]
  let cpuPeak = 0
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1]
    const b = samples[i]
    if (b.t < s0.t || a.t > s1.t || b.t === a.t) continue
    cpuPeak = Math.max(cpuPeak, ((b.ctime - a.ctime) / (b.t - a.t)) * 100)
  }
  return {
    cpuMs: s1.ctime - s0.ctime,
    cpuAvg: ((s1.ctime - s0.ctime) / (s1.t - s0.t)) * 100,
    cpuPeak,
    peakRss: Math.max(...samples.filter((s) => s.t <= to + SAMPLE_MS).map((s) => s.rss)),
  }
}

/**
 * Waits until every writer has reported (its result file) and the log files have not grown for
 * QUIET_MS. Returns when they last grew (epoch ms, this process's stat polling) and their size.
 */
const waitLanded = async ({ files, resultsDir, alive }) => {
  const deadline = Date.now() + DURATION_S * 1000 + 120_000
  let size = -1
  let lastGrowth = Date.now()
  for (;;) {
    let total = 0
    for (const f of files()) {
      try {
        total += statSync(f).size
      } catch {
        // not created yet
      }
    }
    const now = Date.now()
    if (total !== size) {
      size = total
      lastGrowth = now
    }
    const reported = readdirSync(resultsDir).filter((f) => f.startsWith('writer-')).length
    if (reported === WRITERS && now - lastGrowth >= QUIET_MS) return { lastGrowth, bytes: size }
    alive()
    if (now > deadline)
      throw new Error(`the writers did not finish (${reported}/${WRITERS} reported) in time`)
    await sleep(POLL_MS)
  }
}

const readResults = (resultsDir) => {
  const results = []
  for (let i = 0; i < WRITERS; i++) {
    const f = join(resultsDir, `writer-${i}.json`)
    if (!existsSync(f)) throw new Error(`writer ${i} wrote no result (${f})`)
    results.push(JSON.parse(readFileSync(f, 'utf8')))
  }
  return results
}

/**
 * Checks every numbered line: per writer, which seq numbers were seen, how often. A line that is
 * not `<id> <seq> xxx...` of LINE_BYTES is malformed (a cut or interleaved line).
 */
const makeTally = (results) => {
  const seen = new Map(results.map((r) => [r.id, new Uint8Array(r.lines)]))
  const t = { lines: 0, distinct: 0, duplicated: 0, malformed: 0, unknown: 0, firstMalformed: '' }
  t.add = (text) => {
    t.lines++
    const a = text.indexOf(' ')
    const b = a < 0 ? -1 : text.indexOf(' ', a + 1)
    if (b < 0 || text.length !== LINE_BYTES - 1 || text.charCodeAt(text.length - 1) !== 120) {
      t.malformed++
      if (!t.firstMalformed) t.firstMalformed = text.slice(0, 120)
      return
    }
    const bits = seen.get(text.slice(0, a))
    const seq = Number(text.slice(a + 1, b))
    if (!bits || !Number.isInteger(seq) || seq < 0 || seq >= bits.length) {
      t.unknown++ // a writer or seq the writers never reported writing
      return
    }
    if (bits[seq]) t.duplicated++
    else {
      bits[seq] = 1
      t.distinct++
    }
  }
  t.lost = () => results.reduce((n, r) => n + r.lines, 0) - t.distinct
  return t
}

/** Calls onLine(text) for each line of a file, without the newline. */
const eachLine = async (file, onLine) => {
  let rest = ''
  for await (const chunk of createReadStream(file, { encoding: 'utf8', highWaterMark: MB })) {
    const text = rest + chunk
    let start = 0
    for (;;) {
      const nl = text.indexOf('\n', start)
      if (nl < 0) break
      onLine(text.slice(start, nl))
      start = nl + 1
    }
    rest = text.slice(start)
  }
  if (rest) onLine(rest)
}

/** The common figures of one system's run. */
const figures = ({ results, tally, landed, samples, extra }) => {
  const firstStart = Math.min(...results.map((r) => r.startMs))
  const lastEnd = Math.max(...results.map((r) => r.endMs))
  const windowMs = landed.lastGrowth - firstStart
  const u = cpuAndRss(samples, firstStart, landed.lastGrowth)
  const written = results.reduce((n, r) => n + r.lines, 0)
  return {
    written,
    inLog: tally.lines,
    distinct: tally.distinct,
    lost: tally.lost(),
    duplicated: tally.duplicated,
    malformed: tally.malformed,
    unknown: tally.unknown,
    firstMalformed: tally.firstMalformed,
    windowMs,
    writePhaseMs: lastEnd - firstStart,
    tailMs: landed.lastGrowth - lastEnd,
    linesPerSec: tally.distinct / (windowMs / 1000),
    drainWaits: results.reduce((n, r) => n + r.drainWaits, 0),
    writersCpuMs: results.reduce((n, r) => n + r.cpuMs, 0),
    logBytes: landed.bytes,
    cpuAvg: u.cpuAvg,
    cpuPeak: u.cpuPeak,
    cpuMs: u.cpuMs,
    peakRssMb: u.peakRss / MB,
    perWriter: results.map((r) => r.lines),
    ...extra,
  }
}

// ---------------------------------------------------------------------------------------------
// tandem

/** The pattern being measured: lines per write(). */
let linesPerWrite = PATTERNS[0]

const writerEnv = (id) => ({
  WRITER_ID: id,
  DURATION: String(DURATION_S),
  LINES_PER_WRITE: String(linesPerWrite),
  LINE_BYTES: String(LINE_BYTES),
})

const runTandem = async (dir, cli = CLI) => {
  const resultsDir = join(dir, 'results')
  const logDir = join(dir, 'logs')
  mkdirSync(resultsDir, { recursive: true })
  const cfgPath = join(dir, 'tandem.json')
  writeFileSync(
    cfgPath,
    JSON.stringify(
      {
        stateDir: join(dir, 'state'),
        logs: { dir: logDir, stdout: false, rotate: { maxBytes: 0 } },
        components: {
          writer: {
            command: [process.execPath, WRITER, resultsDir],
            cwd: ROOT,
            env: writerEnv('{instance}'),
            instances: WRITERS,
            readiness: { type: 'none' },
            restart: 'never',
          },
        },
      },
      null,
      2,
    ),
  )
  const nodeArgs = CPU_PROF_DIR ? ['--cpu-prof', `--cpu-prof-dir=${join(dir, 'prof')}`] : []
  const child = spawn(process.execPath, [...nodeArgs, cli, 'start', '-c', cfgPath], {
    cwd: ROOT,
    detached: true, // its own process group, killed as a whole at the end
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  spawned.add(child.pid)
  const stderr = []
  child.stdout.resume() // logs.stdout is false: nothing much comes here
  createInterface({ input: child.stderr, crlfDelay: Infinity }).on('line', (l) => stderr.push(l))
  let exit
  const exited = new Promise((resolve) =>
    child.once('exit', (code, signal) => resolve((exit = { code, signal }))),
  )
  const sampler = startSampler(child.pid)
  const logFile = join(logDir, 'tandem.log')
  const poller = pollStatus(join(dir, 'state'))
  try {
    const landed = await waitLanded({
      files: () => [logFile],
      resultsDir,
      alive: () => {
        if (exit)
          throw new Error(
            `tandem exited early (code ${exit.code}, signal ${exit.signal}): ${stderr.slice(-5).join(' | ')}`,
          )
      },
    })
    await sampler.stop()
    const control = await poller.stop()
    const results = readResults(resultsDir)

    // The supervisor logs `exited` for an instance once its pipes are drained (or after 100 ms,
    // reading on): all four must be in the file, and it has been quiet for QUIET_MS, else lines
    // could still be on their way.
    let tally
    let events
    for (let attempt = 0; ; attempt++) {
      tally = makeTally(results)
      events = { exited: 0, done: 0, other: 0, unparsable: 0, errors: [] }
      await eachLine(logFile, (line) => {
        let rec
        try {
          rec = JSON.parse(line)
        } catch {
          events.unparsable++
          return
        }
        if (rec.stream === 'out') tally.add(rec.msg)
        else if (rec.stream === 'err') {
          if (/^done \d+ \d+$/.test(rec.msg)) events.done++
          else events.errors.push(rec.msg)
        } else if (rec.event === 'exited') events.exited++
        else {
          events.other++
          if (rec.level >= 50) events.errors.push(rec.msg)
        }
      })
      if (events.exited >= WRITERS || attempt >= 4) break
      await sleep(1_000)
    }

    // Orderly shutdown; the profile (if any) is written when the process exits.
    noteDescendants(child.pid)
    killGroup(child.pid, 'SIGTERM')
    await Promise.race([exited, sleep(10_000)])
    let profile
    if (CPU_PROF_DIR && existsSync(join(dir, 'prof'))) {
      const f = readdirSync(join(dir, 'prof')).find((n) => n.endsWith('.cpuprofile'))
      if (f) {
        mkdirSync(CPU_PROF_DIR, { recursive: true })
        profile = join(CPU_PROF_DIR, `tandem-supervisor-${Date.now()}.cpuprofile`)
        copyFileSync(join(dir, 'prof', f), profile)
      }
    }
    return figures({
      results,
      tally,
      landed,
      samples: sampler.samples,
      extra: {
        exitedEvents: events.exited,
        doneLines: events.done,
        eventRecords: events.other,
        unparsable: events.unparsable,
        errorLines: events.errors.slice(0, 3),
        supervisorExit: exit ?? 'still running after SIGTERM + 10 s',
        profile,
        control,
      },
    })
  } finally {
    await sampler.stop()
    await poller.stop()
    noteDescendants(child.pid)
    killGroup(child.pid, 'SIGKILL')
    spawned.delete(child.pid)
  }
}

/** The p-th percentile (0-100) of numbers, nearest rank. */
const percentile = (values, p) => {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]
}

/**
 * Asks tandem for `GET /status` over its control socket every STATUS_EVERY_MS, one request at a
 * time, and times each answer; before the socket exists the attempts are not counted. `stop()`
 * asks once more (the event-loop lag then covers the whole flood) and resolves with the figures.
 */
const pollStatus = (stateDir) => {
  const latencies = []
  let failures = 0
  let lastError
  let last
  let stopped = false
  let stopping
  const ask = async () => {
    const t0 = performance.now()
    try {
      const reply = await controlRequest(stateDir, 'GET', '/status')
      latencies.push(performance.now() - t0)
      last = reply
    } catch (err) {
      if (err.code !== 'ENOSUPERVISOR') {
        failures++
        lastError = err.message
      }
    }
  }
  const loop = (async () => {
    while (!stopped) {
      const t0 = performance.now()
      await ask()
      await sleep(Math.max(0, STATUS_EVERY_MS - (performance.now() - t0)))
    }
  })()
  return {
    stop: () =>
      (stopping ??= (async () => {
        stopped = true
        await loop
        await ask()
        return {
          requests: latencies.length,
          failures,
          lastError,
          p50: percentile(latencies, 50),
          p99: percentile(latencies, 99),
          max: latencies.length ? Math.max(...latencies) : NaN,
          lag: last?.supervisor?.eventLoopLagMs,
        }
      })()),
  }
}

// ---------------------------------------------------------------------------------------------
// supervisord

const supervisordBin = () =>
  ['/usr/bin/supervisord', '/usr/local/bin/supervisord'].find((p) => existsSync(p))

const supervisordVersion = (bin) => {
  try {
    return execFileSync(bin, ['--version'], { encoding: 'utf8' }).trim()
  } catch {
    return 'unknown'
  }
}

const runSupervisord = async (dir) => {
  const resultsDir = join(dir, 'results')
  const logDir = join(dir, 'logs')
  mkdirSync(resultsDir, { recursive: true })
  mkdirSync(logDir, { recursive: true })
  const conf = join(dir, 'supervisord.conf')
  // Its defaults but no rotation (tandem's and PM2's logs do not rotate here either); a writer
  // that exits 0 after its DURATION stays stopped, like tandem's restart: never.
  const programs = Array.from({ length: WRITERS }, (_, i) => {
    const env = Object.entries(writerEnv(String(i)))
      .map(([k, v]) => `${k}="${v}"`)
      .join(',')
    return `[program:writer-${i}]
command=${process.execPath} ${WRITER} ${resultsDir}
directory=${ROOT}
environment=${env}
autostart=true
autorestart=false
startsecs=0
stopasgroup=true
killasgroup=true
stdout_logfile=${join(logDir, `writer-${i}.out.log`)}
stdout_logfile_maxbytes=0
stderr_logfile=${join(logDir, `writer-${i}.err.log`)}
stderr_logfile_maxbytes=0
`
  })
  writeFileSync(
    conf,
    `[supervisord]
nodaemon=true
logfile=${join(dir, 'supervisord.log')}
pidfile=${join(dir, 'supervisord.pid')}
childlogdir=${logDir}

${programs.join('\n')}`,
  )
  const child = spawn(supervisordBin(), ['-n', '-c', conf], {
    cwd: dir,
    detached: true,
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  spawned.add(child.pid)
  const stderr = []
  createInterface({ input: child.stderr, crlfDelay: Infinity }).on('line', (l) => stderr.push(l))
  let exit
  child.once('exit', (code, signal) => (exit = { code, signal }))
  const sampler = startSampler(child.pid)
  const outFiles = () =>
    Array.from({ length: WRITERS }, (_, i) => join(logDir, `writer-${i}.out.log`))
  try {
    const landed = await waitLanded({
      files: outFiles,
      resultsDir,
      alive: () => {
        if (exit)
          throw new Error(
            `supervisord exited early (code ${exit.code}, signal ${exit.signal}): ${stderr.slice(-5).join(' | ')}`,
          )
      },
    })
    await sampler.stop()
    const results = readResults(resultsDir)
    const tally = makeTally(results)
    for (const f of outFiles()) if (existsSync(f)) await eachLine(f, (line) => tally.add(line))
    let done = 0
    for (let i = 0; i < WRITERS; i++) {
      const f = join(logDir, `writer-${i}.err.log`)
      if (existsSync(f)) await eachLine(f, (l) => (done += /^done \d+ \d+$/.test(l) ? 1 : 0))
    }
    return figures({ results, tally, landed, samples: sampler.samples, extra: { doneLines: done } })
  } finally {
    await sampler.stop()
    noteDescendants(child.pid)
    killGroup(child.pid, 'SIGTERM')
    for (let i = 0; i < 100 && !exit; i++) await sleep(50)
    killGroup(child.pid, 'SIGKILL')
    spawned.delete(child.pid)
  }
}

// ---------------------------------------------------------------------------------------------
// PM2

const runPm2 = async (dir) => {
  const resultsDir = join(dir, 'results')
  const home = join(dir, 'home') // PM2_HOME: never the user's ~/.pm2
  mkdirSync(resultsDir, { recursive: true })
  mkdirSync(home, { recursive: true })
  const env = { ...process.env, PM2_HOME: home }
  const pm2 = (...args) => runGroup(process.execPath, [pm2Bin(), ...args], { env })
  const ecosystem = join(dir, 'ecosystem.config.cjs')
  const apps = Array.from({ length: WRITERS }, (_, i) => ({
    name: `writer-${i}`,
    script: WRITER,
    args: [resultsDir],
    cwd: ROOT,
    interpreter: process.execPath,
    exec_mode: 'fork',
    autorestart: false, // like tandem's restart: never; a writer that exits 0 stays stopped
    // PM2 copies pipe chunks as they come; with `time` it splits them into lines and dates each.
    ...(PM2_TIME ? { time: true } : {}),
    env: writerEnv(String(i)),
  }))
  writeFileSync(ecosystem, `module.exports = ${JSON.stringify({ apps }, null, 2)}\n`)

  let daemonPid
  let daemonStart
  let sampler
  try {
    // Start the daemon first, so that it is sampled from before the writers start.
    const ping = await pm2('ping')
    if (ping.code !== 0) throw new Error(`pm2 ping failed: ${ping.stderr || ping.stdout}`)
    daemonPid = Number(readFileSync(join(home, 'pm2.pid'), 'utf8'))
    daemonStart = startTimeOf(daemonPid)
    spawned.add(daemonPid) // detached by PM2: its own group
    sampler = startSampler(daemonPid)
    const started = await pm2('start', ecosystem)
    if (started.code !== 0) throw new Error(`pm2 start failed: ${started.stderr || started.stdout}`)
    const logDir = join(home, 'logs')
    // PM2's default names: <name>-out.log, or <name>-out-<pm_id>.log in some versions and modes.
    const logFiles = (kind) =>
      existsSync(logDir)
        ? readdirSync(logDir)
            .filter((f) => new RegExp(`^writer-\\d+-${kind}(-\\d+)?\\.log$`).test(f))
            .map((f) => join(logDir, f))
        : []
    const outFiles = () => logFiles('out')
    const landed = await waitLanded({
      files: outFiles,
      resultsDir,
      alive: () => {
        if (!pidAlive(daemonPid)) throw new Error('the PM2 daemon died')
      },
    })
    await sampler.stop()
    const results = readResults(resultsDir)
    const tally = makeTally(results)
    // With `time`, each line is `<date>: <line>`.
    const strip = PM2_TIME ? (l) => l.slice(l.indexOf(': ') + 2) : (l) => l
    for (const f of outFiles()) await eachLine(f, (line) => tally.add(strip(line)))
    let done = 0
    for (const f of logFiles('error'))
      await eachLine(f, (l) => (done += /(^|: )done \d+ \d+$/.test(l) ? 1 : 0))
    return figures({
      results,
      tally,
      landed,
      samples: sampler.samples,
      extra: { doneLines: done, logFiles: outFiles().map((f) => basename(f)) },
    })
  } finally {
    await sampler?.stop()
    if (daemonPid) noteDescendants(daemonPid)
    await pm2('kill').catch(() => undefined)
    if (daemonPid) {
      // Unless `pm2 kill` ended it and its pid already names another process.
      if (startTimeOf(daemonPid) === daemonStart) killGroup(daemonPid, 'SIGKILL')
      spawned.delete(daemonPid)
    }
    // PM2 spawns each app detached: the writers noted above are killed at the end if any
    // outlived it.
  }
}

// ---------------------------------------------------------------------------------------------
// Baseline: no supervisor, each writer's stdout is a file (the writers' own ceiling here)

/** A run's directories for the writers' results and their logs (one file per writer). */
const writerDirs = (dir) => {
  const resultsDir = join(dir, 'results')
  const logDir = join(dir, 'logs')
  mkdirSync(resultsDir, { recursive: true })
  mkdirSync(logDir, { recursive: true })
  const files = Array.from({ length: WRITERS }, (_, i) => join(logDir, `writer-${i}.log`))
  return { resultsDir, files }
}

const runDirect = async (dir) => {
  const { resultsDir, files } = writerDirs(dir)
  const children = files.map((file, i) => {
    const fd = openSync(file, 'a')
    try {
      const child = spawn(process.execPath, [WRITER, resultsDir], {
        cwd: ROOT,
        env: { ...process.env, ...writerEnv(String(i)) },
        detached: true,
        stdio: ['ignore', fd, 'ignore'],
      })
      spawned.add(child.pid)
      return child
    } finally {
      closeSync(fd)
    }
  })
  try {
    const landed = await waitLanded({ files: () => files, resultsDir, alive: () => {} })
    const results = readResults(resultsDir)
    const tally = makeTally(results)
    for (const f of files) await eachLine(f, (line) => tally.add(line))
    return figures({ results, tally, landed, samples: [], extra: {} })
  } finally {
    for (const c of children) {
      killGroup(c.pid, 'SIGKILL')
      spawned.delete(c.pid)
    }
  }
}

// A raw copy in C: each writer's stdout is a pipe (made by sh) into `cat`, which copies raw
// chunks to a file. With many lines per write its cost per line is about the least a reader of
// pipes can spend; with one line per write it reads as soon as bytes arrive, a read and a
// write for every few lines, and costs more.

const runRawPipe = async (dir) => {
  const { resultsDir, files } = writerDirs(dir)
  const timesFile = (i) => join(dir, `cat-${i}.times`)
  const children = files.map((file, i) =>
    spawn(
      '/bin/sh',
      [
        '-c',
        // The subshell waits for cat, then `times` gives its children's (cat's) CPU time.
        'exec 2>/dev/null; "$0" "$1" "$2" | (cat > "$3"; times > "$4")',
        process.execPath,
        WRITER,
        resultsDir,
        file,
        timesFile(i),
      ],
      {
        cwd: ROOT,
        env: { ...process.env, ...writerEnv(String(i)) },
        detached: true,
        stdio: 'ignore',
      },
    ),
  )
  for (const c of children) spawned.add(c.pid)
  try {
    const landed = await waitLanded({ files: () => files, resultsDir, alive: () => {} })
    // cat's user + system time, the four summed: the second line of `times` (its children).
    let cpuMs = 0
    for (let i = 0; i < WRITERS; i++) {
      let text
      for (let n = 0; n < 200 && !text?.includes('\n', text.indexOf('\n') + 1); n++) {
        text = existsSync(timesFile(i)) ? readFileSync(timesFile(i), 'utf8') : undefined
        if (!text?.includes('\n', text.indexOf('\n') + 1)) await sleep(25)
      }
      const m = text?.split('\n')[1]?.match(/(\d+)m([\d.]+)s\s+(\d+)m([\d.]+)s/)
      cpuMs = m
        ? cpuMs + (Number(m[1]) * 60 + Number(m[2]) + Number(m[3]) * 60 + Number(m[4])) * 1000
        : NaN
    }
    const results = readResults(resultsDir)
    const tally = makeTally(results)
    for (const f of files) await eachLine(f, (line) => tally.add(line))
    const got = figures({ results, tally, landed, samples: [], extra: {} })
    // From the start of the writers to cat's end, not to the log's last growth: a little more
    // than the window, so cat's figure per line errs on the high side.
    return { ...got, cpuMs, cpuAvg: (cpuMs / got.windowMs) * 100 }
  } finally {
    for (const c of children) {
      killGroup(c.pid, 'SIGKILL')
      spawned.delete(c.pid)
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Profile summary: self time by function, from a .cpuprofile

const profileTop = (file, n = 12) => {
  const prof = JSON.parse(readFileSync(file, 'utf8'))
  const byId = new Map(prof.nodes.map((node) => [node.id, node]))
  const self = new Map()
  const dt = prof.timeDeltas
  let total = 0
  let idle = 0
  for (let i = 0; i < prof.samples.length; i++) {
    const node = byId.get(prof.samples[i])
    const d = dt[i] ?? 0
    total += d
    const cf = node.callFrame
    if (cf.functionName === '(idle)') {
      idle += d
      continue
    }
    const where = cf.url
      ? `${cf.url.replace(/^file:\/\//, '').replace(ROOT, '')}:${cf.lineNumber + 1}`
      : ''
    const key = `${cf.functionName || '(anonymous)'}${where ? ` ${where}` : ''}`
    self.set(key, (self.get(key) ?? 0) + d)
  }
  const busy = total - idle
  return {
    totalMs: total / 1000,
    busyMs: busy / 1000,
    top: [...self.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([k, us]) => ({ fn: k, ms: us / 1000, pct: (us / busy) * 100 })),
  }
}

// ---------------------------------------------------------------------------------------------

const f0 = (x) => (x === undefined || Number.isNaN(x) ? '-' : Math.round(x).toLocaleString('en-US'))
const f3 = (x) => (x === undefined || Number.isNaN(x) ? '-' : x.toFixed(3))
const f1 = (x) => (x === undefined || Number.isNaN(x) ? '-' : x.toFixed(1))
const r1 = (x) => (x === undefined || Number.isNaN(x) ? null : Math.round(x * 10) / 10)

const main = async () => {
  runDir = mkdtempSync(join(tmpdir(), 'tandem-bench-logs-'))
  // Ctrl-C or a TERM: kill every group we started and anything naming our temp dir.
  exitOnSignal(() => {
    killEverything()
    if (!KEEP) rmSync(runDir, { recursive: true, force: true })
  })
  let leftover = []
  try {
    const { commit, srcDirty } = await gitState(ROOT)
    const pm2Version = WITH_PM2 ? await ensurePm2(runGroup) : undefined
    const sdBin = WITH_SUPERVISORD ? supervisordBin() : undefined
    const sdVersion = sdBin ? supervisordVersion(sdBin) : undefined
    console.log('tandem unified log throughput benchmark')
    console.log(
      `  commit ${commit ?? 'unknown'}${srcDirty ? ' with uncommitted changes in src/' : ''}`,
    )
    const loadBefore = loadavg()[0]
    console.log(
      `  node ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model ?? 'unknown'}), ${process.platform} ${process.arch}`,
    )
    console.log(
      `  ${WRITERS} writers x ${DURATION_S} s, lines of ${LINE_BYTES} bytes, ${PATTERNS.join(' and ')} lines per write(), waiting for 'drain' when stdout is full`,
    )
    console.log(
      `  tandem: logs.stdout false, no rotation, one JSON record per line in tandem.log, GET /status every ${STATUS_EVERY_MS} ms during the flood${WITH_PM2 ? `; PM2 ${pm2Version}: fork mode, default log files (one per app)${PM2_TIME ? ', time: true (a date before each line)' : ''}, own PM2_HOME` : ''}${sdVersion ? `; supervisord ${sdVersion}: one log file per program, no rotation` : ''}`,
    )
    if (WITH_SUPERVISORD && !sdBin)
      console.log(
        '  supervisord not found: skipped (Debian/Ubuntu: `apt-get install supervisor`; elsewhere `pip install supervisor`)',
      )
    const tandems = BASE ? ['tandem', 'base'] : ['tandem']
    const order = PM2_FIRST
      ? ['pm2', 'supervisord', ...tandems]
      : [...tandems, 'pm2', 'supervisord']
    console.log(
      `  order in each pattern: ${order.join(', ')}${WITH_RAW_PIPE ? ', pipe into cat' : ''}${WITH_DIRECT ? ', no supervisor' : ''}; ${WARM_MB > 0 ? `before each, ${WARM_MB} MiB written to a file and deleted (page cache warmed alike for all)` : 'page cache not warmed (BENCH_WARM_MB=0)'}`,
    )

    const runners = {
      tandem: () => runTandem(join(runDir, `tandem-${linesPerWrite}`)),
      base: BASE
        ? () => runTandem(join(runDir, `base-${linesPerWrite}`), join(BASE, 'bin', 'tandem.js'))
        : undefined,
      pm2: WITH_PM2 ? () => runPm2(join(runDir, `pm2-${linesPerWrite}`)) : undefined,
      supervisord: sdBin ? () => runSupervisord(join(runDir, `sd-${linesPerWrite}`)) : undefined,
      direct: WITH_DIRECT ? () => runDirect(join(runDir, `direct-${linesPerWrite}`)) : undefined,
      rawPipe: WITH_RAW_PIPE ? () => runRawPipe(join(runDir, `pipe-${linesPerWrite}`)) : undefined,
    }
    const labels = {
      tandem: 'tandem',
      base: 'tandem base',
      pm2: `PM2 ${pm2Version}${PM2_TIME ? ' time' : ''}`,
      supervisord: `supervisord ${sdVersion}`,
      direct: 'no supervisor',
      rawPipe: 'pipe into cat',
    }
    const byPattern = []
    for (const pattern of PATTERNS) {
      linesPerWrite = pattern
      const got = {}
      for (const name of [...order, 'rawPipe', 'direct']) {
        const run = runners[name]
        if (!run) continue
        warmPageCache(runDir)
        got[name] = await run()
        // Each system's logs go before the next one writes (see "The order matters").
        if (!KEEP)
          for (const d of readdirSync(runDir))
            rmSync(join(runDir, d), { recursive: true, force: true })
      }
      byPattern.push({ pattern, got })
    }

    const goals = {}
    const verdict = (ok) => (ok === null ? 'NOT MEASURED' : ok ? 'MET' : 'NOT MET')
    const summaries = []
    for (const { pattern, got } of byPattern) {
      const systems = Object.entries(got).map(([k, v]) => [labels[k], v])
      const row = (label, fn) =>
        console.log(
          `  ${label.padEnd(46)}${systems.map(([, s]) => String(fn(s)).padStart(20)).join('')}`,
        )
      console.log('')
      console.log(`  ${pattern} line${pattern === 1 ? '' : 's'} per write():`)
      row('', (s) => systems.find(([, x]) => x === s)[0])
      row('lines written by the writers', (s) => f0(s.written))
      row('lines in the log', (s) => f0(s.inLog))
      row('lost (written, not in the log)', (s) => f0(s.lost))
      row('duplicated', (s) => f0(s.duplicated))
      row('malformed or unknown lines', (s) => f0(s.malformed + s.unknown))
      row('first write -> last line landed (s)', (s) => (s.windowMs / 1000).toFixed(2))
      row('  last writer done -> last line landed (ms)', (s) => f0(s.tailMs))
      row('lines/s reaching the log', (s) => f0(s.linesPerSec))
      row("writers' waits for 'drain' (pipe full)", (s) => f0(s.drainWaits))
      row('supervisor CPU, average (% of one core)', (s) => f1(s.cpuAvg))
      row('supervisor CPU per 1,000 lines (ms)', (s) => f3(s.cpuMs / (s.distinct / 1000)))
      row("writers' CPU, sum of 4 (% of one core)", (s) => f1((s.writersCpuMs / s.windowMs) * 100))
      row('supervisor peak RSS (MB)', (s) => f1(s.peakRssMb))
      row('log bytes per line', (s) => f1(s.logBytes / s.inLog))
      const t = got.tandem
      const c = t.control
      console.log(
        `  tandem during the flood: event-loop lag p50 ${f1(c.lag?.p50)} / p99 ${f1(c.lag?.p99)} / max ${f1(c.lag?.max)} ms; GET /status x ${c.requests} (${c.failures} failed${c.lastError ? `: ${c.lastError}` : ''}): p50 ${f1(c.p50)} / p99 ${f1(c.p99)} / max ${f1(c.max)} ms`,
      )
      if (got.base) {
        const b = got.base.control
        console.log(
          `  tandem base during the flood: event-loop lag p99 ${f1(b.lag?.p99)} ms (not in its status before this work: -); GET /status x ${b.requests}: p50 ${f1(b.p50)} / p99 ${f1(b.p99)} / max ${f1(b.max)} ms`,
        )
      }
      console.log(
        `  tandem: ${t.exitedEvents}/${WRITERS} exited events, ${t.doneLines}/${WRITERS} 'done' lines (stderr) in the log, ${t.unparsable} unparsable records, supervisor exit ${JSON.stringify(t.supervisorExit)}${t.errorLines.length ? `; error lines: ${t.errorLines.join(' | ')}` : ''}`,
      )
      for (const [name, s] of systems)
        if (s.malformed)
          console.log(`  ${name}: first malformed line: ${JSON.stringify(s.firstMalformed)}`)
      const peers = ['pm2', 'supervisord'].filter((k) => got[k])
      const best = peers.length ? Math.max(...peers.map((k) => got[k].linesPerSec)) : NaN
      const perK = (s) => s.cpuMs / (s.distinct / 1000)
      const key = `x${pattern}`
      goals[`${key}.noLoss`] = t.lost === 0 && t.duplicated === 0 && t.malformed + t.unknown === 0
      goals[`${key}.vsBest`] = peers.length ? t.linesPerSec >= GOALS.vsBest * best : null
      goals[`${key}.cpuVsPm2`] = got.pm2 ? perK(t) <= perK(got.pm2) : null
      goals[`${key}.peakRss`] = t.peakRssMb < GOALS.peakRssMb
      goals[`${key}.lagP99`] = c.lag ? c.lag.p99 < GOALS.lagP99Ms : null
      goals[`${key}.statusP99`] = c.requests ? c.p99 < GOALS.statusP99Ms : null
      console.log(`  goals (tandem, ${pattern} per write()):`)
      console.log(
        `    0 lost, duplicated or cut: ${t.lost} lost: ${verdict(goals[`${key}.noLoss`])}`,
      )
      console.log(
        `    >= ${GOALS.vsBest}x the faster of PM2 and supervisord: ${peers.length ? `${(t.linesPerSec / best).toFixed(2)}x (${f0(best)} lines/s)` : 'no peer'}: ${verdict(goals[`${key}.vsBest`])}`,
      )
      console.log(
        `    CPU per 1,000 lines <= PM2's: ${f3(perK(t))} vs ${got.pm2 ? f3(perK(got.pm2)) : '-'} ms: ${verdict(goals[`${key}.cpuVsPm2`])}`,
      )
      console.log(
        `    peak RSS < ${GOALS.peakRssMb} MB: ${f1(t.peakRssMb)} MB: ${verdict(goals[`${key}.peakRss`])}`,
      )
      console.log(
        `    event-loop lag p99 < ${GOALS.lagP99Ms} ms: ${f1(c.lag?.p99)} ms: ${verdict(goals[`${key}.lagP99`])}`,
      )
      console.log(
        `    GET /status p99 < ${GOALS.statusP99Ms} ms: ${f1(c.p99)} ms: ${verdict(goals[`${key}.statusP99`])}`,
      )
      if (got.rawPipe && peers.length)
        console.log(
          `    pipe into cat (a raw copy in C): ${f0(got.rawPipe.linesPerSec)} lines/s; the faster peer is at ${(best / got.rawPipe.linesPerSec).toFixed(2)}x of it, ${GOALS.vsBest}x that peer would be ${((GOALS.vsBest * best) / got.rawPipe.linesPerSec).toFixed(2)}x of it; tandem ${(t.linesPerSec / got.rawPipe.linesPerSec).toFixed(2)}x`,
        )
      if (peers.length) {
        // CPU accounting: at 1.25x the faster peer's lines/s, the writers alone (at the lowest
        // cost per line they had under any system in this run) take this share of the cores;
        // what is left, per 1,000 lines, is all a supervisor could spend reading, encoding and
        // writing. The raw-copy readers' own cost is beside it.
        const target = GOALS.vsBest * best
        const writerUs = Math.min(
          ...Object.values(got)
            .filter((s) => s.writersCpuMs > 0 && s.distinct > 0)
            .map((s) => (s.writersCpuMs * 1000) / s.distinct),
        )
        const writersCores = (target * writerUs) / 1e6
        const budget = ((cpus().length - writersCores) / target) * 1e6
        console.log(
          `    CPU budget at ${GOALS.vsBest}x the faster peer (${f0(target)} lines/s): the writers alone take ${f1(writersCores * 100)} % of ${cpus().length} cores (${f3(writerUs)} us a line, their lowest in this run), leaving ${budget > 0 ? f3(budget) : 'nothing'} ms per 1,000 lines for the supervisor; spent: ${[
            'supervisord',
            'rawPipe',
            'pm2',
            'tandem',
          ]
            .filter((k) => got[k] && Number.isFinite(perK(got[k])))
            .map((k) => `${labels[k]} ${f3(perK(got[k]))}`)
            .join(', ')} ms`,
        )
      }
      const summary = (s) => ({
        written: s.written,
        lost: s.lost,
        duplicated: s.duplicated,
        malformed: s.malformed + s.unknown,
        windowMs: s.windowMs,
        linesPerSec: Math.round(s.linesPerSec),
        cpuPer1000Ms: r1(perK(s) * 100) / 100,
        cpuAvgPct: r1(s.cpuAvg),
        peakRssMb: r1(s.peakRssMb),
        writersCpuPct: r1((s.writersCpuMs / s.windowMs) * 100),
      })
      summaries.push({
        linesPerWrite: pattern,
        ...Object.fromEntries(Object.entries(got).map(([k, v]) => [k, summary(v)])),
        tandemLagMs: c.lag,
        ...(got.base
          ? { baseStatusMs: { p50: r1(got.base.control.p50), p99: r1(got.base.control.p99) } }
          : {}),
        tandemStatusMs: { n: c.requests, p50: r1(c.p50), p99: r1(c.p99), max: r1(c.max) },
      })
    }

    const tandemProfiles = byPattern.map((p) => p.got.tandem.profile).filter(Boolean)
    for (const file of tandemProfiles) {
      const p = profileTop(file)
      console.log('')
      console.log(
        `  tandem supervisor CPU profile, main thread, whole run (start-up included): ${f0(p.busyMs)} ms busy of ${f0(p.totalMs)} ms; ${file}`,
      )
      for (const t of p.top) console.log(`    ${f1(t.pct).padStart(5)} %  ${t.fn}`)
    }

    console.log('')
    console.log(
      '  lines/s = distinct numbered lines found in the log / (last time the log grew, stat every 20 ms - earliest writer start)',
    )
    console.log(
      "  CPU = the supervisor process's user+system time, all its threads (tandem start / PM2 God daemon / supervisord), over that window, pidusage every 200 ms; peak RSS over the run",
    )
    console.log(
      `  1-minute load average: ${loadBefore.toFixed(2)} before, ${loadavg()[0].toFixed(2)} after (other work on the machine takes CPU from every run)`,
    )
    await sleep(500) // tandem's watchdog exits once the supervisor's pipe to it closes
    leftover = [
      ...ourProcesses(),
      ...descendantsLeft().map((pid) => ({ pid, cmd: cmdlineOf(pid) ?? '?' })),
    ]
    console.log(
      `  processes of this run still running: ${leftover.length ? leftover.map((p) => `${p.pid} ${p.cmd}`).join('; ') : 'none'}`,
    )
    console.log(
      JSON.stringify({
        bench: 'logs',
        node: process.version,
        cpus: cpus().length,
        writers: WRITERS,
        durationS: DURATION_S,
        lineBytes: LINE_BYTES,
        pm2: pm2Version,
        supervisord: sdVersion,
        patterns: summaries,
        goals,
        // false when one is missed; null when none is missed but one was not measured.
        goalsMet: Object.values(goals).includes(false)
          ? false
          : Object.values(goals).includes(null)
            ? null
            : true,
        commit,
        srcDirty,
        load1: [r1(loadBefore), r1(loadavg()[0])],
      }),
    )
  } finally {
    killEverything()
    if (KEEP) console.error(`bench/logs: kept ${runDir}`)
    else rmSync(runDir, { recursive: true, force: true })
  }
  if (leftover.length)
    throw new Error(`processes were left running (killed now): ${leftover.length}`)
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(`bench/logs: ${err?.stack ?? err}`)
    process.exit(1)
  },
)
