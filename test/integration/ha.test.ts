// Hot standby with real supervisors sharing a directory: one active, failover after kill -9 and
// after SIGSTOP (never two nodes answering 200 on /leader, sampled every 10 ms), a short pause
// that changes nothing, switchover, and nodes refused for another cluster or other timings.
// Ports 25100-25299 belong to this file (test files run in parallel).
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { accepting, cli, ROOT, fixture, status, tempDir, waitUntil } from '../helpers/supervisor.js'
import {
  cluster,
  HA,
  leader,
  node,
  sampleAccepting,
  sampleLeaders,
  type Node,
} from '../helpers/ha-cluster.js'

/** Two nodes, `a` active (started first) and `b` standby, both up. */
const pair = async (t: Test, base: number) => {
  const shared = await cluster(t)
  const a = node(t, shared, 'a', base)
  await a.sup.waitLog('a promoted', (r) => r.event === 'promoted')
  await waitUntil('a api up', () => accepting(a.api))
  await waitUntil('a on /leader answers 200', async () => (await leader(a)) === 200)
  const b = node(t, shared, 'b', base + 10)
  await b.sup.waitLog('b web ready', (r) => r.event === 'ready' && r.component === 'web')
  await waitUntil('b on /leader answers 503', async () => (await leader(b)) === 503)
  return { shared, a, b }
}

t.test('one active node: /leader, status, active-only components on it alone', async (t) => {
  const { a, b } = await pair(t, 25100)
  t.equal(await leader(a), 200)
  t.same(await (await fetch(`http://127.0.0.1:${a.http}/leader`)).json(), { node: 'a', epoch: 1 })
  t.equal(await leader(b), 503)
  const sa = await status(a.config)
  const sb = await status(b.config)
  t.equal(sa.role, 'active')
  t.equal(sb.role, 'standby')
  t.match(sb, { cluster: { name: 'c1', epoch: 1, heartbeat: { epoch: 1 } } })
  t.match(
    sb.instances.find((i) => i.id === 'api#0'),
    { state: 'stopped' },
    'api not on b',
  )
  t.match(
    sb.instances.find((i) => i.id === 'web#0'),
    { state: 'ready' },
    'web on both',
  )
  const peers = await waitUntil('a sees b as a peer', async () => {
    const s = (await status(a.config)) as unknown as { cluster: { peers: { node: string }[] } }
    return s.cluster.peers.length === 1 && s.cluster.peers
  })
  t.match(peers, [{ node: 'b', role: 'standby', epoch: 1 }])
  const text = await cli(['status', '-c', b.config])
  t.match(text.out, /role standby/)
  t.match(text.out, /cluster c1 {2}epoch 1 .*active heartbeat \(epoch 1\) last changed/)
  t.match(text.out, /peer a {2}role active {2}epoch 1 {2}pid \d+ {2}presence last changed/)
  const spawned = a.sup.records.find((r) => r.event === 'spawned' && r.component === 'api')
  t.ok(spawned, 'api spawned on a')
})

t.test(
  'kill -9 of the active: the standby takes over and starts its active-only children',
  async (t) => {
    const { a, b } = await pair(t, 25120)
    a.sup.proc.kill('SIGKILL')
    await waitUntil('b on /leader answers 200', async () => (await leader(b)) === 200)
    const promoted = await b.sup.waitLog('b promoted', (r) => r.event === 'promoted')
    t.match(promoted, { epoch: 2, msg: /heartbeat of epoch 1 unchanged for \d+ ms/ })
    await waitUntil('b api up', () => accepting(b.api))
    t.equal((await status(b.config)).role, 'active')
  },
)

t.test(
  'SIGSTOP of the active for 5 s: the standby promotes; the old one wakes fenced; never two leaders',
  async (t) => {
    const { a, b } = await pair(t, 25140)
    const sampling = sampleLeaders([a, b])
    const serving = sampleAccepting([a.api, b.api])
    a.sup.proc.kill('SIGSTOP')
    t.teardown(() => a.sup.proc.kill('SIGCONT'))
    const stoppedAt = Date.now()
    await b.sup.waitLog('b promoted', (r) => r.event === 'promoted')
    await waitUntil('b api up', () => accepting(b.api))
    // a's api does not cooperate: the watchdog, not frozen with a, killed it when a's lease ran out.
    t.same(await serving.stop(), [], "a's api was gone before b's started")
    await waitUntil('5 s of SIGSTOP', () => Date.now() - stoppedAt >= 5000, 20_000)
    a.sup.proc.kill('SIGCONT')
    const fenced = await a.sup.waitLog('a fenced', (r) => r.event === 'fenced')
    t.match(fenced.msg, /no longer active in epoch 1: fenced/)
    await waitUntil('a api stopped', async () => !(await accepting(a.api)))
    await waitUntil('a on /leader answers 503', async () => (await leader(a)) === 503)
    const { overlaps, asked } = await sampling.stop()
    t.same(overlaps, [], `no instant with two leaders in ${asked} answers`)
    t.equal(await leader(b), 200)
    t.equal((await status(a.config)).role, 'standby')
  },
)

