#!/usr/bin/env node
// Failover benchmark: `npm run bench:failover` (builds first) or `node bench/failover.js`.
//
// Two `tandem start` supervisors on this machine form one hot-standby cluster, as in
// test/integration/ha.test.ts: nodes `a` and `b`, each with its own state dir, control HTTP port
// and component ports, and the default lease timings (renewMs 250, selfFenceMs 1000, takeoverMs
// 2000, pollMs 100). The shared dir is one backing directory (a local filesystem, made a cluster
// once by `tandem cluster init` and reused for the whole run) that each node reaches through its
// own view: a FUSE passthrough, test/fixtures/faultfs.py (bench/faultfs.js mounts it), into
// which faults are injected on one view only, as one host sees slow, stale or hung shared
// storage (issue 11). BENCH_FAULTFS=0 gives both nodes the backing dir itself (no FUSE; the
// fault scenarios are then refused). Each node runs two active-only components:
//   api  cold standby: test/fixtures/server.js, started only on the active node;
//   svc  hot standby: test/fixtures/ha-child.js (the child helper), pre-started on the standby
//        (GET answers 503 "standby"), activated by IPC on promotion (GET answers 200 "active N").
//
// Scenarios, interleaved (kill, stop, switchover, lost-reply, ...) so that the machine's load
// drifts over all of them alike, TRIALS times each:
//   kill          SIGKILL of the active supervisor (its children die with it: parent-death
//                 signal and the orphan watchdog); afterwards it is started again, as the new
//                 standby.
//   stop          SIGSTOP of the active supervisor process (not its group: a frozen supervisor,
//                 its children and watchdog run on); once the standby has taken over, SIGCONT: it
//                 wakes up fenced and stays as the new standby.
//   switchover    `tandem switchover -c <active's config>` run as an operator would (a new Node
//                 process: its start-up is part of the time).
// With storage faults (the view's rules are cleared once the standby serves):
//   lost-reply    as kill, while the standby's view answers the rename of its claim onto
//                 claims/<epoch> with EEXIST after doing it (once): a lost reply, which the
//                 standby must resolve by reading the claim's owner.
//   late-standby  for FAULT_PHASE_MS (5 s) the standby's reads of hb/* get their reply 2.5 s late
//                 (each with probability 0.3) while the active runs on, then kill as above (the
//                 late replies go on until the standby serves). A promotion before the kill is a
//                 false takeover (goal 0); its trial gives no failover time.
//   slow-writes   for FAULT_PHASE_MS the active's heartbeat writes (write on hb/*) take 650 ms
//                 one time in five, then kill. Takeovers and the active's `fenced` lines before
//                 the kill are counted, not a goal: one slow write changes nothing, but two in a
//                 row take 1.3 s, more than selfFenceMs (writes to one file are serialized), and
//                 the active fences (docs/ha.md, faults). Overlaps: goal 0, as everywhere.
//   hung-active   every operation on the active's view hangs; 1 s later the active gets SIGTERM.
//                 Timed: the standby serving (from the hang), and the hung node's exit (from its
//                 SIGTERM), whose goal is its stop bound as the systemd unit has it
//                 (serviceTimeouts(plan).stopMs, src/ops/service-timeouts.ts: the handover,
//                 twice the longest stop.timeoutMs of an active-only component plus takeoverMs;
//                 the longest stop chain, twice stop.timeoutMs plus 1 s per component; 5 s to
//                 close: 16 s here). Then the view is released and the node started again.
//   enospc        the active's heartbeat writes fail with ENOSPC: the standby takes over, the
//                 old active logs `fenced` and stays as the new standby.
// On etcd (issue 12), the same two nodes and components run a second cluster beside the first,
// whose lease is in a 3-member etcd on loopback that the benchmark starts itself (bench/etcd.js:
// Debian's etcd-server, ports 28100-28199), `ha.backend {"type": "etcd", "endpoints": [the three
// members], "prefix": "/tandem/bench"}`, made a cluster by `tandem cluster init`. It runs kill,
// stop and switchover (the storage faults are a shared directory's), interleaved with the shared
// directory's trials, so both backends are measured in the same run under the same load (both
// clusters are up for the whole run). BENCH_BACKENDS chooses.
// Each trial is timed from the instant the signal is sent, the command spawned or the fault
// set (hung-active, enospc; the kill for lost-reply, late-standby, slow-writes), on this
// process's monotonic clock, to the first answer received of:
//   /leader 200  the standby's control HTTP /leader answering 200;
//   api serving  the standby's cold api answering an HTTP GET (not a bare connect: the
//                supervisor's port-free check listens for an instant before spawning);
//   svc active   the standby's hot svc answering 200 "active <epoch>";
//   complete     the latest of those three: the new active fully serving.
// Each of the six endpoints (/leader, api, svc on both nodes) is asked every 10 ms, each in its
// own loop, for the whole trial (from before the trigger or the fault to the cluster having two
// nodes again), so a frozen node's pending request does not hold up the others; the same
// answers give the timings. Two 200 answers of one kind from different nodes whose requests
// were in flight at overlapping times are an overlap (two actives, or two active-only servers
// serving, at one instant): must be 0, in every scenario. The supervisors' own log lines
// (`promoted`, `released`, `fenced`, `ready`), timed on arrival here, give the breakdown.
//
// Environment:
//   TRIALS=N             trials per scenario (default 20; 3 with QUICK=1)
//   QUICK=1              a quick try: 3 trials per scenario
//   BENCH_SCENARIOS=...  comma-separated subset of kill,stop,switchover,lost-reply,
//                        late-standby,slow-writes,hung-active,enospc (default all of them)
//   BENCH_HOT=0          leave out the hot svc component (cold api only)
//   BENCH_FAULTFS=0      no FUSE views: both nodes use the backing dir (kill, stop, switchover)
//   BENCH_BACKENDS=...   comma-separated subset of dir,etcd (default both); etcd runs the
//                        chosen scenarios among kill, stop, switchover
//   BENCH_OUT=file       also write every trial's figures there (JSON), for a closer look
//
// Ports: found free in 28000-28099 (the nodes) and 28100-28199 (etcd's members), below the
// kernel's ephemeral range (32768-60999), so that the benchmark's own connections and their
// TIME_WAITs never hold one of them. Every process
// runs in its own process group and is killed by group at the end, and on Ctrl-C; the
// children's command lines carry the temp dir, so the last check finds any leftover of ours.
// The views are released (held operations let through) before anything is stopped, and
// unmounted at the end and on Ctrl-C; the temp dir is removed only once nothing is mounted in it.
import { execFile, spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { Agent, request } from 'node:http'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { createInterface } from 'node:readline'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { promisify } from 'node:util'
import { canBind, exitOnSignal, gitState, killGroup } from './common.js'
import { etcdMissing, startEtcd } from './etcd.js'
import { faultFsMissing, mountpoints, mountView } from './faultfs.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const CLI = join(ROOT, 'bin', 'tandem.js')
const SERVER = join(ROOT, 'test', 'fixtures', 'server.js')
const HA_CHILD = join(ROOT, 'test', 'fixtures', 'ha-child.js')
const QUICK = process.env.QUICK === '1'
const TRIALS = Number(process.env.TRIALS ?? (QUICK ? 3 : 20))
const HOT = process.env.BENCH_HOT !== '0'
const PLAIN_SCENARIOS = ['kill', 'stop', 'switchover']
/** The scenarios with storage faults, injected through one node's faultfs view. */
const FAULT_SCENARIOS = ['lost-reply', 'late-standby', 'slow-writes', 'hung-active', 'enospc']
/** Scenarios whose trigger is a kill -9 of the active (after a fault, for some). */
const KILLS = ['kill', 'lost-reply', 'late-standby', 'slow-writes']
/** Scenarios held to the crash failover goal. */
const CRASHES = ['kill', 'stop', 'lost-reply']
const FAULTFS = process.env.BENCH_FAULTFS !== '0'
const SCENARIOS = (process.env.BENCH_SCENARIOS ?? [...PLAIN_SCENARIOS, ...FAULT_SCENARIOS].join())
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean)
const BACKENDS = (process.env.BENCH_BACKENDS ?? 'dir,etcd')
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean)
/** The scenarios each backend runs: etcd has no shared directory to inject faults into. */
const scenariosOf = (backend) =>
  backend === 'dir' ? SCENARIOS : SCENARIOS.filter((s) => PLAIN_SCENARIOS.includes(s))
