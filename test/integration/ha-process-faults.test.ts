// Hot standby under process faults, with real supervisors (issue 11): SIGSTOP of the active
// supervisor (its pid only, as a VM or GC pause freezes it, not its children) for 0.2, 0.7,
// 1.5 and 5 s, a wall-clock step under libfaketime, and switchover. Each node runs three
// active-only components: `cold` and `hot` (test/fixtures/ha-child.js, cooperative: 503 while
// not active; `hot` pre-started on the standby) and `plain` (test/fixtures/server.js, which does
// not cooperate: only the watchdog stops it when its supervisor freezes). Sampled concurrently
// for the whole of each scenario: never two /leader 200s, never two cold or two plain servers
// accepting, never two ha-child servers answering 200 (the hot ones accept on both nodes).
// Ports 25800-25999 belong to this file (test files run in parallel).
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { needTool, type ToolCheck } from '../helpers/need-tool.js'
import {
  accepting,
  cli,
  fixture,
  ROOT,
  sleep,
  status,
  tempDir,
  waitUntil,
} from '../helpers/supervisor.js'
import {
  cluster,
  HA,
  leader,
  node,
  sampleAccepting,
  sampleLeaders,
  type Node,
} from '../helpers/ha-cluster.js'

const HA_CHILD = join(ROOT, 'test/fixtures/ha-child.js')
/** Debian's libfaketime, in its multiarch directory (x86_64-linux-gnu, aarch64-linux-gnu, ...). */
const FAKETIME_LIB =
  readdirSync('/usr/lib')
    .map((d) => join('/usr/lib', d, 'faketime/libfaketime.so.1'))
    .find((f) => existsSync(f)) ?? '/usr/lib/<arch>-linux-gnu/faketime/libfaketime.so.1'

interface PNode extends Node {
  cold: number
  hot: number
  plain: number
  shared: string
}

const haChild = (port: number, extra: Record<string, unknown> = {}) => ({
  command: [process.execPath, HA_CHILD],
  env: { PORT: '{port}' },
  port,
  runOn: 'active',
  stop: { signal: 'SIGTERM', timeoutMs: 2000 },
  ...extra,
})

/** A node whose control listener is on `base`, its cold, hot and plain servers on base+1..3. */
const pnode = (
  t: Test,
  shared: string,
  name: string,
  base: number,
  env: NodeJS.ProcessEnv = {},
): PNode => {
  const components = {
    cold: haChild(base + 1),
    hot: haChild(base + 2, { standby: 'hot', activate: { type: 'ipc' } }),
    plain: fixture({ port: base + 3, runOn: 'active' }),
  }
  const n = node(t, shared, name, base, HA, components, env)
  return { ...n, cold: base + 1, hot: base + 2, plain: base + 3, shared }
}

/** GET / on an ha-child server: status and body, code 0 when it does not answer. */
const probe = async (port: number, timeoutMs = 10_000) => {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(timeoutMs) })
    return { code: res.status, body: await res.text() }
  } catch {
    return { code: 0, body: '' }
  }
}

/**
 * GETs each port every 10 ms, independently, until stop(); every answer with its window. Ports
 * come in pairs (one component on node a and on node b): two 200s of one pair whose requests
 * overlap are an overlap (both servers acting as active at one instant).
 */
const sampleServing = (pairs: [number, number][]) => {
  let running = true
  const answers: { port: number; code: number; from: number; to: number }[] = []
  const loops = pairs.flat().map(async (port) => {
    while (running) {
      const from = performance.now()
      const { code } = await probe(port)
      answers.push({ port, code, from, to: performance.now() })
      await sleep(10)
    }
  })
  return {
    stop: async () => {
      running = false
      await Promise.all(loops)
      const ok = answers.filter((x) => x.code === 200)
      const overlaps = pairs.flatMap(([p, q]) =>
        ok
          .filter((x) => x.port === p)
          .flatMap((x) =>
            ok
              .filter((y) => y.port === q && y.from <= x.to && x.from <= y.to)
              .map(
                (y) =>
                  `${p} 200 at ${x.from.toFixed(0)}-${x.to.toFixed(0)} / ${q} at ${y.from.toFixed(0)}-${y.to.toFixed(0)}`,
              ),
          ),
      )
      return { overlaps, answers }
    },
  }
}