t.test('a SIGSTOP shorter than selfFenceMs changes nothing', async (t) => {
  const { a, b } = await pair(t, 25160)
  a.sup.proc.kill('SIGSTOP')
  t.teardown(() => a.sup.proc.kill('SIGCONT'))
  const stoppedAt = Date.now()
  await waitUntil('400 ms', () => Date.now() - stoppedAt >= 400)
  a.sup.proc.kill('SIGCONT')
  // Long enough for a takeover to have happened if the pause had counted.
  const resumed = Date.now()
  await waitUntil('3 s later', () => Date.now() - resumed >= 3000, 10_000)
  t.equal(await leader(a), 200)
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
    a.sup.count((r) => r.event === 'spawned' && r.component === 'api'),
    1,
    "a's api was never killed by the watchdog nor restarted",
  )
})

t.test('switchover: the active hands over; the standby takes over within moments', async (t) => {
  const { a, b } = await pair(t, 25180)
  const sampling = sampleLeaders([a, b])
  const r = await cli(['switchover', '-c', a.config])
  t.equal(r.code, 0, r.err)
  t.match(r.out, /node a released epoch 1 of cluster c1\nnode b is active \(epoch 2\)/)
  await waitUntil('b api up', () => accepting(b.api))
  t.notOk(await accepting(a.api), "a's api stopped before b's started")
  // /leader answers 200 once b's api is ready too (its probe), a moment after it accepts.
  await waitUntil('b on /leader answers 200', async () => (await leader(b)) === 200)
  t.equal(await leader(b), 200)
  t.equal(await leader(a), 503)
  t.match(await b.sup.waitLog('b promoted', (x) => x.event === 'promoted'), {
    msg: /epoch 1 released by a/,
  })
  const { overlaps } = await sampling.stop()
  t.same(overlaps, [])
  const again = await cli(['switchover', '-c', a.config])
  t.equal(again.code, 1)
  t.match(again.err, /node a is not the active node of cluster "c1"/)
})

t.test('shutdown of the active hands over at once, as switchover does', async (t) => {
  const { a, b } = await pair(t, 25220)
  const r = await cli(['shutdown', '-c', a.config])
  t.equal(r.code, 0, r.err)
  t.match(await b.sup.waitLog('b promoted', (x) => x.event === 'promoted'), {
    msg: /epoch 1 released by a/,
  })
  await waitUntil('b api up', () => accepting(b.api))
  t.equal((await a.sup.exited).code, 0)
})

t.test('refused: another cluster in the same dir, other timings, a missing dir', async (t) => {
  const shared = await cluster(t)
  const a = node(t, shared, 'a', 25190)
  await a.sup.waitLog('a promoted', (r) => r.event === 'promoted')
  for (const [what, ha, message] of [
    [
      'another cluster',
      { ...HA, name: 'c2' },
      /belongs to cluster "c1", and this node's ha.name is "c2"/,
    ],
    [
      'other timings',
      { ...HA, takeoverMs: 3000 },
      /cluster "c1" runs with takeoverMs 2000 .* this node has takeoverMs 3000/,
    ],
  ] as const) {
    const dir = tempDir(t)
    const config = join(dir, 'tandem.json')
    writeFileSync(
      config,
      JSON.stringify({
        node: 'x',
        stateDir: 'state',
        ha: { ...ha, sharedDir: shared },
        components: { api: fixture({ port: 25195, runOn: 'active' }) },
      }),
    )
    const r = await cli(['start', '-c', config])
    t.equal(r.code, 1, what)
    t.match(r.err, message, what)
  }
  const dir = tempDir(t)
  const config = join(dir, 'tandem.json')
  writeFileSync(
    config,
    JSON.stringify({
      stateDir: 'state',
      ha: { ...HA, sharedDir: join(dir, 'nowhere') },
      components: { api: fixture({ port: 25196 }) },
    }),
  )
  const r = await cli(['start', '-c', config])
  t.equal(r.code, 1)
  t.match(
    r.err,
    /the shared dir .*nowhere cannot be used: .*ENOENT.*expected a directory on storage that every node of cluster "c1" mounts/,
  )
  t.notOk(await accepting(25196), 'nothing started')
})