/** A backend and a scenario, as the report names them: `kill`, `etcd kill`. */
const labelOf = (backend, scenario) => (backend === 'dir' ? scenario : `${backend} ${scenario}`)
const ETCD_PREFIX = '/tandem/bench'
const HOST = '127.0.0.1'
const SAMPLE_MS = 10
/** Longer than any SIGSTOP here: a frozen node's late answer is still seen, and still counts. */
const REQUEST_TIMEOUT_MS = 10_000
const STEP_TIMEOUT_MS = 20_000
const PORT_BASE = 28000
const PORT_SPAN = 100
const ETCD_PORT_BASE = 28100
const GOALS = { crashP99Ms: 2500, switchoverP99Ms: 500 }
/** How long late-standby and slow-writes run their fault with both nodes up, before the kill. */
const FAULT_PHASE_MS = 5000
/** hung-active: the SIGTERM to the hung node comes this long after the hang starts. */
const HUNG_TERM_AFTER_MS = 1000

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const run = promisify(execFile)

// ---------------------------------------------------------------------------------------------
// Ports, probes, processes

const freePorts = async (count, base = PORT_BASE) => {
  const found = []
  const start = Math.floor(Math.random() * PORT_SPAN)
  for (let i = 0; i < PORT_SPAN && found.length < count; i++) {
    const port = base + ((start + i) % PORT_SPAN)
    if (await canBind(port)) found.push(port)
  }
  if (found.length < count)
    throw new Error(`found only ${found.length} free ports in ${base}-${base + PORT_SPAN - 1}`)
  return found
}

/** One HTTP GET: {code, body}; code 0 when there is no answer (refused, reset, timed out). */
const get = (agent, port, path, timeoutMs) =>
  new Promise((resolve) => {
    const req = request(
      { host: HOST, port, path, agent, signal: AbortSignal.timeout(timeoutMs) },
      (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (c) => (body += c))
        res.on('end', () => resolve({ code: res.statusCode ?? 0, body }))
        res.on('error', () => resolve({ code: 0, body: '' }))
      },
    )
    req.on('error', () => resolve({ code: 0, body: '' }))
    req.end()
  })

const pidAlive = (pid) => {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return err.code === 'EPERM'
  }
}

const cmdline = (pid) => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim()
  } catch {
    return undefined
  }
}

/** Every process {pid, cmd} whose command line contains `needle`, this one excepted. */
const processesWith = (needle) => {
  const found = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue
    const cmd = cmdline(Number(name))
    if (cmd?.includes(needle)) found.push({ pid: Number(name), cmd })
  }
  return found
}

/** Direct children of `pid` whose command line contains `needle`. */
const childrenWith = (pid, needle) => {
  const found = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (ppid === pid && cmdline(Number(name))?.includes(needle)) found.push(Number(name))
    } catch {
      // gone meanwhile
    }
  }
  return found
}

/** Polls cond() every `everyMs` until it returns something truthy, and returns that. */
const waitUntil = async (what, cond, timeoutMs = STEP_TIMEOUT_MS, everyMs = 5) => {
  const deadline = performance.now() + timeoutMs
  for (;;) {
    const v = await cond()
    if (v) return v
    if (performance.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(everyMs)
  }
}

// ---------------------------------------------------------------------------------------------
// Statistics

const quantile = (sorted, q) =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]
const summary = (xs) => {
  const s = xs.filter((x) => x !== undefined && !Number.isNaN(x)).sort((a, b) => a - b)
  return {
    n: s.length,
    min: s[0],
    p50: quantile(s, 0.5),
    p95: quantile(s, 0.95),
    p99: quantile(s, 0.99),
    max: s[s.length - 1],
  }
}
const f0 = (x) => (x === undefined || Number.isNaN(x) ? '-' : x.toFixed(0))
const r1 = (x) => (x === undefined || Number.isNaN(x) ? null : Math.round(x * 10) / 10)
const mean = (xs) => xs.reduce((s, x) => s + x, 0) / xs.length

// ---------------------------------------------------------------------------------------------
// The cluster

const dir = mkdtempSync(join(tmpdir(), 'tandem-bench-failover-'))
/** The shared storage itself; each node reaches it through its own view (n.view). */
const shared = join(dir, 'shared')
/** The etcd backend's members, once started: { endpoints, stop(), ... } (bench/etcd.js). */
let etcd
/** Where the views are mounted, one per node, with their control sockets. */
const viewsHome = join(dir, 'views')
const views = []
/** Every supervisor pid, child pid (from the logs) and watchdog pid of this run, for cleanup. */
const started = { supervisors: new Set(), children: new Set(), watchdogs: new Set() }

const writeConfig = (n) => {
  const components = {
    api: {
      command: [process.execPath, SERVER, n.dir], // the dir: lets the final check find it
      env: { PORT: '{port}' },
      port: n.ports.api,
      runOn: 'active',
      stop: { signal: 'SIGTERM', timeoutMs: 2000 },
    },
  }
  if (HOT) {
    components.svc = {
      command: [process.execPath, HA_CHILD, n.dir],
      env: { PORT: '{port}' },
      port: n.ports.svc,
      runOn: 'active',
      standby: 'hot',
      activate: { type: 'ipc' },
      stop: { signal: 'SIGTERM', timeoutMs: 2000 },
    }
  }
  writeFileSync(
    n.cfg,
    JSON.stringify(
      {
        node: n.name,
        stateDir: 'state',
        // default timings
        ha:
          n.backend === 'etcd'
            ? {
                name: 'bench',
                backend: { type: 'etcd', endpoints: etcd.endpoints, prefix: ETCD_PREFIX },
              }
            : { name: 'bench', sharedDir: n.shared },
        control: { http: { port: n.ports.http } },
        components,
      },
      null,
      2,
    ),
  )
}

