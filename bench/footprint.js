#!/usr/bin/env node
// Footprint benchmark: `npm run bench:footprint` (builds first) or `node bench/footprint.js`.
//
// Idle (the default): what a supervisor costs while nothing happens. tandem (twice: its default
// config, and with an http health check every 10 s on every instance), PM2 (installed from npm
// into a cache dir, its own PM2_HOME in a temp dir, fork mode) and supervisord (Debian's
// `supervisor` package: `apt-get install supervisor`; skipped, saying so, when it is missing)
// each run the same 20 instances of bench/footprint-server.js, a tiny idle HTTP server, all four
// at the same time on ports 28200-28279. Once every port accepts, and SETTLE_S more seconds (the
// starts' own work done, and tandem's sampling at its idle rate, which it takes a quiet minute
// after the last change: the window measures what months of idling cost), each supervisor's CPU is read from /proc/<pid>/stat (utime + stime, all
// its threads) at the start and the end of a FOOTPRINT_S window (default 60 s), in % of one core;
// its RSS (VmRSS) at the end. Nothing talks to the supervisors during the window. The figures are
// in clock ticks (10 ms): over 60 s one tick is 0.017 % of a core, so the table shows the ticks
// too. tandem's orphan watchdog (a small helper process) is shown apart and in the total.
//
// Soak (`node bench/footprint.js soak`): tandem with 8 instances of the same server writing a log
// line every 100 ms (every tenth one also a stderr line), one of them SIGKILLed at a random
// moment every 1-3 s, for SOAK_S seconds (default 3600). Every 10 s: the supervisor's RSS and open
// file descriptors (from /proc), its V8 heap used and its active timers and handles (from
// process.getActiveResourcesInfo()). tandem has no request that reports heap or timers, so
// the soak starts the supervisor with `node --import bench/footprint-probe.js`, which writes them
// to a file every 10 s (its own timer is one of those counted, and constant). Written to
// SOAK_OUT.csv and drawn as SOAK_OUT.svg (default docs/footprint-soak.{csv,svg}). The restart
// policy is tandem's default but for the crash-loop limit (raised: random kills would reach it)
// and the longest backoff, SOAK_BACKOFF_MAX_MS (default 2000): with the default 30 s, an instance
// killed again within 30 s of its start waits longer each time, and after a few minutes all 8
// spend most of the hour waiting (SOAK_BACKOFF_MAX_MS=30000 runs it so). The victim is picked
// among the running ones. At the end:
// RSS growth after the first 10 minutes, fds and timers first and last, and whether every
// killed instance came back (all 8 ready, restarts counted = kills).
//
// Environment: FOOTPRINT_S (idle window, s, default 60), SETTLE_S (default 70), BENCH_PM2=0,
// BENCH_SUPERVISORD=0 (skip a peer), PM2_CACHE (where pm2 is installed; default
// ~/.cache/tandem-bench/pm2), SOAK_S (default 3600), SOAK_OUT (path without extension),
// SOAK_BACKOFF_MAX_MS (default 2000), SOAK_PORT (the first of 8, default 28280).
import { execFileSync, spawn } from 'node:child_process'
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { connect } from 'node:net'
import { cpus, loadavg, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  ensurePm2,
  exitOnSignal,
  gitState,
  groupRunner,
  killGroup,
  killProcessesNaming,
  pm2Bin,
} from './common.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const CLI = join(ROOT, 'bin', 'tandem.js')
const SERVER = join(ROOT, 'bench', 'footprint-server.js')
const PROBE = join(ROOT, 'bench', 'footprint-probe.js')
const SOAK = process.argv[2] === 'soak'
const WINDOW_S = Number(process.env.FOOTPRINT_S ?? 60)
const SETTLE_S = Number(process.env.SETTLE_S ?? 70)
const WITH_PM2 = process.env.BENCH_PM2 !== '0'
const WITH_SUPERVISORD = process.env.BENCH_SUPERVISORD !== '0'
const SOAK_S = Number(process.env.SOAK_S ?? 3600)
const SOAK_OUT = process.env.SOAK_OUT ?? join(ROOT, 'docs', 'footprint-soak')
const SOAK_EVERY_S = 10
const SOAK_BACKOFF_MAX_MS = Number(process.env.SOAK_BACKOFF_MAX_MS ?? 2000)
const SOAK_PORT = Number(process.env.SOAK_PORT ?? 28280)
const SOAK_INSTANCES = 8
const INSTANCES = 20
/** In every server's command line: what is left of this run can be found and killed. */
const TAG = `footprint-${process.pid}`
const GOALS = { idlePercent: 0.1, vsPeers: 2, healthPercent: 0.3, soakGrowthMb: 5 }

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const f2 = (x) => (x === undefined || Number.isNaN(x) ? '-' : x.toFixed(2))
const f3 = (x) => (x === undefined || Number.isNaN(x) ? '-' : x.toFixed(3))