/** GET on a hot standby server: its status code, 0 when it does not answer. */
const probe = async (port: number, timeoutMs = 10_000) => {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(timeoutMs) })
    return { code: res.status, body: await res.text() }
  } catch {
    return { code: 0, body: '' }
  }
}

t.test(
  "hot standby with the child helper: pre-started as standby, activated on promotion; a frozen supervisor's child deactivates itself before the standby takes over",
  async (t) => {
    const shared = await cluster(t)
    const svc = (port: number) => ({
      svc: {
        command: [process.execPath, join(ROOT, 'test/fixtures/ha-child.js')],
        env: { PORT: '{port}' },
        port,
        runOn: 'active',
        standby: 'hot',
        activate: { type: 'ipc' },
        stop: { signal: 'SIGTERM', timeoutMs: 2000 },
      },
    })
    const a = node(t, shared, 'a', 25200, HA, svc(25201))
    await a.sup.waitLog('a promoted', (r) => r.event === 'promoted')
    await waitUntil('a svc active', async () => (await probe(25201)).body === 'active 1\n')
    const b = node(t, shared, 'b', 25210, HA, svc(25211))
    await b.sup.waitLog('b svc ready', (r) => r.event === 'ready' && r.component === 'svc')
    t.same(await probe(25211), { code: 503, body: 'standby\n' }, 'pre-started on b as a standby')
    // Both servers sampled independently every 10 ms: never two answering 200 at one time.
    let running = true
    const answers: { port: number; from: number; to: number }[] = []
    const loops = [25201, 25211].map(async (port) => {
      while (running) {
        const from = performance.now()
        const r = await probe(port)
        if (r.code === 200) answers.push({ port, from, to: performance.now() })
        await new Promise((res) => setTimeout(res, 10))
      }
    })
    a.sup.proc.kill('SIGSTOP')
    t.teardown(() => a.sup.proc.kill('SIGCONT'))
    const stoppedAt = performance.now()
    await waitUntil('a svc deactivated by itself', async () => (await probe(25201)).code === 503)
    const deactivatedAfter = performance.now() - stoppedAt
    await b.sup.waitLog('b promoted', (r) => r.event === 'promoted')
    await waitUntil('b svc active', async () => (await probe(25211)).body === 'active 2\n')
    a.sup.proc.kill('SIGCONT')
    await a.sup.waitLog('a fenced', (r) => r.event === 'fenced')
    running = false
    await Promise.all(loops)
    const overlaps = answers.filter(
      (x) =>
        x.port === 25201 &&
        answers.some((y) => y.port === 25211 && y.from <= x.to && x.from <= y.to),
    )
    t.same(overlaps, [], `never both active (${answers.length} 200 answers)`)
    t.comment(
      `a's child stopped serving ${Math.round(deactivatedAfter)} ms after its supervisor froze`,
    )
    await a.sup.waitLog('a svc says why', (r) =>
      /deactivated: the supervisor did not renew its lease in time/.test(r.msg),
    )
    await b.sup.waitLog('b svc activated', (r) => /activated for epoch 2/.test(r.msg))
    await waitUntil(
      'a svc back as a standby',
      async () => (await probe(25201)).body === 'standby\n',
    )
  },
)

/** A node whose `web` (2 instances, every node) starts slowly, and `api` on the active node. */
const rollingNode = (t: Test, shared: string, name: string, base: number, version: string) =>
  node(t, shared, name, base, HA, rollingComponents(base, version))
const rollingComponents = (base: number, version: string) => ({
  web: fixture(
    { instances: 2, port: base + 1, readiness: { type: 'http', path: '/' } },
    { VERSION: version, READY_DELAY_MS: '300' },
  ),
  api: fixture({ port: base + 5, runOn: 'active' }, { VERSION: version }),
})
const rewrite = (n: Node, base: number, version: string) => {
  const c = JSON.parse(readFileSync(n.config, 'utf8')) as Record<string, unknown>
  writeFileSync(n.config, JSON.stringify({ ...c, components: rollingComponents(base, version) }))
}

