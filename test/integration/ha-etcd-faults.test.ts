// Hot standby on a real etcd (issue 12), faults of etcd and of the network: two real supervisors
// whose `ha.backend` is a 3-member etcd on loopback (test/helpers/etcd.ts, one cluster for the
// file, a prefix per test). SIGSTOP and kill -9 of the etcd leader, a full etcd restart, the loss
// of quorum, and a partition of the active from etcd (each node reaches every member through its
// own TCP proxy, test/helpers/tcp-proxy.ts, cut as a black hole or as refused connections).
// Every node's /leader and active-only api are sampled concurrently for the whole of each test:
// never two actives at one instant, nobody active while etcd cannot be reached, and some node
// active again after each fault. Faults of the active node itself: ha-etcd.test.ts.
// Ports 26500-26599 belong to this file (test files run in parallel).
import t, { type Test } from 'tap'
import { EtcdCluster, needEtcd } from '../helpers/etcd.js'
import {
  activeOf,
  etcdCluster,
  HA,
  heartbeatSeq,
  leader,
  node,
  watchCluster,
  type Backend,
  type EtcdBackend,
  type Node,
} from '../helpers/ha-cluster.js'
import { TcpProxy, type ProxyCut } from '../helpers/tcp-proxy.js'
import { accepting, sleep, status, waitUntil, type LogRecord } from '../helpers/supervisor.js'

const etcd = needEtcd(t) ? await EtcdCluster.start(t, 3) : undefined

/**
 * How long after etcd went away the active must have fenced (its log's own timestamp): at most
 * selfFenceMs after its last good renew started, which was before; the rest is slack for a
 * loaded machine.
 */
const FENCE_BOUND_MS = HA.selfFenceMs + 1500

/** How long a fault that leaves nobody active is held: longer than takeoverMs, with margin. */
const OUTAGE_MS = HA.takeoverMs + 2000

/** Every member running, unpaused and healthy again: for the next test, even after a failure. */
const restoreEtcd = async (etcd: EtcdCluster) => {
  for (const [i, m] of etcd.members.entries()) {
    if (m.proc) etcd.resume(i)
    else etcd.restart(i)
  }
  await etcd.waitHealthy()
}

let prefixes = 0

/**
 * `a` active (started first, its api up), then `b` a standby. `via(name)` gives a node's
 * backend (its own proxies, for one); the cluster is made on the members themselves.
 */
const pair = async (
  t: Test,
  etcd: EtcdCluster,
  base: number,
  via: (name: string, direct: EtcdBackend) => Backend = (_, direct) => direct,
) => {
  t.teardown(() => restoreEtcd(etcd))
  const direct = await etcdCluster(
    t,
    etcd.endpoints,
    `/tandem/ha-etcd-faults-${process.pid}-${++prefixes}`,
  )
  const a = node(t, via('a', direct), 'a', base)
  await a.sup.waitLog('a promoted', (r) => r.event === 'promoted')
  await waitUntil('a api up', () => accepting(a.api))
  await waitUntil('a on /leader answers 200', async () => (await leader(a)) === 200)
  const b = node(t, via('b', direct), 'b', base + 10)
  await b.sup.waitLog('b web ready', (r) => r.event === 'ready' && r.component === 'web')
  await waitUntil('b on /leader answers 503', async () => (await leader(b)) === 503)
  const w = watchCluster(t, [a, b])
  await waitUntil('the samplers running', () => w.asked() >= 20)
  return { direct, a, b, w }
}

/**
 * Waits until `n` has renewed `renews` times in one epoch it holds (read from its /leader; the
 * count starts again if it holds another): a window counted in the cluster's own progress.
 * False if it did not.
 */
const holderRenewals = (backend: Backend, n: Node, renews: number): Promise<boolean> => {
  let start: { epoch: number; seq: number } | undefined
  return waitUntil(`${renews} renews by ${n.name}`, async () => {
    const res = await fetch(`http://127.0.0.1:${n.http}/leader`).catch(() => undefined)
    const body = res ? ((await res.json().catch(() => ({}))) as { epoch?: number }) : {}
    if (res?.status !== 200 || typeof body.epoch !== 'number') return false
    const seq = await heartbeatSeq(backend, body.epoch)
    if (seq < 0) return false
    if (start?.epoch !== body.epoch) start = { epoch: body.epoch, seq }
    return seq >= start.seq + renews
  }).then(
    () => true,
    () => false,
  )
}

/** The next `fenced` record of `n` after the first `skip` ones. */
const nextFence = (n: Node, skip: number): Promise<LogRecord> =>
  waitUntil(`${n.name} fenced`, () => n.sup.records.filter((r) => r.event === 'fenced')[skip])

const fences = (n: Node) => n.sup.count((r) => r.event === 'fenced')