// ---------------------------------------------------------------------------------------------
// /proc

/** Fields of /proc/<pid>/stat after the command name (index 0 = field 3, state), or undefined. */
const procStat = (pid) => {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'latin1')
    return s.slice(s.lastIndexOf(')') + 2).split(' ')
  } catch {
    return undefined
  }
}
const TICKS_PER_S = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
/** utime + stime of the process (all its threads), in clock ticks. */
const cpuTicks = (pid) => {
  const f = procStat(pid)
  return f ? Number(f[11]) + Number(f[12]) : undefined
}
const rssBytes = (pid) => {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'latin1'))
    return m ? Number(m[1]) * 1024 : undefined
  } catch {
    return undefined
  }
}
const fdCount = (pid) => {
  try {
    return readdirSync(`/proc/${pid}/fd`).length
  } catch {
    return undefined
  }
}
const childrenOf = (pid) => {
  const found = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    if (Number(procStat(name)?.[1]) === pid) found.push(Number(name))
  }
  return found
}
const cmdlineOf = (pid) => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ')
  } catch {
    return ''
  }
}
/** The pids of running servers of this run on `port`s (a server's argv names its port). */
const serversOf = (prefix) => {
  const found = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const cmd = cmdlineOf(name)
    if (cmd.includes(SERVER) && cmd.includes(`${TAG}-${prefix}`) && procStat(name)?.[0] !== 'Z')
      found.push(Number(name))
  }
  return found
}

const accepting = (port) =>
  new Promise((resolve) => {
    const s = connect({ port, host: '127.0.0.1' })
    s.once('connect', () => (s.destroy(), resolve(true)))
    s.once('error', () => resolve(false))
  })
const waitAccepting = async (what, ports, alive, timeoutMs = 120_000) => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const open = await Promise.all(ports.map(accepting))
    if (open.every(Boolean)) return
    alive()
    if (Date.now() > deadline)
      throw new Error(
        `${what}: ports ${ports.filter((_, i) => !open[i]).join(', ')} not accepting after ${timeoutMs} ms`,
      )
    await sleep(250)
  }
}
const range = (from, n) => Array.from({ length: n }, (_, i) => from + i)

// ---------------------------------------------------------------------------------------------
// The supervisors, each with its 20 servers

/** Every group this run started, killed at the end whatever happens. */
const spawned = new Set()
const runGroup = groupRunner({ cwd: ROOT, tracked: spawned, timeoutMs: 120_000 })

/** A long-running process in its own group; stderr kept for error messages. */
const daemon = (cmd, args, env = process.env) => {
  const child = spawn(cmd, args, {
    cwd: ROOT,
    env,
    detached: true,
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  spawned.add(child.pid)
  let stderr = ''
  child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-2000)))
  const exited = new Promise((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  )
  let ended
  void exited.then((e) => (ended = e))
  return {
    pid: child.pid,
    exited,
    stderr: () => stderr,
    alive: (what) => {
      if (ended) throw new Error(`${what} exited (${JSON.stringify(ended)}): ${stderr.slice(-500)}`)
    },
  }
}

const tandemConfig = (dir, prefix, ports, { health = false, logMs, crashLoop, backoff } = {}) => ({
  stateDir: join(dir, 'state'),
  logs: { dir: join(dir, 'logs'), stdout: false },
  components: {
    web: {
      command: [process.execPath, SERVER, `${TAG}-${prefix}`],
      cwd: ROOT,
      env: { PORT: '{port}', ...(logMs ? { LOG_MS: String(logMs) } : {}) },
      instances: ports.length,
      port: ports[0],
      ...(health ? { health: { type: 'http', path: '/health', intervalMs: 10_000 } } : {}),
      ...(crashLoop ? { crashLoop } : {}),
      ...(backoff ? { backoff } : {}),
    },
  },
})