/** When each web instance of each node was down (stopping to ready), from the nodes' logs. */
const downIntervals = (nodes: Node[]) =>
  nodes.flatMap((n) => {
    const out: { who: string; from: number; to: number }[] = []
    const open = new Map<number, number>()
    for (const r of n.sup.records) {
      if (r.component !== 'web' || typeof r.time !== 'number') continue
      if (r.event === 'stopping') open.set(r.instance!, r.time)
      else if (r.event === 'ready' && open.has(r.instance!)) {
        out.push({ who: `${n.name} web#${r.instance}`, from: open.get(r.instance!)!, to: r.time })
        open.delete(r.instance!)
      }
    }
    return out
  })

t.test(
  'upgrade --cluster: every node does its part; one web instance down at a time across nodes; the active hands over before rolling api',
  async (t) => {
    const shared = await cluster(t)
    const a = rollingNode(t, shared, 'a', 25250, 'v1')
    await a.sup.waitLog('a promoted', (r) => r.event === 'promoted')
    const b = rollingNode(t, shared, 'b', 25260, 'v1')
    await b.sup.waitLog('b all ready', (r) => r.event === 'all-ready')
    await waitUntil('a sees b', async () => {
      const s = (await status(a.config)) as unknown as { cluster: { peers: unknown[] } }
      return s.cluster.peers.length === 1
    })
    rewrite(a, 25250, 'v2')
    rewrite(b, 25260, 'v2')
    const r = await cli(['upgrade', '--cluster', '-c', a.config])
    t.equal(r.code, 0, r.err)
    t.match(r.out, /cluster upgrade \S+: asked a, b/)
    t.match(r.out, /node a: \d+ replaced/)
    t.match(r.out, /node b: \d+ replaced/)
    for (const n of [a, b]) {
      const s = await status(n.config)
      t.ok(
        s.instances.filter((i) => i.id.startsWith('web')).every((i) => i.state === 'ready'),
        `${n.name}: web ready`,
      )
      t.equal(
        n.sup.count((x) => x.event === 'spawned' && x.component === 'web'),
        4,
        `${n.name}: both web replaced`,
      )
    }
    const down = downIntervals([a, b])
    t.equal(down.length, 4)
    const overlaps = down.filter((x) => down.some((y) => y !== x && y.from < x.to && x.from < y.to))
    t.same(overlaps, [], 'never two web instances down at once, across both nodes')
    t.match(await a.sup.waitLog('a handed over', (x) => x.event === 'released'), {})
    // Which node ends active depends on the order in which the two do their parts (a node
    // that became active meanwhile hands over again before touching api): exactly one is,
    // and its api serves.
    const active = await waitUntil('one active node with its api up', async () => {
      const roles = await Promise.all([a, b].map(async (n) => (await status(n.config)).role))
      const actives = [a, b].filter((_, i) => roles[i] === 'active')
      return actives.length === 1 && (await accepting(actives[0]!.api)) && actives[0]
    })
    t.ok(active, `${active.name} is active with api serving`)
    for (const n of [a, b]) {
      // The api is never restarted by the rollout while its node is active.
      let role = 'standby'
      for (const x of n.sup.records) {
        if (x.event === 'promoted') role = 'active'
        else if (x.event === 'released' || x.event === 'fenced') role = 'standby'
        else if (x.event === 'rollout' && x.phase === 'stopping' && x.id === 'api#0')
          t.equal(role, 'standby', `${n.name} replaced api#0 as a standby`)
      }
    }
  },
)

t.test(
  'upgrade --cluster with the node holding the roll slot killed midway: the other node goes on',
  async (t) => {
    const shared = await cluster(t)
    const a = rollingNode(t, shared, 'a', 25270, 'v1')
    await a.sup.waitLog('a promoted', (r) => r.event === 'promoted')
    const b = rollingNode(t, shared, 'b', 25280, 'v1')
    await b.sup.waitLog('b all ready', (r) => r.event === 'all-ready')
    await waitUntil('b sees a', async () => {
      const s = (await status(b.config)) as unknown as { cluster: { peers: unknown[] } }
      return s.cluster.peers.length === 1
    })
    rewrite(b, 25280, 'v2')
    const upgrade = cli(['upgrade', '--cluster', 'web', '--all', '-c', b.config])
    await a.sup.waitLog(
      'a restarting a web instance',
      (x) => x.event === 'rollout' && x.phase === 'stopping',
    )
    a.sup.proc.kill('SIGKILL')
    const r = await upgrade
    t.equal(r.code, 1)
    t.match(r.out, /node b: 2 replaced/)
    t.match(r.out + r.err, /node a went away before finishing its part/)
    t.equal(
      b.sup.count((x) => x.event === 'spawned' && x.component === 'web'),
      4,
      'b replaced both',
    )
  },
)