/**
 * Asserts that nothing was active from `bound` after `from` until `to` (performance.now()):
 * no /leader 200 decided in that span, no api accepting in it.
 */
const nobodyActive = (
  t: Test,
  timelines: {
    answers: { node: string; code: number; at?: number }[]
    apiUps: { port: number; from: number; to: number }[]
  },
  from: number,
  to: number,
  what: string,
) => {
  const start = from + FENCE_BOUND_MS
  t.ok(to > start, `${what}: the outage outlasted the fence bound (${(to - from).toFixed(0)} ms)`)
  const leaders = timelines.answers.filter(
    (x) => x.code === 200 && x.at !== undefined && x.at > start && x.at < to,
  )
  t.same(
    leaders.map((x) => `${x.node} 200 at ${x.at!.toFixed(0)}`),
    [],
    `${what}: no /leader 200 from ${FENCE_BOUND_MS} ms after etcd went away until it came back`,
  )
  const ups = timelines.apiUps.filter((x) => x.from > start && x.to < to)
  t.same(
    ups.map((x) => `${x.port} at ${x.from.toFixed(0)}`),
    [],
    `${what}: no active-only api accepting then`,
  )
}

t.test(
  'SIGSTOP of the etcd leader, then kill -9 of the next leader and its restart: never two actives, the service back after each',
  async (t) => {
    if (!etcd) return
    const { a, b, w } = await pair(t, etcd, 26500)
    const paused = await etcd.leader()
    t.comment(`etcd leader: m${paused}, paused`)
    etcd.pause(paused)
    const next = await waitUntil('another etcd leader', async () => {
      const l = await etcd.leader()
      return l !== paused && l + 1
    }).then((i) => i - 1)
    t.comment(`new etcd leader: m${next}`)
    await activeOf([a, b], 'a node active while the old etcd leader is paused')
    // The pause lasts on a little with the new leader in place: the one sleep of this fault.
    await sleep(2000)
    etcd.resume(paused)
    await etcd.waitHealthy()
    const afterPause = await activeOf([a, b], 'a node active after the pause')
    t.comment(`active after the pause: ${afterPause.name} (fences: a ${fences(a)}, b ${fences(b)})`)

    const killed = await etcd.leader()
    t.comment(`etcd leader: m${killed}, killed`)
    etcd.stop(killed)
    await waitUntil('a new etcd leader among the two left', async () => {
      const l = await etcd.leader()
      return l !== killed && l >= 0
    })
    const afterKill = await activeOf([a, b], 'a node active after the kill of the etcd leader')
    t.comment(`active after the kill: ${afterKill.name} (fences: a ${fences(a)}, b ${fences(b)})`)
    etcd.restart(killed)
    await etcd.waitHealthy()
    const afterRestart = await activeOf([a, b], 'a node active after the member came back')
    // Some renews more with all three members: one active, the other a standby.
    const epoch = (await status(afterRestart.config)) as unknown as { cluster?: { epoch?: number } }
    t.comment(`active at the end: ${afterRestart.name}, epoch ${epoch.cluster?.epoch}`)
    await w.stop(t)
    const codes = await Promise.all([leader(a), leader(b)])
    t.same(codes.sort(), [200, 503], 'one active, one standby')
  },
)

t.test(
  'a full etcd restart: the active fences, nobody is active while etcd is down, then one is',
  async (t) => {
    if (!etcd) return
    const { a, b, w } = await pair(t, etcd, 26520)
    const fencesBefore = fences(a)
    const downWall = Date.now()
    const down = performance.now()
    for (let i = 0; i < etcd.members.length; i++) etcd.stop(i)
    const fenced = await nextFence(a, fencesBefore)
    const after = (fenced.time as number) - downWall
    t.ok(
      after <= FENCE_BOUND_MS,
      `a fenced ${after} ms after etcd stopped (selfFenceMs ${HA.selfFenceMs}, bound ${FENCE_BOUND_MS}): ${fenced.msg}`,
    )
    await waitUntil('a on /leader answers 503', async () => (await leader(a)) === 503)
    await waitUntil('a api stopped', async () => !(await accepting(a.api)))
    // etcd stays down for longer than takeoverMs: a standby that claimed without etcd would.
    await waitUntil('etcd down long enough', () => performance.now() - down >= OUTAGE_MS, 60_000)
    t.equal(
      b.sup.count((r) => r.event === 'promoted'),
      0,
      'b not promoted while etcd was down',
    )
    const up = performance.now()
    for (let i = 0; i < etcd.members.length; i++) etcd.restart(i)
    await etcd.waitHealthy()
    const back = await activeOf([a, b], 'a node active after etcd restarted')
    await waitUntil(`${back.name} api up`, () => accepting(back.api))
    t.comment(`active after the restart: ${back.name}`)
    const timelines = await w.stop(t)
    nobodyActive(t, timelines, down, up, 'etcd down')
  },
)