const startTandem = async (dir, prefix, ports, opts = {}) => {
  mkdirSync(dir, { recursive: true })
  const cfg = join(dir, 'tandem.json')
  writeFileSync(cfg, JSON.stringify(tandemConfig(dir, prefix, ports, opts), null, 2))
  const nodeArgs = opts.probe ? ['--import', PROBE] : []
  const env = opts.probe ? { ...process.env, FOOTPRINT_PROBE: opts.probe } : process.env
  const d = daemon(process.execPath, [...nodeArgs, CLI, 'start', '-c', cfg], env)
  await waitAccepting(`tandem (${prefix})`, ports, () => d.alive('tandem'))
  const helpers = () => childrenOf(d.pid).filter((p) => cmdlineOf(p).includes('watchdog-main'))
  return {
    ...d,
    cfg,
    pids: () => ({ main: d.pid, helpers: helpers() }),
    stop: async () => {
      killGroup(d.pid, 'SIGTERM')
      await Promise.race([d.exited, sleep(20_000)])
      killGroup(d.pid, 'SIGKILL')
    },
  }
}

const startPm2 = async (dir, prefix, ports) => {
  const home = join(dir, 'home') // PM2_HOME: never the user's ~/.pm2
  mkdirSync(home, { recursive: true })
  const env = { ...process.env, PM2_HOME: home }
  const pm2 = (...args) => runGroup(process.execPath, [pm2Bin(), ...args], { env })
  const ecosystem = join(dir, 'ecosystem.config.cjs')
  const apps = ports.map((port, i) => ({
    name: `web-${i}`,
    script: SERVER,
    args: [`${TAG}-${prefix}`],
    cwd: ROOT,
    interpreter: process.execPath,
    exec_mode: 'fork',
    env: { PORT: String(port) },
  }))
  writeFileSync(ecosystem, `module.exports = ${JSON.stringify({ apps }, null, 2)}\n`)
  const started = await pm2('start', ecosystem)
  if (started.code !== 0) throw new Error(`pm2 start failed: ${started.stderr || started.stdout}`)
  const pid = Number(readFileSync(join(home, 'pm2.pid'), 'utf8'))
  spawned.add(pid) // detached by PM2: its own group
  const alive = () => {
    if (procStat(pid) === undefined) throw new Error('the PM2 daemon died')
  }
  await waitAccepting('PM2', ports, alive)
  return {
    pid,
    pids: () => ({ main: pid, helpers: [] }),
    stop: async () => {
      await pm2('kill').catch(() => undefined)
      killGroup(pid, 'SIGKILL')
    },
  }
}

const supervisordBin = () => {
  for (const p of ['/usr/bin/supervisord', '/usr/local/bin/supervisord'])
    if (existsSync(p)) return p
  return undefined
}
const supervisordVersion = (bin) => {
  try {
    return execFileSync(bin, ['--version'], { encoding: 'utf8' }).trim()
  } catch {
    return 'unknown'
  }
}

const startSupervisord = async (dir, prefix, ports) => {
  mkdirSync(join(dir, 'logs'), { recursive: true })
  const conf = join(dir, 'supervisord.conf')
  const programs = ports.map(
    (port, i) => `[program:web-${i}]
command=${process.execPath} ${SERVER} ${TAG}-${prefix}
directory=${ROOT}
environment=PORT="${port}"
autorestart=true
stopasgroup=true
killasgroup=true
stdout_logfile=${join(dir, 'logs', `web-${i}.out.log`)}
stderr_logfile=${join(dir, 'logs', `web-${i}.err.log`)}
`,
  )
  writeFileSync(
    conf,
    `[supervisord]
nodaemon=true
user=${process.env.USER ?? 'root'}
logfile=${join(dir, 'supervisord.log')}
pidfile=${join(dir, 'supervisord.pid')}
childlogdir=${join(dir, 'logs')}

${programs.join('\n')}`,
  )
  const d = daemon(supervisordBin(), ['-n', '-c', conf])
  await waitAccepting('supervisord', ports, () => d.alive('supervisord'))
  return {
    ...d,
    pids: () => ({ main: d.pid, helpers: [] }),
    stop: async () => {
      killGroup(d.pid, 'SIGTERM')
      await Promise.race([d.exited, sleep(20_000)])
      killGroup(d.pid, 'SIGKILL')
    },
  }
}