/** Every sampler the rules ask for, over both nodes, running until `stop` (or the teardown). */
const watch = (t: Test, a: PNode, b: PNode) => {
  const leaders = sampleLeaders([a, b])
  const cold = sampleAccepting([a.cold, b.cold])
  const plain = sampleAccepting([a.plain, b.plain])
  const serving = sampleServing([
    [a.cold, b.cold],
    [a.hot, b.hot],
  ])
  // A test that fails midway must not leave them running (stop() may be called twice).
  t.teardown(async () => {
    await Promise.all([leaders.stop(), cold.stop(), plain.stop(), serving.stop()])
  })
  return {
    /** Resolves once the samplers run: a's cold and plain servers seen accepting a few times. */
    running: () =>
      waitUntil(
        'the samplers running',
        () =>
          cold.ups().filter((x) => x.port === a.cold).length >= 3 &&
          plain.ups().filter((x) => x.port === a.plain).length >= 3,
      ),
    /** Stops every sampler, asserts 0 overlaps of each, returns the timelines. */
    stop: async (t: Test) => {
      const plainUps = plain.ups()
      const coldUps = cold.ups()
      const l = await leaders.stop()
      const s = await serving.stop()
      t.same(l.overlaps, [], `never two nodes answering /leader 200 (${l.asked} answers)`)
      t.same(await cold.stop(), [], 'never two cold servers accepting at once')
      t.same(await plain.stop(), [], 'never two plain servers accepting at once')
      t.same(
        s.overlaps,
        [],
        `never two ha-child servers answering 200 (${s.answers.length} answers)`,
      )
      return { leaders: l.answers, serving: s.answers, plainUps, coldUps }
    },
  }
}

/** `a` active (started first, every active-only child serving), `b` standby with its hot child up. */
const pair = async (t: Test, base: number, envA: NodeJS.ProcessEnv = {}) => {
  const shared = await cluster(t)
  const a = pnode(t, shared, 'a', base, envA)
  await a.sup.waitLog('a promoted', (r) => r.event === 'promoted')
  await waitUntil('a on /leader answers 200', async () => (await leader(a)) === 200)
  await waitUntil('a hot active', async () => (await probe(a.hot)).body === 'active 1\n')
  const b = pnode(t, shared, 'b', base + 10)
  await b.sup.waitLog('b hot ready', (r) => r.event === 'ready' && r.component === 'hot')
  await waitUntil('b on /leader answers 503', async () => (await leader(b)) === 503)
  t.same(await probe(b.hot), { code: 503, body: 'standby\n' }, 'b hot pre-started as a standby')
  return { a, b }
}

/** hb/<epoch>'s seq as it is in the shared dir now (-1 when unreadable). */
const seq = (n: PNode, epoch: number): number => {
  try {
    return (
      JSON.parse(readFileSync(join(n.shared, 'hb', String(epoch)), 'utf8')) as { seq: number }
    ).seq
  } catch {
    return -1
  }
}

/**
 * Waits until the holder of `epoch` has renewed `renews` more times: an observation window
 * counted in the cluster's own progress rather than in time. Resolves false if it did not.
 */
const renewals = async (n: PNode, epoch: number, renews: number): Promise<boolean> => {
  // hb is rewritten in place: a read can catch it empty (-1).
  const from = (await waitUntil(`hb/${epoch} readable`, () => seq(n, epoch) + 1)) - 1
  return waitUntil(`${renews} renews of epoch ${epoch}`, () => seq(n, epoch) >= from + renews).then(
    () => true,
    () => false,
  )
}

/** Freezes `n`'s supervisor process alone (not its children, not its watchdog) for `ms`. */
const freeze = async (
  t: Test,
  n: PNode,
  ms: number,
): Promise<{ heldMs: number; resumedAt: number }> => {
  t.teardown(() => n.sup.proc.kill('SIGCONT'))
  const at = performance.now()
  n.sup.proc.kill('SIGSTOP')
  // The fault lasts `ms`: holding it is the one sleep of a fault test.
  await sleep(ms)
  n.sup.proc.kill('SIGCONT')
  const resumedAt = performance.now()
  return { heldMs: resumedAt - at, resumedAt }
}