t.test(
  'loss of quorum (2 of 3 members stopped): the active fences, nobody is active until quorum returns, then one is',
  async (t) => {
    if (!etcd) return
    const { a, b, w } = await pair(t, etcd, 26540)
    const fencesBefore = fences(a)
    // The followers: the leader is left alone, without a quorum to commit anything.
    const lead = await etcd.leader()
    const stopped = [0, 1, 2].filter((i) => i !== lead)
    const downWall = Date.now()
    const down = performance.now()
    for (const i of stopped) etcd.stop(i)
    const fenced = await nextFence(a, fencesBefore)
    const after = (fenced.time as number) - downWall
    t.ok(
      after <= FENCE_BOUND_MS,
      `a fenced ${after} ms after quorum was lost (bound ${FENCE_BOUND_MS}): ${fenced.msg}`,
    )
    await waitUntil('a on /leader answers 503', async () => (await leader(a)) === 503)
    await waitUntil(
      'without quorum long enough',
      () => performance.now() - down >= OUTAGE_MS,
      60_000,
    )
    t.equal(
      b.sup.count((r) => r.event === 'promoted'),
      0,
      'b not promoted without quorum',
    )
    const up = performance.now()
    etcd.restart(stopped[0]!)
    const back = await activeOf([a, b], 'a node active once quorum returned')
    t.comment(`active with 2 members: ${back.name}`)
    etcd.restart(stopped[1]!)
    await etcd.waitHealthy()
    await activeOf([a, b], 'a node active with all three members')
    const timelines = await w.stop(t)
    nobodyActive(t, timelines, down, up, 'no quorum')
    const codes = await Promise.all([leader(a), leader(b)])
    t.same(codes.sort(), [200, 503], 'one active, one standby')
  },
)

t.test(
  'a partition of the active from etcd (a black hole, then refused connections): it fences, the other takes over; healed, still one active',
  async (t) => {
    if (!etcd) return
    // Each node's own proxy in front of each member: node a on 26563-26565, b on 26573-26575.
    const proxies: Record<string, TcpProxy[]> = {}
    for (const [name, base] of [
      ['a', 26563],
      ['b', 26573],
    ] as const) {
      proxies[name] = await Promise.all(
        etcd.members.map((m, i) =>
          TcpProxy.start(t, base + i, {
            host: '127.0.0.1',
            port: Number(new URL(m.clientUrl).port),
          }),
        ),
      )
    }
    const { direct, a, b, w } = await pair(t, etcd, 26560, (name, d) => ({
      ...d,
      endpoints: proxies[name]!.map((p) => p.url),
    }))
    let [active, standby] = [a, b]
    for (const mode of ['blackhole', 'refuse'] as ProxyCut[]) {
      const fencesBefore = fences(active)
      const promotionsBefore = standby.sup.count((r) => r.event === 'promoted')
      const cutWall = Date.now()
      await Promise.all(proxies[active.name]!.map((p) => p.cut(mode)))
      const fenced = await nextFence(active, fencesBefore)
      const after = (fenced.time as number) - cutWall
      t.ok(
        after <= FENCE_BOUND_MS,
        `${mode}: ${active.name} fenced ${after} ms after the cut (bound ${FENCE_BOUND_MS}): ${fenced.msg}`,
      )
      await waitUntil(
        `${standby.name} promoted`,
        () => standby.sup.count((r) => r.event === 'promoted') > promotionsBefore,
      )
      t.equal(
        await activeOf([a, b], `a node active after the ${mode} cut`),
        standby,
        `${mode}: ${standby.name} took over`,
      )
      await waitUntil(`${standby.name} api up`, () => accepting(standby.api))
      t.equal(await leader(active), 503, `${mode}: ${active.name} a standby, cut off`)
      const healedPromotions = active.sup.count((r) => r.event === 'promoted')
      await Promise.all(proxies[active.name]!.map((p) => p.heal()))
      // Longer than takeoverMs of renews after the heal (counted in the holder's own renews, of
      // whatever epoch it holds: on a loaded machine it may fence and claim again meanwhile).
      t.ok(await holderRenewals(direct, standby, 12), `${standby.name} went on renewing`)
      t.equal(
        active.sup.count((r) => r.event === 'promoted'),
        healedPromotions,
        `${mode}: the healed ${active.name} did not compete`,
      )
      t.equal(await leader(active), 503, `${mode}: ${active.name} still a standby after the heal`)
      t.equal(await leader(standby), 200, `${mode}: ${standby.name} still active`)
      ;[active, standby] = [standby, active]
    }
    await w.stop(t)
  },
)