// ---------------------------------------------------------------------------------------------
// Idle

const idle = async (dir) => {
  const { commit, srcDirty } = await gitState(ROOT)
  const pm2Version = WITH_PM2 ? await ensurePm2(runGroup) : undefined
  const sdBin = supervisordBin()
  if (WITH_SUPERVISORD && !sdBin)
    console.log(
      '  supervisord not found: skipped (Debian/Ubuntu: `sudo apt-get install supervisor`; elsewhere `pip install supervisor`)',
    )
  const withSd = WITH_SUPERVISORD && sdBin
  console.log('tandem footprint benchmark: idle')
  console.log(
    `  commit ${commit ?? 'unknown'}${srcDirty ? ' with uncommitted changes in src/' : ''}`,
  )
  console.log(
    `  node ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model ?? 'unknown'}), ${process.platform} ${process.arch}, clock ticks ${TICKS_PER_S}/s`,
  )
  console.log(
    `  ${INSTANCES} idle instances of bench/footprint-server.js under each supervisor, all at once; ${SETTLE_S} s to settle, then a ${WINDOW_S} s window`,
  )

  const systems = [
    [
      'tandem (default config)',
      () => startTandem(join(dir, 'tandem'), 't', range(28200, INSTANCES)),
    ],
    [
      'tandem (http health check every 10 s)',
      () => startTandem(join(dir, 'tandem-health'), 'h', range(28220, INSTANCES), { health: true }),
    ],
    ...(WITH_PM2
      ? [
          [
            `PM2 ${pm2Version} (God daemon)`,
            () => startPm2(join(dir, 'pm2'), 'p', range(28240, INSTANCES)),
          ],
        ]
      : []),
    ...(withSd
      ? [
          [
            supervisordVersion(sdBin) && `supervisord ${supervisordVersion(sdBin)}`,
            () => startSupervisord(join(dir, 'sd'), 's', range(28260, INSTANCES)),
          ],
        ]
      : []),
  ]
  const running = []
  try {
    for (const [name, start] of systems) {
      process.stdout.write(`  starting ${name}... `)
      running.push({ name, sys: await start() })
      console.log('all ports accept')
    }
    await sleep(SETTLE_S * 1000)
    const load0 = loadavg()[0]
    const ticks = (pids) => [pids.main, ...pids.helpers].map((p) => cpuTicks(p) ?? NaN)
    const before = running.map((r) => {
      const pids = r.sys.pids()
      return { pids, ticks: ticks(pids) }
    })
    const t0 = performance.now()
    await sleep(WINDOW_S * 1000)
    const seconds = (performance.now() - t0) / 1000
    const results = running.map((r, i) => {
      const { pids, ticks: t0s } = before[i]
      const t1s = ticks(pids)
      const used = t1s.map((t, j) => t - t0s[j])
      const pct = (n) => (n / TICKS_PER_S / seconds) * 100
      const mainTicks = used[0]
      const helperTicks = used.slice(1).reduce((a, b) => a + b, 0)
      return {
        name: r.name,
        mainTicks,
        helperTicks,
        mainPercent: pct(mainTicks),
        totalPercent: pct(mainTicks + helperTicks),
        rssMb: (rssBytes(pids.main) ?? NaN) / 2 ** 20,
        helperRssMb: pids.helpers.reduce((a, p) => a + (rssBytes(p) ?? 0), 0) / 2 ** 20,
        helpers: pids.helpers.length,
      }
    })
    console.log('')
    console.log(
      `  ${'supervisor'.padEnd(44)} ${'CPU % (ticks)'.padStart(16)} ${'+ helpers'.padStart(16)} ${'RSS MB'.padStart(8)} ${'+ helpers'.padStart(10)}`,
    )
    for (const r of results)
      console.log(
        `  ${r.name.padEnd(44)} ${`${f3(r.mainPercent)} (${r.mainTicks})`.padStart(16)} ${r.helpers ? `${f3(r.totalPercent)} (${r.mainTicks + r.helperTicks})`.padStart(16) : '-'.padStart(16)} ${f2(r.rssMb).padStart(8)} ${r.helpers ? f2(r.rssMb + r.helperRssMb).padStart(10) : '-'.padStart(10)}`,
      )
    const [tDefault, tHealth, ...peers] = results
    const lowerPeer = peers.length ? Math.min(...peers.map((p) => p.mainPercent)) : NaN
    const verdict = (ok) => (ok === undefined ? 'n/a' : ok ? 'MET' : 'NOT MET')
    const goals = {
      idle: tDefault.mainPercent <= GOALS.idlePercent,
      vsPeers: peers.length ? tDefault.mainPercent <= GOALS.vsPeers * lowerPeer : undefined,
      health: tHealth.mainPercent <= GOALS.healthPercent,
    }
    console.log('')
    console.log(
      `  goals (the supervisor process itself; a tick is ${f3(100 / TICKS_PER_S / seconds)} % over this window):`,
    )
    console.log(
      `    default config <= ${GOALS.idlePercent} %: ${f3(tDefault.mainPercent)} %: ${verdict(goals.idle)}`,
    )
    console.log(
      `    default config <= ${GOALS.vsPeers}x the lower peer (${f3(lowerPeer)} %): ${verdict(goals.vsPeers)}`,
    )
    console.log(
      `    health checks every 10 s <= ${GOALS.healthPercent} %: ${f3(tHealth.mainPercent)} %: ${verdict(goals.health)}`,
    )
    console.log(
      `  1-minute load average: ${load0.toFixed(2)} at the window's start, ${loadavg()[0].toFixed(2)} at its end`,
    )
    console.log(
      JSON.stringify({
        bench: 'footprint-idle',
        node: process.version,
        cpus: cpus().length,
        instances: INSTANCES,
        windowS: Math.round(seconds * 10) / 10,
        ticksPerS: TICKS_PER_S,
        results: results.map((r) => ({
          ...r,
          mainPercent: Math.round(r.mainPercent * 1000) / 1000,
          totalPercent: Math.round(r.totalPercent * 1000) / 1000,
          rssMb: Math.round(r.rssMb * 10) / 10,
          helperRssMb: Math.round(r.helperRssMb * 10) / 10,
        })),
        goals,
        commit,
        srcDirty,
      }),
    )
  } finally {
    for (const r of running) await r.sys.stop().catch(() => undefined)
  }
}