/** `tandem start` for node n, with its log records as they arrive (seenAt: our clock). */
const startSupervisor = (n) => {
  const child = spawn(process.execPath, [CLI, 'start', '-c', n.cfg], {
    cwd: ROOT,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  started.supervisors.add(child.pid)
  const sup = { child, pid: child.pid, events: [], stderr: [], gone: false }
  createInterface({ input: child.stdout, crlfDelay: Infinity }).on('line', (line) => {
    let e
    try {
      e = JSON.parse(line)
    } catch {
      return
    }
    e.seenAt = performance.now()
    if (typeof e.childPid === 'number') started.children.add(e.childPid)
    sup.events.push(e)
  })
  createInterface({ input: child.stderr, crlfDelay: Infinity }).on('line', (l) =>
    sup.stderr.push(l),
  )
  sup.exited = new Promise((resolve) =>
    child.once('exit', (code, signal) => {
      sup.exitAt = performance.now()
      resolve({ code, signal })
    }),
  )
  void sup.exited.then(() => (sup.gone = true))
  child.once('close', () => (sup.closed = true)) // and its output read to the end
  n.sup = sup
  return sup
}

/**
 * Starts node n's supervisor again after a kill -9, retrying every 250 ms while it refuses
 * because the dead one's state dir lock is not stale yet (see the report). Returns the refused
 * attempts and when the start that went through was made.
 */
const restartAfterKill = async (n) => {
  let refused = 0
  let lastWhy
  for (;;) {
    const at = performance.now()
    const sup = startSupervisor(n)
    const outcome = await waitUntil(`${n.name} supervisor started`, () =>
      sup.events.length > 0 ? 'up' : sup.closed ? 'exited' : false,
    )
    if (outcome === 'up') return { refused, at, why: lastWhy }
    const why = sup.stderr.join(' | ')
    if (!why.includes('already running')) throw new Error(`${n.name} did not start: ${why}`)
    lastWhy = why
    refused++
    await sleep(250)
  }
}

/** Its orphan watchdog, to kill at the end if it outlives it (once the supervisor is up). */
const noteWatchdog = (n) => {
  for (const pid of childrenWith(n.sup.pid, 'watchdog-main')) started.watchdogs.add(pid)
}

const diagnostics = (nodes) =>
  nodes
    .map((n) => {
      const tail = (n.sup?.events ?? []).slice(-12).map((e) => `    ${e.msg}`)
      return `  node ${n.name} on ${n.backend} (pid ${n.sup?.pid}):\n${tail.join('\n')}\n  stderr: ${n.sup?.stderr.slice(-5).join(' | ') || '-'}`
    })
    .join('\n')

const statusJson = async (n) => {
  const { stdout } = await run(process.execPath, [CLI, 'status', '--json', '-c', n.cfg], {
    cwd: ROOT,
  })
  return JSON.parse(stdout)
}

/** What one answer of each endpoint means. */
const isLeader = (r) => r.code === 200
const isServing = (r) => r.code === 200
const isActiveSvc = (r) => r.code === 200 && r.body.startsWith('active')
const isStandbySvc = (r) => r.code === 503 && r.body.startsWith('standby')

/** One GET on a fresh connection. */
const once = async (port, path) => {
  const agent = new Agent({ keepAlive: false })
  try {
    return await get(agent, port, path, 2000)
  } finally {
    agent.destroy()
  }
}

/**
 * Waits until `active` is the active node and `standby` a standby watching its epoch: /leader
 * 200 and 503, api serving on the active only, svc active there and a ready standby on the
 * other, and the standby's status showing the active's heartbeat. Returns the epoch.
 */
const settle = async (active, standby) => {
  try {
    await waitUntil(
      `${active.name} active and ${standby.name} standby`,
      async () => {
        if (active.sup.gone || standby.sup.gone) throw new Error('a supervisor exited')
        const [la, ls, aa, as, sa, ss] = await Promise.all([
          once(active.ports.http, '/leader'),
          once(standby.ports.http, '/leader'),
          once(active.ports.api, '/'),
          once(standby.ports.api, '/'),
          HOT ? once(active.ports.svc, '/') : undefined,
          HOT ? once(standby.ports.svc, '/') : undefined,
        ])
        return (
          isLeader(la) &&
          ls.code === 503 &&
          isServing(aa) &&
          as.code === 0 &&
          (!HOT || (isActiveSvc(sa) && isStandbySvc(ss)))
        )
      },
      STEP_TIMEOUT_MS,
      50,
    )
    const epoch = JSON.parse((await once(active.ports.http, '/leader')).body).epoch
    await waitUntil(
      `${standby.name} watching epoch ${epoch}`,
      async () => (await statusJson(standby)).cluster?.heartbeat?.epoch === epoch,
      STEP_TIMEOUT_MS,
      50,
    )
    noteWatchdog(active)
    noteWatchdog(standby)
    return epoch
  } catch (err) {
    throw new Error(`${err.message}\n${diagnostics([active, standby])}`, { cause: err })
  }
}

/**
 * Asks each endpoint every SAMPLE_MS in its own loop until stop(); keeps every answer with the
 * moment its request was sent (from) and its answer read (to).
 */
const startSampling = (nodes) => {
  let running = true
  const answers = []
  const targets = nodes.flatMap((n) => [
    { node: n.name, kind: 'leader', port: n.ports.http, path: '/leader', ok: isLeader },
    { node: n.name, kind: 'api', port: n.ports.api, path: '/', ok: isServing },
    ...(HOT ? [{ node: n.name, kind: 'svc', port: n.ports.svc, path: '/', ok: isActiveSvc }] : []),
  ])
  let asked = 0
  const loops = targets.map(async (t) => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 })
    while (running) {
      const from = performance.now()
      const r = await get(agent, t.port, t.path, REQUEST_TIMEOUT_MS)
      asked++
      answers.push({ node: t.node, kind: t.kind, from, to: performance.now(), ok: t.ok(r), r })
      await sleep(SAMPLE_MS)
    }
    agent.destroy()
  })
  return {
    answers,
    targets: targets.length,
    /** The first positive answer of `kind` from node `name` received after t0. */
    first: (name, kind, t0) =>
      answers.find((a) => a.node === name && a.kind === kind && a.ok && a.to > t0),
    /** The last positive answer of `kind` from node `name` whose request was sent after t0. */
    last: (name, kind, t0) =>
      answers.findLast((a) => a.node === name && a.kind === kind && a.ok && a.from >= t0),
    stop: async () => {
      running = false
      await Promise.all(loops)
      const overlaps = {}
      for (const kind of ['leader', 'api', ...(HOT ? ['svc'] : [])]) {
        const pos = answers.filter((a) => a.kind === kind && a.ok)
        overlaps[kind] = pos.flatMap((x) =>
          pos
            .filter((y) => y.node > x.node && y.from <= x.to && x.from <= y.to)
            .map(
              (y) =>
                `${kind}: ${x.node} ${x.from.toFixed(0)}-${x.to.toFixed(0)} ${JSON.stringify(x.r.body.trim())} / ${y.node} ${y.from.toFixed(0)}-${y.to.toFixed(0)} ${JSON.stringify(y.r.body.trim())}`,
            ),
        )
      }
      return { overlaps, asked }
    },
  }
}

// ---------------------------------------------------------------------------------------------
// One trial

/** hung-active's goal: the hung node's stop bound, serviceTimeouts(plan), set by main(). */
let stopBound
let ruleSeq = 0

/** A node's heartbeat writes delayed 300-650 ms: 300, plus 50 seven times, each with p 0.5. */
// "Heartbeat writes that sometimes take 650 ms" (issue 11): one in five.
const slowWrites = (id) => [{ id, ops: ['write'], path: 'hb/*', delay: 650, probability: 0.2 }]