/**
 * `node`'s /leader answers in order, as runs (`200x120 503x40`), and whether it stopped answering
 * 200 at some point and never answered 200 again. (A request sent just before a freeze is
 * answered after it: the first answer may already be a 503.)
 */
const servedThenNot = (answers: { node: string; code: number }[], node: string) => {
  const codes = answers.filter((x) => x.node === node).map((x) => x.code)
  const firstNot = codes.findIndex((c) => c !== 200)
  const runs: [number, number][] = []
  for (const c of codes) {
    const r = runs.at(-1)
    if (r && r[0] === c) r[1]++
    else runs.push([c, 1])
  }
  return {
    ok: firstNot >= 0 && codes.slice(firstNot).every((c) => c !== 200),
    runs: runs.map(([c, n]) => `${c}x${n}`).join(' '),
  }
}

const activeOnlyPids = async (n: PNode) =>
  Object.fromEntries(
    (await status(n.config)).instances
      .filter((i) => /^(cold|hot|plain)#/.test(i.id))
      .map((i) => [i.id, i.pid]),
  )

/** The hot child of `n` back as a standby, cold and plain gone: what a fenced node looks like. */
const standbyAgain = async (t: Test, n: PNode) => {
  await waitUntil(`${n.name} on /leader answers 503`, async () => (await leader(n)) === 503)
  await waitUntil(
    `${n.name} hot back as a standby`,
    async () => (await probe(n.hot)).body === 'standby\n',
  )
  await waitUntil(
    `${n.name} cold and plain stopped`,
    async () => !(await accepting(n.cold)) && !(await accepting(n.plain)),
  )
  const s = await status(n.config)
  t.equal(s.role, 'standby', `${n.name} is a standby`)
  t.match(
    s.instances.find((i) => i.id === 'hot#0'),
    { state: 'ready' },
    `${n.name} hot#0 ready as a standby`,
  )
}

t.test(
  'SIGSTOP of the active for 0.2 s and 0.7 s: nothing changes (no child killed, restarted or deactivated, /leader 200 throughout, no promotion)',
  async (t) => {
    const { a, b } = await pair(t, 25800)
    const pids = await activeOnlyPids(a)
    const w = watch(t, a, b)
    await w.running()
    for (const ms of [200, 700]) {
      const { heldMs } = await freeze(t, a, ms)
      t.comment(`a frozen for ${Math.round(heldMs)} ms`)
      // Longer than takeoverMs of renews after the pause: a wrongful takeover, a watchdog kill or
      // a deactivation at the deadline set before the pause would all have happened by now.
      t.ok(await renewals(a, 1, 12), `a went on renewing epoch 1 after a ${ms} ms pause`)
    }
    const { leaders } = await w.stop(t)
    const fromA = leaders.filter((x) => x.node === 'a')
    t.same(
      fromA.filter((x) => x.code !== 200).map((x) => `${x.code} at ${x.from.toFixed(0)}`),
      [],
      `a answered /leader 200 throughout (${fromA.length} answers)`,
    )
    t.equal(
      b.sup.count((r) => r.event === 'promoted'),
      0,
      'b never promoted',
    )
    t.equal(
      a.sup.count((r) => r.event === 'fenced'),
      0,
      'a never fenced',
    )
    t.equal(
      a.sup.count((r) => r.event === 'exited' || r.event === 'stopping'),
      0,
      'no child of a stopped or exited',
    )
    t.equal(
      a.sup.count((r) => r.event === 'spawned'),
      3,
      'no child of a spawned after the start',
    )
    t.same(
      a.sup.records.filter((r) => /deactivated|reactivated/.test(r.msg)).map((r) => r.msg),
      [],
      'no ha-child of a deactivated (nor reactivated)',
    )
    t.same(await activeOnlyPids(a), pids, "a's active-only children are the same processes")
    t.equal(await leader(a), 200)
  },
)

t.test(
  'SIGSTOP of the active for 1.5 s: it wakes fenced, its active-only children gone, b takes over, a is a standby with its hot child back',
  async (t) => {
    const { a, b } = await pair(t, 25820)
    const bHot = (await activeOnlyPids(b))['hot#0']
    const w = watch(t, a, b)
    await w.running()
    const { heldMs } = await freeze(t, a, 1500)
    t.comment(`a frozen for ${Math.round(heldMs)} ms`)
    const fenced = await a.sup.waitLog('a fenced', (r) => r.event === 'fenced')
    t.match(fenced.msg, /no longer active in epoch 1: fenced: this process did not run for \d+ ms/)
    const promoted = await b.sup.waitLog('b promoted', (r) => r.event === 'promoted')
    t.match(promoted, { epoch: 2, msg: /heartbeat of epoch 1 unchanged for \d+ ms/ })
    await waitUntil('b on /leader answers 200', async () => (await leader(b)) === 200)
    await waitUntil('b hot active', async () => (await probe(b.hot)).body === 'active 2\n')
    t.equal((await activeOnlyPids(b))['hot#0'], bHot, "b's hot child activated in place")
    await standbyAgain(t, a)
    const { leaders } = await w.stop(t)
    {
      const s = servedThenNot(leaders, 'a')
      t.ok(s.ok, `a answered /leader 200 until the freeze, never after: ${s.runs}`)
    }
    // Killed by the watchdog during the freeze or stopped by a on waking: either way ended.
    const after = a.sup.records.slice(a.sup.records.indexOf(fenced))
    for (const c of ['cold', 'hot', 'plain'])
      t.ok(
        after.some((r) => (r.event === 'exited' || r.event === 'stopped') && r.component === c),
        `a's ${c} child ended after the fence`,
      )
    t.ok(
      after.some((r) => r.event === 'spawned' && r.component === 'hot'),
      "a's hot child started again, as a standby",
    )
  },
)

t.test(
  "SIGSTOP of the active for 5 s: every active-only child of the frozen node stops serving before b's first /leader 200; a comes back as a standby and stays one",
  async (t) => {
    const { a, b } = await pair(t, 25840)
    const bHot = (await activeOnlyPids(b))['hot#0']
    const w = watch(t, a, b)
    await w.running()
    const { heldMs, resumedAt } = await freeze(t, a, 5000)
    t.comment(`a frozen for ${Math.round(heldMs)} ms`)
    const fenced = await a.sup.waitLog('a fenced', (r) => r.event === 'fenced')
    t.match(fenced.msg, /fenced: this process did not run for \d+ ms/)
    t.ok(
      b.sup.records.some((r) => r.event === 'promoted'),
      'b promoted while a was frozen',
    )
    await waitUntil('b on /leader answers 200', async () => (await leader(b)) === 200)
    t.same(await probe(b.hot), { code: 200, body: 'active 2\n' }, 'b hot active')
    t.equal((await activeOnlyPids(b))['hot#0'], bHot, "b's hot child activated in place")
    await standbyAgain(t, a)
    // Stays a standby: b renews for longer than takeoverMs and a does not compete.
    t.ok(await renewals(b, 2, 12), 'b went on renewing epoch 2')
    const { leaders, serving, plainUps, coldUps } = await w.stop(t)
    {
      const s = servedThenNot(leaders, 'a')
      t.ok(s.ok, `a answered /leader 200 until the freeze, never after: ${s.runs}`)
    }
    t.equal(
      a.sup.count((r) => r.event === 'promoted'),
      1,
      'a never promoted again',
    )
    t.equal((await status(a.config)).role, 'standby')
    t.equal(await leader(b), 200)

    const first = leaders.find((x) => x.node === 'b' && x.code === 200)
    if (!first) return t.fail("no /leader 200 from b in the samplers' timeline")
    // So whatever stopped a's children before then, it was not a's supervisor: the watchdog, or
    // the child itself at its deadline.
    t.ok(first.from < resumedAt, 'b answered /leader 200 while a was still frozen')
    const last = (xs: { to: number }[]) => Math.max(-Infinity, ...xs.map((x) => x.to))
    const aServed = {
      'a /leader 200': last(leaders.filter((x) => x.node === 'a' && x.code === 200)),
      'a cold 200': last(serving.filter((x) => x.port === a.cold && x.code === 200)),
      'a hot 200': last(serving.filter((x) => x.port === a.hot && x.code === 200)),
      'a cold accepting': last(coldUps.filter((x) => x.port === a.cold)),
      'a plain accepting': last(plainUps.filter((x) => x.port === a.plain)),
    }
    for (const [what, at] of Object.entries(aServed)) {
      t.ok(at > 0, `${what} was sampled before the freeze`)
      t.ok(
        at < first.from,
        `${what}: last at ${at.toFixed(0)}, before b's first /leader 200 at ${first.from.toFixed(0)} (${(first.from - at).toFixed(0)} ms)`,
      )
    }
  },
)

t.test(
  'a wall-clock step on the active (libfaketime): back changes nothing; forward fences it and b takes over',
  async (t) => {
    const lib: ToolCheck = existsSync(FAKETIME_LIB)
      ? { ok: true }
      : { ok: false, why: `${FAKETIME_LIB} missing (Debian package libfaketime)` }
    if (!needTool(t, lib)) return
    const rc = join(tempDir(t), 'faketime.rc')
    writeFileSync(rc, '+0\n')
    // The whole host's clock steps: the supervisor and everything it starts see the offset in
    // `rc`, read at every call (NO_CACHE); monotonic clocks and file times are left alone.
    const { a, b } = await pair(t, 25860, {
      LD_PRELOAD: FAKETIME_LIB,
      FAKETIME_TIMESTAMP_FILE: rc,
      FAKETIME_NO_CACHE: '1',
      FAKETIME_DONT_FAKE_MONOTONIC: '1',
      NO_FAKE_STAT: '1',
    })
    const pids = await activeOnlyPids(a)
    const w = watch(t, a, b)
    await w.running()
    writeFileSync(rc, '-10m\n')
    t.ok(await renewals(a, 1, 12), 'a went on renewing epoch 1 after its clock stepped back')
    // A log line of a's now (SIGUSR2 reopens the log files and says so) shows its clock.
    a.sup.proc.kill('SIGUSR2')
    const reopened = await a.sup.waitLog('a reopened its logs', (r) => r.event === 'log-reopen')
    t.ok((reopened.time as number) < Date.now() - 300_000, "a's wall clock is 10 min back")
    t.equal(
      b.sup.count((r) => r.event === 'promoted'),
      0,
      'b did not promote after the step back',
    )
    t.equal(
      a.sup.count((r) => r.event === 'fenced'),
      0,
      'a not fenced by the step back',
    )
    t.same(await activeOnlyPids(a), pids, "a's active-only children untouched by the step back")
    t.equal(await leader(a), 200)

    writeFileSync(rc, '+10m\n')
    const fenced = await a.sup.waitLog('a fenced', (r) => r.event === 'fenced')
    t.match(
      fenced.msg,
      /fenced: the wall clock moved \d+ ms while the monotonic clock moved \d+ ms/,
    )
    await b.sup.waitLog('b promoted', (r) => r.event === 'promoted')
    await waitUntil('b on /leader answers 200', async () => (await leader(b)) === 200)
    await standbyAgain(t, a)
    const { leaders } = await w.stop(t)
    {
      const s = servedThenNot(leaders, 'a')
      t.ok(s.ok, `a answered /leader 200 until the forward step, never after: ${s.runs}`)
    }
  },
)

t.test(
  'switchover with a hot component: no overlap; the old node hot child back as a standby',
  async (t) => {
    const { a, b } = await pair(t, 25880)
    const bHot = (await activeOnlyPids(b))['hot#0']
    const w = watch(t, a, b)
    await w.running()
    const r = await cli(['switchover', '-c', a.config])
    t.equal(r.code, 0, r.err)
    t.match(r.out, /node a released epoch 1 of cluster c1\nnode b is active \(epoch 2\)/)
    await waitUntil('b on /leader answers 200', async () => (await leader(b)) === 200)
    await waitUntil('b hot active', async () => (await probe(b.hot)).body === 'active 2\n')
    await waitUntil(
      'b cold and plain up',
      async () => (await accepting(b.cold)) && (await accepting(b.plain)),
    )
    await standbyAgain(t, a)
    await w.stop(t)
    t.equal((await activeOnlyPids(b))['hot#0'], bHot, "b's hot child activated in place")
    t.equal(
      a.sup.count((r) => r.event === 'fenced'),
      0,
      'a released, not fenced',
    )
  },
)