// ---------------------------------------------------------------------------------------------
// Soak

const soak = async (dir) => {
  const { commit, srcDirty } = await gitState(ROOT)
  const ports = range(SOAK_PORT, SOAK_INSTANCES)
  const probeFile = join(dir, 'probe.jsonl')
  const csv = `${SOAK_OUT}.csv`
  const svg = `${SOAK_OUT}.svg`
  mkdirSync(dirname(csv), { recursive: true })
  console.log('tandem footprint benchmark: soak')
  console.log(
    `  commit ${commit ?? 'unknown'}${srcDirty ? ' with uncommitted changes in src/' : ''}`,
  )
  console.log(
    `  ${SOAK_INSTANCES} instances logging 10 lines/s each, one SIGKILLed every 1-3 s at random (backoff.maxMs ${SOAK_BACKOFF_MAX_MS}), for ${SOAK_S} s; a sample every ${SOAK_EVERY_S} s to ${csv}`,
  )
  // A crash loop is 5 exits a minute by default: random kills reach it now and then, and the
  // soak is about memory, not that policy.
  const sup = await startTandem(join(dir, 'tandem'), 'k', ports, {
    logMs: 100,
    crashLoop: { maxExits: 100_000 },
    backoff: { maxMs: SOAK_BACKOFF_MAX_MS },
    probe: probeFile,
  })
  const started = performance.now()
  const rows = []
  let kills = 0
  let stopKilling = false
  const killer = (async () => {
    while (!stopKilling) {
      await sleep(1000 + Math.random() * 2000)
      if (stopKilling) break
      const pids = serversOf('k')
      const victim = pids[Math.floor(Math.random() * pids.length)]
      if (victim === undefined) continue
      try {
        process.kill(victim, 'SIGKILL')
        kills++
      } catch {
        // exited meanwhile
      }
    }
  })()
  /** The last line each thread wrote: the main thread's and the log thread's. */
  const probe = () => {
    try {
      const lines = readFileSync(probeFile, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l))
      const last = (thread) => lines.findLast((l) => l.thread === thread)
      return { main: last('main'), log: last('log') }
    } catch {
      return {}
    }
  }
  writeFileSync(csv, 't_s,rss_mb,heap_used_mb,log_heap_used_mb,fds,timers,handles,kills\n')
  try {
    for (let i = 1; i * SOAK_EVERY_S <= SOAK_S; i++) {
      await sleep(started + i * SOAK_EVERY_S * 1000 - performance.now())
      sup.alive('tandem')
      const { main: p, log: lp } = probe()
      const row = {
        t: Math.round((performance.now() - started) / 1000),
        rss: (rssBytes(sup.pid) ?? NaN) / 2 ** 20,
        heap: p ? p.heapUsed / 2 ** 20 : NaN,
        logHeap: lp ? lp.heapUsed / 2 ** 20 : NaN,
        fds: fdCount(sup.pid) ?? NaN,
        timers: p?.timers ?? NaN,
        handles: p?.handles ?? NaN,
        kills,
      }
      rows.push(row)
      appendFileSync(
        csv,
        `${row.t},${row.rss.toFixed(1)},${row.heap.toFixed(1)},${row.logHeap.toFixed(1)},${row.fds},${row.timers},${row.handles},${row.kills}\n`,
      )
      if (i % 6 === 0)
        console.log(
          `  ${row.t} s: RSS ${row.rss.toFixed(1)} MB, heap ${row.heap.toFixed(1)} MB (log thread ${row.logHeap.toFixed(1)}), fds ${row.fds}, timers ${row.timers}, handles ${row.handles}, kills ${kills}`,
        )
    }
    stopKilling = true
    await killer
    // Every killed instance must come back: all ready, and as many restarts as kills.
    const deadline = Date.now() + 90_000
    let st
    for (;;) {
      st = await runGroup(process.execPath, [CLI, 'status', '--json', '-c', sup.cfg]).then((r) =>
        JSON.parse(r.stdout),
      )
      const ready = st.instances.filter((i) => i.state === 'ready').length
      if (ready === SOAK_INSTANCES || Date.now() > deadline) break
      await sleep(1000)
    }
    const restarts = st.instances.reduce((a, i) => a + i.restarts, 0)
    const ready = st.instances.filter((i) => i.state === 'ready').length
    writeFileSync(svg, chart(rows))
    const after10 = rows.find((r) => r.t >= 600)
    const last = rows[rows.length - 1]
    const growth = after10 && last !== after10 ? last.rss - after10.rss : NaN
    const first = rows[0]
    console.log('')
    console.log(`  samples: ${rows.length}; chart: ${svg}`)
    console.log(
      `  RSS: ${f2(first.rss)} MB at ${first.t} s, ${f2(after10?.rss)} MB at ${after10?.t ?? '-'} s, ${f2(last.rss)} MB at ${last.t} s (max ${f2(Math.max(...rows.map((r) => r.rss)))}); growth after 10 min ${f2(growth)} MB (goal < ${GOALS.soakGrowthMb})`,
    )
    console.log(
      `  heap used: ${f2(first.heap)} MB first, ${f2(last.heap)} MB last (max ${f2(Math.max(...rows.map((r) => r.heap)))}); log thread ${f2(first.logHeap)} MB first, ${f2(last.logHeap)} MB last (max ${f2(Math.max(...rows.map((r) => r.logHeap)))})`,
    )
    console.log(
      `  fds: ${first.fds} first, ${last.fds} last (min ${Math.min(...rows.map((r) => r.fds))}, max ${Math.max(...rows.map((r) => r.fds))}); timers: ${first.timers} first, ${last.timers} last (max ${Math.max(...rows.map((r) => r.timers))}); handles ${first.handles} first, ${last.handles} last`,
    )
    console.log(
      `  kills: ${kills}; restarts counted by tandem: ${restarts}; ready at the end: ${ready}/${SOAK_INSTANCES}`,
    )
    console.log(
      JSON.stringify({
        bench: 'footprint-soak',
        node: process.version,
        soakS: SOAK_S,
        samples: rows.length,
        rssMb: {
          first: first.rss,
          at10min: after10?.rss ?? null,
          last: last.rss,
          max: Math.max(...rows.map((r) => r.rss)),
        },
        growthAfter10MinMb: Number.isNaN(growth) ? null : Math.round(growth * 10) / 10,
        heapMb: { first: first.heap, last: last.heap },
        logHeapMb: { first: first.logHeap, last: last.logHeap },
        fds: { first: first.fds, last: last.fds, max: Math.max(...rows.map((r) => r.fds)) },
        timers: {
          first: first.timers,
          last: last.timers,
          max: Math.max(...rows.map((r) => r.timers)),
        },
        kills,
        restarts,
        ready,
        commit,
        srcDirty,
      }),
    )
  } finally {
    stopKilling = true
    await sup.stop()
  }
}