/**
 * Sets the faults of `scenario` on the view of the node they concern. Resolves with the node
 * and the rule ids (unique in the run, as faultfs counts hits per id over its whole life).
 */
const setFaults = async (scenario, active, standby) => {
  const id = `${scenario}-${++ruleSeq}`
  const [n, rules] = {
    // count 1: the claim's rename, nothing after it (claims/ is renamed onto by claims only).
    'lost-reply': [
      standby,
      [{ id, ops: ['rename'], path: 'claims/*', fail: 'EEXIST', after: true, count: 1 }],
    ],
    'late-standby': [
      standby,
      [{ id, ops: ['read'], path: 'hb/*', lateReply: 2500, probability: 0.3 }],
    ],
    'slow-writes': [active, slowWrites(id)],
    'hung-active': [active, [{ id, hang: true }]],
    enospc: [active, [{ id, ops: ['write'], path: 'hb/*', fail: 'ENOSPC' }]],
  }[scenario]
  const mark = n.view.log.length
  for (const r of rules) await n.view.add(r)
  return { node: n, id, mark }
}

/** Operations the first rule of `faults` hit so far (faultfs keeps counting cleared rules). */
const faultsHit = async (faults) => (await faults.node.view.stats()).faults[faults.id] ?? 0

/**
 * One failover from `active` to `standby` by `scenario`, then the cluster back to two nodes
 * (the old active as the new standby). Returns the timings (ms from the trigger) and overlaps.
 */