/** A small SVG: RSS and both threads' heaps (MB) above, fds and timers below, against minutes. */
const chart = (rows) => {
  const W = 640
  const H = 150
  const PAD = { l: 44, r: 110, t: 22, b: 24 }
  const tMax = Math.max(60, rows[rows.length - 1]?.t ?? 60)
  const panel = (y0, title, series) => {
    const all = series.flatMap((s) => rows.map((r) => r[s.key])).filter((v) => Number.isFinite(v))
    const vMax = Math.max(1, ...all) * 1.1
    const x = (t) => PAD.l + ((W - PAD.l - PAD.r) * t) / tMax
    const y = (v) => y0 + PAD.t + (H - PAD.t - PAD.b) * (1 - v / vMax)
    const lines = series.map((s, i) => {
      const pts = rows
        .filter((r) => Number.isFinite(r[s.key]))
        .map((r) => `${x(r.t).toFixed(1)},${y(r[s.key]).toFixed(1)}`)
      return `<polyline fill="none" stroke="${s.color}" stroke-width="1.5" points="${pts.join(' ')}"/>
<text x="${W - PAD.r + 8}" y="${y0 + PAD.t + 12 + i * 16}" fill="${s.color}">${s.label}</text>`
    })
    const ticks = [0, 0.5, 1].map(
      (f) =>
        `<text x="${PAD.l - 4}" y="${y((vMax * f) / 1.1) + 4}" text-anchor="end">${Math.round((vMax * f) / 1.1)}</text>`,
    )
    const minutes = tMax / 60
    const step = minutes > 30 ? 10 : minutes > 10 ? 5 : 1
    const xt = []
    for (let m = 0; m <= minutes; m += step)
      xt.push(`<text x="${x(m * 60)}" y="${y0 + H - 6}" text-anchor="middle">${m}</text>`)
    return `<text x="${PAD.l}" y="${y0 + 14}" font-weight="bold">${title}</text>
<rect x="${PAD.l}" y="${y0 + PAD.t}" width="${W - PAD.l - PAD.r}" height="${H - PAD.t - PAD.b}" fill="none" stroke="#ccc"/>
${ticks.join('\n')}
${xt.join('\n')}
${lines.join('\n')}`
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${2 * H + 16}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
${panel(0, 'tandem soak: memory (MB) against minutes', [
  { key: 'rss', label: 'RSS', color: '#c0392b' },
  { key: 'heap', label: 'heap used', color: '#2471a3' },
  { key: 'logHeap', label: 'log thread heap', color: '#5dade2' },
])}
${panel(H + 16, 'open fds and active timers / handles', [
  { key: 'fds', label: 'fds', color: '#7d3c98' },
  { key: 'timers', label: 'timers', color: '#1e8449' },
  { key: 'handles', label: 'handles', color: '#b9770e' },
])}
</svg>
`
}

// ---------------------------------------------------------------------------------------------

const main = async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-footprint-'))
  const cleanup = () => {
    for (const pgid of spawned) killGroup(pgid, 'SIGKILL')
    killProcessesNaming(TAG)
    rmSync(dir, { recursive: true, force: true })
  }
  exitOnSignal(cleanup)
  try {
    await (SOAK ? soak(dir) : idle(dir))
  } finally {
    cleanup()
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(`bench/footprint: ${err?.stack ?? err}`)
    process.exit(1)
  },
)