const trial = async (scenario, active, standby, epochBefore) => {
  const sampling = startSampling([active, standby])
  const oldSup = active.sup
  const markOld = oldSup.events.length
  const markNew = standby.sup.events.length
  const out = { scenario, backend: active.backend, from: active.name, to: standby.name }
  let cli
  let t0
  let faults
  let hung
  try {
    // Every loop has answered once before the trigger.
    await waitUntil(
      'first samples',
      () => new Set(sampling.answers.map((a) => a.node + a.kind)).size === sampling.targets,
    )
    if (scenario === 'late-standby' || scenario === 'slow-writes') {
      // The fault with both nodes up: nothing may change before the kill.
      const phaseAt = performance.now()
      faults = await setFaults(scenario, active, standby)
      await sleep(FAULT_PHASE_MS)
      t0 = performance.now()
      process.kill(oldSup.pid, 'SIGKILL')
      out.faultPhaseMs = t0 - phaseAt
      const before = (sup, mark, event) =>
        sup.events.slice(mark).filter((e) => e.event === event && e.seenAt < t0).length
      out.falseTakeovers = before(standby.sup, markNew, 'promoted')
      out.fencesBeforeKill = before(oldSup, markOld, 'fenced')
      const early = sampling.first(standby.name, 'leader', phaseAt)
      out.standbyLeaderBeforeKill = early !== undefined && early.to < t0
    } else if (scenario === 'kill' || scenario === 'lost-reply') {
      if (scenario === 'lost-reply') faults = await setFaults(scenario, active, standby)
      t0 = performance.now()
      process.kill(oldSup.pid, 'SIGKILL')
    } else if (scenario === 'stop') {
      t0 = performance.now()
      process.kill(oldSup.pid, 'SIGSTOP')
      active.stopped = true
    } else if (scenario === 'switchover') {
      t0 = performance.now()
      const child = spawn(process.execPath, [CLI, 'switchover', '-c', active.cfg], {
        cwd: ROOT,
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      cli = { out: '', err: '' }
      child.stdout.on('data', (d) => (cli.out += d))
      child.stderr.on('data', (d) => (cli.err += d))
      cli.done = new Promise((resolve) =>
        child.once('exit', (code) => resolve({ code, at: performance.now() })),
      )
    } else {
      // hung-active, enospc: timed from just before the fault is set.
      t0 = performance.now()
      faults = await setFaults(scenario, active, standby)
      if (scenario === 'hung-active') {
        // In parallel with the failover: the SIGTERM, and the wait for the exit it asks for.
        hung = (async () => {
          await sleep(t0 + HUNG_TERM_AFTER_MS - performance.now())
          const termAt = performance.now()
          process.kill(oldSup.pid, 'SIGTERM')
          const exited = await Promise.race([
            oldSup.exited.then(() => true),
            sleep(stopBound.stopMs + 10_000).then(() => false),
          ])
          return { termAt, exited }
        })().catch((err) => ({ error: err }))
      }
    }
    const leader = await waitUntil(`${standby.name} /leader 200`, () =>
      sampling.first(standby.name, 'leader', t0),
    )
    const api = await waitUntil(`${standby.name} api serving`, () =>
      sampling.first(standby.name, 'api', t0),
    )
    const svc = HOT
      ? await waitUntil(`${standby.name} svc active`, () => sampling.first(standby.name, 'svc', t0))
      : undefined
    out.leaderMs = leader.to - t0
    out.apiMs = api.to - t0
    out.svcMs = svc ? svc.to - t0 : undefined
    out.completeMs = Math.max(out.leaderMs, out.apiMs, out.svcMs ?? 0)
    const body = JSON.parse(leader.r.body)
    out.epoch = body.epoch
    out.epochStep = out.epoch - epochBefore
    if (body.node !== standby.name)
      throw new Error(`/leader of ${standby.name} names ${leader.r.body}`)
    const newEvents = () => standby.sup.events.slice(markNew)
    const promoted = newEvents().find((e) => e.event === 'promoted')
    out.promotedMs = promoted ? promoted.seenAt - t0 : undefined
    out.promotedWhy = promoted?.msg
    const apiReady = await waitUntil(`${standby.name} api ready logged`, () =>
      newEvents().find((e) => e.event === 'ready' && e.component === 'api'),
    )
    out.apiReadyLogMs = apiReady.seenAt - t0
    if (out.falseTakeovers || out.standbyLeaderBeforeKill) {
      // Taken over before the kill: no failover time to give.
      for (const key of ['leaderMs', 'apiMs', 'svcMs', 'completeMs', 'promotedMs', 'apiReadyLogMs'])
        out[key] = undefined
    }
    if (faults) {
      out.faultsHit = await faultsHit(faults)
      // Each fault applied, ms from t0 (for BENCH_OUT): when the view logged it.
      out.faultLog = faults.node.view.log
        .slice(faults.mark)
        .map((l) => `${f0(l.at - t0)} ${l.line}`)
      // Its faults end once the standby serves; a hung view only once its node has exited.
      if (scenario !== 'hung-active') await faults.node.view.release()
    }
    if (scenario === 'switchover') {
      const done = await cli.done
      out.cliExitMs = done.at - t0
      if (done.code !== 0)
        throw new Error(
          `tandem switchover exited ${done.code}: ${cli.err.trim() || cli.out.trim()}`,
        )
      const released = oldSup.events.slice(markOld).find((e) => e.event === 'released')
      out.releasedMs = released ? released.seenAt - t0 : undefined
      // The handover itself, without the CLI's start-up and the old children's stop.
      out.leaderFromReleasedMs = released ? out.leaderMs - out.releasedMs : undefined
      out.completeFromReleasedMs = released ? out.completeMs - out.releasedMs : undefined
    }
    // Bring the cluster back to two nodes, the old active as the standby.
    if (KILLS.includes(scenario) || scenario === 'hung-active') {
      if (scenario === 'hung-active') {
        const h = await hung
        if (h.error) throw h.error
        out.termSentMs = h.termAt - t0
        out.hungExited = h.exited
        if (h.exited) out.hungExitMs = oldSup.exitAt - h.termAt
        // Not out by then: killed, once its held operations are let through.
        else killGroup(oldSup.pid, 'SIGKILL')
        await faults.node.view.release()
        const fenced = oldSup.events.slice(markOld).find((e) => e.event === 'fenced')
        out.fencedMs = fenced ? fenced.seenAt - t0 : undefined
      }
      const end = await oldSup.exited
      if (scenario === 'hung-active') out.hungExit = end.signal ?? end.code
      const again = await restartAfterKill(active)
      out.restartRefused = again.refused
      out.restartOkMs = again.at - t0
      out.restartRefusal = again.why
    } else if (scenario === 'stop') {
      const contAt = performance.now()
      process.kill(oldSup.pid, 'SIGCONT')
      active.stopped = false
      const fenced = await waitUntil(`${active.name} fenced`, () =>
        oldSup.events.slice(markOld).find((e) => e.event === 'fenced'),
      )
      out.stoppedMs = contAt - t0
      out.fencedAfterContMs = fenced.seenAt - contAt
    } else if (scenario === 'enospc') {
      const fenced = await waitUntil(`${active.name} fenced`, () =>
        oldSup.events.slice(markOld).find((e) => e.event === 'fenced'),
      )
      out.fencedMs = fenced.seenAt - t0
      out.fencedWhy = fenced.msg
    }
    out.epochAfter = await settle(standby, active)
    if (out.epochAfter !== out.epoch || out.epoch <= epochBefore)
      throw new Error(
        `epochs: ${epochBefore} before, ${out.epoch} on /leader, ${out.epochAfter} after settling`,
      )
  } catch (err) {
    if (active.stopped) {
      process.kill(oldSup.pid, 'SIGCONT')
      active.stopped = false
    }
    if (faults) await faults.node.view.release().catch(() => undefined)
    await sampling.stop()
    throw new Error(
      `${scenario} trial ${active.name} -> ${standby.name}: ${err.message}\n${diagnostics([active, standby])}`,
      { cause: err },
    )
  }
  const { overlaps, asked } = await sampling.stop()
  out.overlaps = overlaps
  out.asked = asked
  // How long the old active went on answering as active after the trigger (its last positive
  // answer to a request sent after the trigger; 0: none).
  for (const [kind, key] of [
    ['leader', 'oldLeaderLastMs'],
    ['api', 'oldApiLastMs'],
    ...(HOT ? [['svc', 'oldSvcLastMs']] : []),
  ]) {
    const last = sampling.last(active.name, kind, t0)
    // Only up to the promotion: afterwards it is the new standby, and api is not expected.
    out[key] = last && last.to - t0 < out.leaderMs ? last.to - t0 : 0
  }
  const lines = [
    ...oldSup.events.slice(markOld).map((e) => [active.name, e]),
    ...(active.sup !== oldSup ? active.sup.events.map((e) => [active.name, e]) : []),
    ...standby.sup.events.slice(markNew).map((e) => [standby.name, e]),
  ]
  // The lease's moves on both nodes, for BENCH_OUT: which node did what when (ms from t0).
  out.leaseEvents = lines
    .filter(([, e]) => ['promoted', 'fenced', 'released'].includes(e.event))
    .map(([name, e]) => `${f0(e.seenAt - t0)} ${name} ${e.event} ${e.epoch}: ${e.msg}`)
  const errors = lines.filter(([, e]) => e.level >= 50)
  if (errors.length) out.errors = errors.map(([name, e]) => `${name}: ${e.msg}`)
  // Warnings too (but the promotion, timed above), for what the faults made them say.
  const warnings = lines.filter(([, e]) => e.level === 40 && e.event !== 'promoted')
  if (warnings.length) out.warnings = warnings.map(([name, e]) => `${name}: ${e.msg}`)
  return out
}

// ---------------------------------------------------------------------------------------------

const cleanup = async (nodes, orderly) => {
  // Held operations first: a process blocked in a hung FUSE call cannot even be killed.
  await Promise.all(views.map((v) => v.release().catch(() => undefined)))
  for (const n of nodes) if (n.sup && !n.sup.gone) killGroup(n.sup.pid, 'SIGCONT')
  if (orderly) {
    // The standby first, so that the active's leaving is not a handover to it.
    const order = [
      ...nodes.filter((n) => n.role !== 'active'),
      ...nodes.filter((n) => n.role === 'active'),
    ]
    for (const n of order) {
      if (!n.sup || n.sup.gone) continue
      process.kill(n.sup.pid, 'SIGTERM')
      await Promise.race([n.sup.exited, sleep(5_000)])
    }
  }
  for (const pid of started.supervisors) killGroup(pid, 'SIGKILL')
  for (const pid of started.children) if (cmdline(pid)?.includes(dir)) killGroup(pid, 'SIGKILL')
  for (const pid of started.watchdogs)
    if (cmdline(pid)?.includes('watchdog-main')) killGroup(pid, 'SIGKILL')
  for (const v of views)
    await v.unmount().catch((err) => console.error(`  unmounting view ${v.name}: ${err.message}`))
  // Last: the supervisors above released their leases in it.
  etcd?.stop()
}

/** Removes the temp dir, unless something is still mounted in it (never recurse into a mount). */
const removeDir = () => {
  const still = mountpoints().filter((m) => m.startsWith(`${dir}/`))
  if (still.length)
    console.error(`  still mounted, so ${dir} is left in place: ${still.join(', ')}`)
  else rmSync(dir, { recursive: true, force: true })
}

/** Processes of this run still there: command line with the temp dir, or a watchdog of ours. */
const leftovers = () => [
  ...processesWith(dir),
  ...[...started.watchdogs]
    .filter((pid) => pidAlive(pid) && cmdline(pid)?.includes('watchdog-main'))
    .map((pid) => ({ pid, cmd: cmdline(pid) })),
]

const report = (results, ctx) => {
  const { loadBefore, loads, cliStartMs, commit, srcDirty } = ctx
  const metrics = [
    ['leaderMs', '/leader 200'],
    ['apiMs', 'api serving (cold)'],
    ...(HOT ? [['svcMs', 'svc active (hot)']] : []),
    ['completeMs', 'complete'],
  ]
  const kindOf = { leaderMs: 'leader', apiMs: 'api', svcMs: 'svc' }
  /** Every backend and scenario measured, in order; their results. */
  const runs = BACKENDS.flatMap((b) => scenariosOf(b).map((s) => [b, s]))
  const of = (backend, scenario) =>
    results.filter((r) => r.backend === backend && r.scenario === scenario)
  const table = {}
  console.log('')
  console.log(
    '  ms from the trigger (kill, SIGSTOP, command, fault)       n     p50     p95     p99     max   overlaps',
  )
  for (const [backend, scenario] of runs) {
    const label = labelOf(backend, scenario)
    const rs = of(backend, scenario)
    const ov = {}
    for (const kind of Object.keys(rs[0].overlaps))
      ov[kind] = rs.reduce((s, r) => s + r.overlaps[kind].length, 0)
    table[label] = { overlaps: ov }
    const rows = [
      ...metrics,
      ...(scenario === 'switchover'
        ? [
            ['leaderFromReleasedMs', '/leader 200, from "released" logged'],
            ['completeFromReleasedMs', 'complete, from "released" logged'],
          ]
        : []),
      ...(scenario === 'hung-active' ? [['hungExitMs', 'hung node exited, from its SIGTERM']] : []),
    ]
    for (const [key, what] of rows) {
      const s = summary(rs.map((r) => r[key]))
      table[label][key] = {
        p50: r1(s.p50),
        p95: r1(s.p95),
        p99: r1(s.p99),
        max: r1(s.max),
        min: r1(s.min),
      }
      const kind = kindOf[key]
      console.log(
        `  ${label.padEnd(16)} ${what.padEnd(36)} ${String(s.n).padStart(3)} ${f0(s.p50).padStart(7)} ${f0(s.p95).padStart(7)} ${f0(s.p99).padStart(7)} ${f0(s.max).padStart(7)}   ${kind ? ov[kind] : ''}`,
      )
    }
  }
  console.log('')
  console.log('  breakdown, medians (ms from the trigger; log lines timed on arrival here):')
  const med = (backend, scenario, key) => summary(of(backend, scenario).map((r) => r[key])).p50
  const breakdown = {}
  for (const [backend, scenario] of runs) {
    const label = labelOf(backend, scenario)
    const keys = [
      ...(scenario === 'switchover' ? [['releasedMs', '"released" logged by the old active']] : []),
      ['promotedMs', '"promoted" logged by the new active'],
      ['leaderMs', '/leader 200 on the new active'],
      ['apiReadyLogMs', 'api "ready" logged by the new active'],
      ...(scenario === 'switchover' ? [['cliExitMs', 'tandem switchover exited']] : []),
      ['oldLeaderLastMs', 'old active: last /leader 200 asked after the trigger (0: none)'],
      ['oldApiLastMs', 'old active: last api answer asked after the trigger (0: none)'],
      ...(HOT ? [['oldSvcLastMs', 'old active: last svc "active" asked after the trigger']] : []),
      ...(scenario === 'late-standby' || scenario === 'slow-writes'
        ? [['faultPhaseMs', 'fault with both nodes up, before the kill (ms)']]
        : []),
      ...(scenario === 'hung-active'
        ? [
            ['termSentMs', 'SIGTERM sent to the hung node'],
            ['hungExitMs', '  its exit, ms after the SIGTERM'],
          ]
        : []),
      ...(scenario === 'hung-active' || scenario === 'enospc'
        ? [['fencedMs', '"fenced" logged by the old active']]
        : []),
      ...(KILLS.includes(scenario) || scenario === 'hung-active'
        ? [
            ['restartOkMs', 'killed node started again, as the new standby (first try taken)'],
            ['restartRefused', '  `tandem start` attempts refused before that (250 ms apart)'],
          ]
        : []),
      ...(scenario === 'stop'
        ? [
            ['stoppedMs', 'SIGCONT sent (the old active was stopped this long)'],
            ['fencedAfterContMs', '"fenced" logged by the old active, ms after SIGCONT'],
          ]
        : []),
    ]
    breakdown[label] = {}
    console.log(`    ${label}`)
    for (const [key, what] of keys) {
      const m = med(backend, scenario, key)
      breakdown[label][key] = r1(m)
      console.log(`      ${what.padEnd(64)} ${f0(m).padStart(6)}`)
    }
  }
  const allOverlaps = results.flatMap((r) => Object.values(r.overlaps).flat())
  const leaderOverlaps = results.reduce((s, r) => s + r.overlaps.leader.length, 0)
  const errors = results.flatMap((r) => r.errors ?? [])
  const verdict = {}
  const crash = runs.filter(([, s]) => CRASHES.includes(s)).map(([b, s]) => labelOf(b, s))
  for (const s of crash) verdict[s] = table[s].completeMs.p99 <= GOALS.crashP99Ms
  const switchovers = runs.filter(([, s]) => s === 'switchover').map(([b, s]) => labelOf(b, s))
  for (const s of switchovers) verdict[s] = table[s].completeMs.p99 <= GOALS.switchoverP99Ms
  verdict.overlaps = allOverlaps.length === 0
  // What the fault scenarios count, beside their timings.
  const counts = {}
  for (const s of SCENARIOS.filter(
    (x) => FAULT_SCENARIOS.includes(x) && BACKENDS.includes('dir'),
  )) {
    const rs = of('dir', s)
    counts[s] = { trials: rs.length, operationsFaulted: rs.reduce((n, r) => n + r.faultsHit, 0) }
  }
  if (counts['lost-reply'])
    Object.assign(counts['lost-reply'], {
      lostReplies: of('dir', 'lost-reply').filter((r) => r.faultsHit === 1).length,
      epochSteps: [...new Set(of('dir', 'lost-reply').map((r) => r.epochStep))],
    })
  for (const s of ['late-standby', 'slow-writes'].filter((x) => counts[x])) {
    counts[s].falseTakeovers = of('dir', s).filter(
      (r) => r.falseTakeovers || r.standbyLeaderBeforeKill,
    ).length
    counts[s].fencesBeforeKill = of('dir', s).reduce((n, r) => n + r.fencesBeforeKill, 0)
    verdict[s] = s === 'slow-writes' || counts[s].falseTakeovers === 0
  }
  if (counts['hung-active']) {
    const rs = of('dir', 'hung-active')
    counts['hung-active'].stopBoundMs = stopBound.stopMs
    counts['hung-active'].exitedWithinBound = rs.filter(
      (r) => r.hungExited && r.hungExitMs <= stopBound.stopMs,
    ).length
    counts['hung-active'].notExited = rs.filter((r) => !r.hungExited).length
    verdict['hung-active'] = counts['hung-active'].exitedWithinBound === rs.length
  }
  console.log('')
  for (const s of crash)
    console.log(
      `  ${s}: failover complete p99 ${f0(table[s].completeMs.p99)} ms (goal <= ${GOALS.crashP99Ms}): ${verdict[s] ? 'MET' : 'NOT MET'}`,
    )
  for (const s of switchovers)
    console.log(
      `  ${s}: complete p99 ${f0(table[s].completeMs.p99)} ms (goal <= ${GOALS.switchoverP99Ms}): ${verdict[s] ? 'MET' : 'NOT MET'}` +
        ` (/leader 200 p99 ${f0(table[s].leaderMs.p99)} ms)`,
    )
  if (counts['lost-reply'])
    console.log(
      `  lost-reply: the claim's rename answered EEXIST after it was done in ${counts['lost-reply'].lostReplies} of ${counts['lost-reply'].trials} trials; epoch grew by ${counts['lost-reply'].epochSteps.join(' or ')}`,
    )
  for (const s of ['late-standby', 'slow-writes'].filter((x) => counts[x]))
    console.log(
      `  ${s}: ${counts[s].operationsFaulted} ${s === 'late-standby' ? 'late heartbeat reads' : 'delayed heartbeat writes'}; taken over before the kill in ${counts[s].falseTakeovers} of ${counts[s].trials} trials; "fenced" logged before the kill ${counts[s].fencesBeforeKill} times ${s === 'slow-writes' ? ' (counted, no goal: two slow writes in a row fence)' : ` (goal 0 takeovers): ${verdict[s] ? 'MET' : 'NOT MET'}`}`,
    )
  if (counts['hung-active']) {
    const c = counts['hung-active']
    console.log(
      `  hung-active: hung node exited on SIGTERM within its stop bound (${f0(c.stopBoundMs)} ms) in ${c.exitedWithinBound} of ${c.trials} trials (exit p99 ${f0(table['hung-active'].hungExitMs.p99)} ms${c.notExited ? `; ${c.notExited} not exited after ${f0(c.stopBoundMs + 10_000)} ms` : ''}): ${verdict['hung-active'] ? 'MET' : 'NOT MET'}`,
    )
  }
  if (counts.enospc)
    console.log(
      `  enospc: ${counts.enospc.operationsFaulted} heartbeat writes failed; takeover complete p99 ${f0(table.enospc.completeMs.p99)} ms`,
    )
  console.log(
    `  overlaps: ${leaderOverlaps} on /leader, ${allOverlaps.length - leaderOverlaps} between active-only services: ${verdict.overlaps ? 'none (MET)' : 'NOT MET'}`,
  )
  for (const o of allOverlaps.slice(0, 10)) console.log(`    ${o}`)
  // What the supervisors said, by scenario: distinct error and warning lines, digits as N.
  console.log('  error and warning lines of the supervisors, by scenario (distinct, digits as N):')
  for (const [backend, scenario] of runs) {
    const s = labelOf(backend, scenario)
    const tally = new Map()
    for (const r of of(backend, scenario))
      for (const [level, lines] of [
        ['error', r.errors ?? []],
        ['warn', r.warnings ?? []],
      ])
        for (const l of lines) {
          const k = `${level} ${l.replaceAll(dir, '<tmp>').replace(/\d+/g, 'N')}`
          tally.set(k, (tally.get(k) ?? 0) + 1)
        }
    const top = [...tally].sort((x, y) => y[1] - x[1])
    console.log(`    ${s}: ${top.length ? '' : 'none'}`)
    for (const [k, n] of top.slice(0, 8)) console.log(`      ${String(n).padStart(4)}x ${k}`)
    if (top.length > 8) console.log(`      ... and ${top.length - 8} more kinds`)
  }
  console.log(
    `  error log lines from the supervisors: ${errors.length}${errors.length ? ` (first: ${errors[0]})` : ''}`,
  )
  const refusal = results.find((r) => r.restartRefusal)?.restartRefusal
  if (refusal)
    console.log(
      `  restarting a killed node: ${results.filter((r) => r.restartRefused).length} of ${results.filter((r) => r.restartOkMs !== undefined).length} first attempts refused: ${refusal}`,
    )
  const promotedWhy = [...new Set(results.map((r) => r.promotedWhy?.replace(/\d+/g, 'N')))]
  console.log(`  promotion reasons logged: ${promotedWhy.join(' | ')}`)
  console.log(
    `  requests asked: ${results.reduce((s, r) => s + r.asked, 0)}; 1-minute load average: ${loadBefore[0].toFixed(2)} before, ${mean(loads).toFixed(2)} mean over trials, ${loadavg()[0].toFixed(2)} after`,
  )
  console.log(
    JSON.stringify({
      bench: 'failover',
      node: process.version,
      cpus: cpus().length,
      trials: TRIALS,
      hot: HOT,
      backends: BACKENDS,
      etcd: etcd?.version,
      scenarios: table,
      breakdownP50Ms: breakdown,
      goals: GOALS,
      verdict,
      counts,
      stopBoundMs: stopBound.stopMs,
      faultfs: FAULTFS,
      errorLines: errors.length,
      cliStartMs: r1(cliStartMs),
      commit,
      srcDirty,
      load1: [r1(loadBefore[0]), r1(mean(loads)), r1(loadavg()[0])],
    }),
  )
}

const main = async () => {
  /** Every node of every cluster, for the cleanup. */
  const nodes = []
  /** One cluster per backend: { backend, nodes: [a, b] }. */
  const clusters = []
  exitOnSignal(() => cleanup(nodes, false).finally(removeDir))
  let failure
  try {
    for (const s of SCENARIOS)
      if (![...PLAIN_SCENARIOS, ...FAULT_SCENARIOS].includes(s))
        throw new Error(
          `unknown scenario ${s} in BENCH_SCENARIOS: expected some of ${[...PLAIN_SCENARIOS, ...FAULT_SCENARIOS].join(', ')}`,
        )
    for (const b of BACKENDS)
      if (!['dir', 'etcd'].includes(b))
        throw new Error(`unknown backend ${b} in BENCH_BACKENDS: expected dir, etcd or both`)
    if (!BACKENDS.some((b) => scenariosOf(b).length))
      throw new Error(
        `nothing to run: BENCH_BACKENDS=${BACKENDS.join()} with BENCH_SCENARIOS=${SCENARIOS.join()} (etcd runs ${PLAIN_SCENARIOS.join(', ')})`,
      )
    const onDir = BACKENDS.includes('dir')
    const faulted = onDir ? SCENARIOS.filter((s) => FAULT_SCENARIOS.includes(s)) : []
    if (!FAULTFS && faulted.length)
      throw new Error(
        `BENCH_FAULTFS=0 leaves out the views that ${faulted.join(', ')} need: choose among ${PLAIN_SCENARIOS.join(', ')}`,
      )
    const missing = FAULTFS && onDir ? faultFsMissing() : undefined
    if (missing)
      throw new Error(`${missing} (or BENCH_FAULTFS=0 for ${PLAIN_SCENARIOS.join(', ')} alone)`)
    const noEtcd = BACKENDS.includes('etcd') ? etcdMissing() : undefined
    if (noEtcd) throw new Error(noEtcd)
    if (BACKENDS.includes('etcd')) {
      const home = join(dir, 'etcd')
      mkdirSync(home)
      etcd = await startEtcd(home, await freePorts(6, ETCD_PORT_BASE))
    }
    mkdirSync(shared)
    mkdirSync(viewsHome)
    const ports = await freePorts(6 * BACKENDS.length)
    for (const [k, backend] of BACKENDS.entries()) {
      const cluster = []
      for (const [i, name] of ['a', 'b'].entries()) {
        const nd = join(dir, backend, name)
        mkdirSync(nd, { recursive: true })
        const p = 6 * k + 3 * i
        const n = {
          name,
          backend,
          dir: nd,
          cfg: join(nd, 'tandem.json'),
          ports: { http: ports[p], api: ports[p + 1], svc: ports[p + 2] },
        }
        if (backend === 'dir' && FAULTFS) {
          n.view = await mountView(shared, viewsHome, name)
          views.push(n.view)
        }
        n.shared = n.view?.dir ?? shared
        writeConfig(n)
        nodes.push(n)
        cluster.push(n)
      }
      // The cluster, made once as an operator does before the first start: on the backing dir
      // (not through a view), or in etcd.
      const initCfg = join(dir, backend, 'init.json')
      const cfg = JSON.parse(readFileSync(cluster[0].cfg, 'utf8'))
      writeFileSync(
        initCfg,
        JSON.stringify({
          ...cfg,
          ha: backend === 'dir' ? { name: 'bench', sharedDir: shared } : cfg.ha,
        }),
      )
      await run(process.execPath, [CLI, 'cluster', 'init', '-c', initCfg], { cwd: ROOT })
      clusters.push({ backend, nodes: cluster })
    }
    // hung-active's goal: the stop bound tandem computes for the systemd unit (same plan on all).
    const { loadConfig } = await import(
      pathToFileURL(join(ROOT, 'dist/config/load-config.js')).href
    )
    const { serviceTimeouts } = await import(
      pathToFileURL(join(ROOT, 'dist/ops/service-timeouts.js')).href
    )
    stopBound = serviceTimeouts(loadConfig(nodes[0].cfg))

    const { commit, srcDirty } = await gitState(ROOT)
    const others = processesWith('tandem.js').length + processesWith('fixtures/').length
    // The CLI's own start-up, part of every switchover (min of 3).
    const cliStart = []
    for (let i = 0; i < 3; i++) {
      const t = performance.now()
      await run(process.execPath, [CLI, '--help'], { cwd: ROOT })
      cliStart.push(performance.now() - t)
    }
    const cliStartMs = Math.min(...cliStart)
    const loadBefore = loadavg()
    console.log('tandem failover benchmark')
    console.log(
      `  commit ${commit ?? 'unknown'}${srcDirty ? ' with uncommitted changes in src/' : ''}`,
    )
    console.log(
      `  node ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model ?? 'unknown'}), ${process.platform} ${process.arch}`,
    )
    console.log(
      `  load average ${loadBefore.map((x) => x.toFixed(2)).join(' ')}; tandem/fixture processes of others running: ${others}`,
    )
    for (const c of clusters) {
      const [a, b] = c.nodes
      console.log(
        c.backend === 'dir'
          ? `  dir: two nodes, shared dir ${shared} (local fs)${FAULTFS ? ', each node through its own faultfs view' : ''}`
          : `  etcd: two nodes, ${etcd.version}, 3 members at ${etcd.endpoints.join(' ')}, prefix ${ETCD_PREFIX}`,
      )
      console.log(
        `    ports ${a.name} ${JSON.stringify(a.ports)} ${b.name} ${JSON.stringify(b.ports)}; scenarios ${scenariosOf(c.backend).join(', ')}`,
      )
    }
    console.log(
      `  default timings (renewMs 250, selfFenceMs 1000, takeoverMs 2000, pollMs 100); active-only: api (cold, server.js)${HOT ? ', svc (hot, ha-child.js, activate ipc)' : ''}`,
    )
    console.log(
      `  ${TRIALS} trials each, interleaved${clusters.length > 1 ? ' across the backends (both clusters up all along)' : ''}; every endpoint asked every ${SAMPLE_MS} ms`,
    )
    console.log(
      `  tandem CLI start-up (node bin/tandem.js --help, min of 3): ${f0(cliStartMs)} ms, part of each switchover`,
    )
    console.log(
      `  goals: crash failover (${CRASHES.join(', ')}) complete p99 <= ${GOALS.crashP99Ms} ms; switchover complete p99 <= ${GOALS.switchoverP99Ms} ms; overlaps 0; no takeover before the kill (late-standby); a hung node exits within its stop bound: ${f0(stopBound.stopMs)} ms (stop chain ${stopBound.stopChain.join(' > ')})`,
    )

    for (const c of clusters) {
      const [a, b] = c.nodes
      startSupervisor(a)
      await waitUntil(`${c.backend} a promoted`, () => {
        if (a.sup.gone) throw new Error(`a exited: ${a.sup.stderr.join(' | ')}`)
        return a.sup.events.find((e) => e.event === 'promoted')
      })
      startSupervisor(b)
      c.epoch = await settle(a, b)
      c.active = a
      c.standby = b
      a.role = 'active'
      b.role = 'standby'
    }

    const results = []
    const loads = []
    for (let i = 0; i < TRIALS; i++) {
      for (const scenario of SCENARIOS) {
        for (const c of clusters.filter((x) => scenariosOf(x.backend).includes(scenario))) {
          const r = await trial(scenario, c.active, c.standby, c.epoch)
          loads.push(loadavg()[0])
          results.push(r)
          c.epoch = r.epochAfter
          ;[c.active, c.standby] = [c.standby, c.active]
          c.active.role = 'active'
          c.standby.role = 'standby'
          const ov = Object.values(r.overlaps).flat()
          const extra = [
            r.faultsHit !== undefined ? `${r.faultsHit} operations faulted` : '',
            r.falseTakeovers || r.standbyLeaderBeforeKill ? 'TAKEN OVER BEFORE THE KILL' : '',
            r.fencesBeforeKill ? `${r.fencesBeforeKill} fenced before the kill` : '',
            scenario === 'hung-active'
              ? r.hungExited
                ? `hung node exited ${f0(r.hungExitMs)} ms after SIGTERM (${r.hungExit})`
                : 'HUNG NODE NOT EXITED'
              : '',
          ].filter(Boolean)
          const line = `  ${labelOf(c.backend, scenario).padEnd(16)} ${String(i + 1).padStart(2)}/${TRIALS} ${r.from}->${r.to} epoch ${r.epoch}: /leader ${f0(r.leaderMs)} ms, api ${f0(r.apiMs)} ms${HOT ? `, svc ${f0(r.svcMs)} ms` : ''}${extra.length ? `, ${extra.join(', ')}` : ''}${ov.length ? `, OVERLAPS ${ov.length}` : ''}`
          // A goal missed in this trial: printed even when the output is not a terminal.
          const missed =
            r.falseTakeovers ||
            r.standbyLeaderBeforeKill ||
            (scenario === 'hung-active' && !r.hungExited)
          if (ov.length || r.errors || missed) {
            if (process.stdout.isTTY) process.stdout.write('\r\x1b[K')
            const notes = [...ov, ...(r.errors ?? [])]
            const shown = notes.slice(0, 8)
            if (notes.length > shown.length)
              shown.push(`... and ${notes.length - shown.length} more`)
            console.log([line, ...shown].join('\n    '))
          } else if (process.stdout.isTTY) process.stdout.write(`\r\x1b[K${line}`)
          else console.log(line)
        }
      }
    }
    if (process.stdout.isTTY) process.stdout.write('\r\x1b[K')
    report(results, { loadBefore, loads, cliStartMs, commit, srcDirty })
    if (process.env.BENCH_OUT)
      writeFileSync(process.env.BENCH_OUT, JSON.stringify({ commit, results }, null, 1))
  } catch (err) {
    failure = err
  } finally {
    await cleanup(nodes, !failure)
    await sleep(200)
    let left = leftovers()
    if (left.length) {
      for (const p of left) {
        if (killGroup(p.pid, 'SIGKILL')) continue // a group leader: its group
        try {
          process.kill(p.pid, 'SIGKILL') // else the process alone
        } catch {
          // gone
        }
      }
      await sleep(500)
      left = leftovers()
    }
    console.log(
      `  leftover processes: ${left.length ? left.map((p) => `${p.pid} ${p.cmd}`).join('; ') : 'none'}`,
    )
    removeDir()
  }
  if (failure) throw failure
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(`bench/failover: ${err?.stack ?? err}`)
    process.exit(1)
  },
)
