// The lease's store on a real etcd (1 and 3 members): the same contract as the shared directory's
// (claims won and lost, lost replies resolved by the owner, the epoch record, heartbeats, why a
// node may not claim), processes racing for claims, and the real lease core with two nodes on it
// while members are killed, paused and the whole etcd stops.
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { b64, defaultTransport, type EtcdTransport } from '../../src/ha/etcd-client.js'
import {
  EtcdLeaseStore,
  leaseTtlSeconds,
  padEpoch,
  requestTimeoutMs,
} from '../../src/ha/etcd-store.js'
import { initEtcdCluster } from '../../src/ha/init-etcd-cluster.js'
import { Lease, type HaTimings } from '../../src/ha/lease.js'
import { systemClock } from '../../src/seams/clock.js'
import { EtcdCluster, gateway, needEtcd } from '../helpers/etcd.js'
import { ROOT, sleep, waitUntil } from '../helpers/supervisor.js'

const owner = (node: string) => ({ node, pid: 1, nonce: `nonce-${node}` })
const timings: HaTimings = { renewMs: 100, selfFenceMs: 400, takeoverMs: 900, pollMs: 40 }
const config = { name: 'c', ...timings }
let prefixes = 0
const newPrefix = () => `/tandem/test-${process.pid}-${++prefixes}`

t.test('policy constants', async (t) => {
  t.equal(leaseTtlSeconds({ ...timings, takeoverMs: 2000 }), 3, 'defaults: a 3 s etcd lease')
  t.equal(leaseTtlSeconds(timings), 2)
  t.equal(requestTimeoutMs({ ...timings, renewMs: 250, selfFenceMs: 1000 }), 750)
  t.equal(requestTimeoutMs({ ...timings, renewMs: 250, selfFenceMs: 300 }), 100, 'at least 100')
  t.equal(padEpoch(12), '00000000000000000012')
})

for (const size of [1, 3] as const) {
  t.test(`${size} member(s): claims, owners, the epoch record and heartbeats`, async (t) => {
    if (!needEtcd(t)) return
    const etcd = await EtcdCluster.start(t, size)
    const prefix = newPrefix()
    const store = new EtcdLeaseStore({ endpoints: etcd.endpoints, prefix, timings })
    t.match(
      await store.cannotClaim(),
      /etcd has no \/tandem\/test-.*\/config: the cluster was never initialized/,
    )
    t.equal(await store.readEpoch(), 0, 'no epoch record yet: 0')
    await t.rejects(
      store.claim(1, owner('a')),
      { code: 'ECLUSTER', message: /has no .*\/epoch/ },
      'no claim before init',
    )
    t.same(await initEtcdCluster({ endpoints: etcd.endpoints, prefix, config }), {
      key: `${prefix}/config`,
      config,
      created: true,
    })
    t.equal(
      (await initEtcdCluster({ endpoints: etcd.endpoints, prefix, config })).created,
      false,
      'again: harmless',
    )
    await t.rejects(
      initEtcdCluster({
        endpoints: etcd.endpoints,
        prefix,
        config: { ...config, takeoverMs: 2000 },
      }),
      { code: 'ECONFIG', message: /has takeoverMs 900, and this config has takeoverMs 2000/ },
    )
    t.equal(await store.cannotClaim(), undefined)
    t.equal(await store.highestClaim(), 0)
    t.equal(await store.claim(1, owner('a')), 'won')
    const other = new EtcdLeaseStore({ endpoints: [...etcd.endpoints].reverse(), prefix, timings })
    t.equal(await other.claim(1, owner('b')), 'lost', 'an existing claim is lost to others')
    t.same(await other.readOwner(1), owner('a'), 'the owner came in with the claim')
    t.equal(await other.readEpoch(), 1, 'published in the same transaction')
    await store.publishEpoch(1)
    await store.publishEpoch(0)
    t.equal(await other.readEpoch(), 1, 'publishing never lowers the record')
    t.equal(await other.claim(3, owner('b')), 'won')
    t.equal(
      await store.claim(2, owner('a')),
      'lost',
      'below the record: an epoch is never claimed after a higher one',
    )
    t.equal(await store.highestClaim(), 3)
    // A claim key above the record (put by hand, or an older version): found by the range.
    await gateway(etcd.endpoints[0]!, '/v3/kv/put', {
      key: b64(`${prefix}/claims/${padEpoch(12)}`),
      value: b64('garbage'),
    })
    t.equal(await store.highestClaim(), 12, 'numeric order: 12 above 3')
    t.equal(await store.readOwner(12), undefined, 'a claim whose value is not an owner')
    t.equal(await store.readOwner(7), undefined, 'no claim')
    t.equal(await other.readHeartbeat(3), undefined)
    const hb = { epoch: 3, seq: 7, state: 'active' as const, node: 'b', cfgHash: 'h' }
    await other.writeHeartbeat(hb)
    t.same(JSON.parse((await store.readHeartbeat(3))!), hb)
    await other.writeHeartbeat({ ...hb, seq: 8, state: 'released' })
    t.same(JSON.parse((await store.readHeartbeat(3))!), { ...hb, seq: 8, state: 'released' })
    await t.rejects(
      store.writeHeartbeat({ ...hb, node: 'a' }),
      { code: 'ELEASELOST', message: /holds no etcd lease for epoch 3/ },
      "only the claim's owner renews it",
    )
    // The etcd lease expires (revoked here, as the TTL would): the claim and heartbeat go with
    // it, and the next renew fails.
    const kv = (await gateway(etcd.endpoints[0]!, '/v3/kv/range', {
      key: b64(`${prefix}/claims/${padEpoch(3)}`),
    })) as { kvs: { lease: string }[] }
    await gateway(etcd.endpoints[0]!, '/v3/lease/revoke', { ID: kv.kvs[0]!.lease })
    await t.rejects(other.writeHeartbeat({ ...hb, seq: 9 }), {
      code: 'ELEASELOST',
      message: /expired/,
    })
    t.equal(await store.readOwner(3), undefined, 'the claim key went with the etcd lease')
    t.equal(await store.readHeartbeat(3), undefined, 'and so did the heartbeat')
    t.equal(await store.readEpoch(), 3, 'the epoch record stays')
    t.equal(await other.claim(3, owner('c')), 'lost', 'an expired claim is never claimed again')
    await gateway(etcd.endpoints[0]!, '/v3/kv/put', {
      key: b64(`${prefix}/epoch`),
      value: b64('twelve'),
    })
    await t.rejects(store.readEpoch(), {
      code: 'EBADEPOCH',
      message: /epoch should hold .*"twelve"/,
    })
    await gateway(etcd.endpoints[0]!, '/v3/kv/put', {
      key: b64(`${prefix}/config`),
      value: b64('[1'),
    })
    t.match(await store.cannotClaim(), /config is not the cluster's configuration \("\[1"\)/)
  })
}

/** A transport whose claim transactions are applied and then answered with an error. */
const lostTxnReply =
  (what: string): EtcdTransport =>
  async (endpoint, path, body, signal) => {
    const answer = await defaultTransport(endpoint, path, body, signal)
    if (path === '/v3/kv/txn')
      throw Object.assign(new Error(`${what} after the txn was applied`), { name: what })
    return answer
  }

t.test('a claim whose reply was lost is resolved by the owner inside', async (t) => {
  if (!needEtcd(t)) return
  const etcd = await EtcdCluster.start(t, 1)
  const prefix = newPrefix()
  await initEtcdCluster({ endpoints: etcd.endpoints, prefix, config })
  const lost = (transport: EtcdTransport) =>
    new EtcdLeaseStore({ endpoints: etcd.endpoints, prefix, timings, transport })
  t.equal(
    await lost(lostTxnReply('TimeoutError')).claim(1, owner('a')),
    'won',
    'a timeout after it was applied: won',
  )
  t.equal(
    await lost(lostTxnReply('TypeError')).claim(2, owner('a')),
    'won',
    'a network error after it was applied: won',
  )
  const plain = new EtcdLeaseStore({ endpoints: etcd.endpoints, prefix, timings })
  t.equal(await plain.claim(3, owner('b')), 'won')
  t.equal(
    await lost(lostTxnReply('TimeoutError')).claim(3, owner('a')),
    'lost',
    'a lost reply over another owner: lost',
  )
  const winner = lost(lostTxnReply('TimeoutError'))
  t.equal(await winner.claim(4, owner('a')), 'won')
  await winner.writeHeartbeat({ epoch: 4, seq: 1, state: 'active', node: 'a', cfgHash: 'h' })
  t.pass('the lease of a claim resolved by reading is kept alive like any other')
  const never: EtcdTransport = (endpoint, path, body, signal) =>
    path === '/v3/kv/txn'
      ? Promise.reject(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }))
      : defaultTransport(endpoint, path, body, signal)
  await t.rejects(
    lost(never).claim(5, owner('a')),
    { code: 'EETCD', message: /claim of .*claims\/0+5 failed .*ECONNREFUSED/ },
    'not applied: thrown',
  )
  t.equal(await plain.readOwner(5), undefined)
})

t.test('failover across endpoints; errors name each endpoint', async (t) => {
  if (!needEtcd(t)) return
  const etcd = await EtcdCluster.start(t, 1)
  const prefix = newPrefix()
  await initEtcdCluster({ endpoints: etcd.endpoints, prefix, config })
  // Ports of the test range that nothing listens on (etcd's client port is the first of a pair).
  const port = Number(new URL(etcd.endpoints[0]!).port)
  const dead = `http://127.0.0.1:${port + 2}`
  const dead2 = `http://127.0.0.1:${port + 3}`
  const store = new EtcdLeaseStore({ endpoints: [dead, ...etcd.endpoints], prefix, timings })
  t.equal(await store.claim(1, owner('a')), 'won', 'a refused endpoint: the next one answers')
  const none = new EtcdLeaseStore({ endpoints: [dead, dead2], prefix, timings })
  await t.rejects(none.readEpoch(), {
    code: 'EETCD',
    message:
      /read of \/tandem\/.*\/epoch failed within 300 ms on every endpoint: http:\/\/127\.0\.0\.1:\d+: connect ECONNREFUSED[^;]*; http:\/\/127\.0\.0\.1:\d+: connect ECONNREFUSED/,
  })
  t.match(
    await none.cannotClaim(),
    /etcd cannot serve a linearizable read of .*config \(no quorum, or no member reachable\): .*ECONNREFUSED/,
  )
})

t.test('3 members: no claim without quorum, and again with it', async (t) => {
  if (!needEtcd(t)) return
  const etcd = await EtcdCluster.start(t, 3)
  const prefix = newPrefix()
  await initEtcdCluster({ endpoints: etcd.endpoints, prefix, config })
  const store = new EtcdLeaseStore({ endpoints: etcd.endpoints, prefix, timings })
  t.equal(await store.cannotClaim(), undefined)
  // A follower first: killing the leader would leave no leader for an election timeout.
  const leader = await etcd.leader()
  const [follower, other] = [0, 1, 2].filter((i) => i !== leader) as [number, number]
  etcd.stop(follower)
  t.equal(await store.cannotClaim(), undefined, 'one member down: still a quorum')
  etcd.stop(other)
  t.match(
    await store.cannotClaim(),
    /cannot serve a linearizable read of .*config \(no quorum, or no member reachable\): .*failed within 300 ms on every endpoint/,
  )
  await t.rejects(store.claim(1, owner('a')), { code: 'EETCD' }, 'a claim fails')
  etcd.restart(other)
  await waitUntil('a claim allowed again', async () => (await store.cannotClaim()) === undefined)
  t.equal(await store.claim(1, owner('a')), 'won')
})

t.test('three processes racing for 30 epochs: exactly one winner each', async (t) => {
  if (!needEtcd(t)) return
  const etcd = await EtcdCluster.start(t, 3)
  const prefix = newPrefix()
  await initEtcdCluster({ endpoints: etcd.endpoints, prefix, config })
  const racer = (name: string, endpoints: string[]) =>
    new Promise<number[]>((resolve, reject) => {
      const code = `
        const { EtcdLeaseStore } = await import(${JSON.stringify(join(ROOT, 'dist/ha/etcd-store.js'))})
        const store = new EtcdLeaseStore({ endpoints: ${JSON.stringify(endpoints)}, prefix: ${JSON.stringify(prefix)}, timings: ${JSON.stringify(timings)}, requestTimeoutMs: 10000 })
        const won = []
        for (let e = 1; e <= 30; e++) {
          if ((await store.claim(e, { node: '${name}', pid: process.pid, nonce: '${name}' })) === 'won') won.push(e)
        }
        console.log(JSON.stringify(won))`
      const p = spawn(process.execPath, ['--input-type=module', '-e', code], {
        stdio: ['ignore', 'pipe', 'inherit'],
      })
      t.teardown(() => p.kill('SIGKILL'))
      let out = ''
      p.stdout.on('data', (d: Buffer) => (out += d.toString()))
      p.once('close', (c) =>
        c === 0 ? resolve(JSON.parse(out) as number[]) : reject(new Error(`exit ${c}`)),
      )
    })
  const e = etcd.endpoints
  const results = await Promise.all([
    racer('a', e),
    racer('b', [e[1]!, e[2]!, e[0]!]),
    racer('c', [e[2]!, e[0]!, e[1]!]),
  ])
  t.same(
    results.flat().sort((x, y) => x - y),
    Array.from({ length: 30 }, (_, i) => i + 1),
    'each epoch won exactly once',
  )
  t.equal(await new EtcdLeaseStore({ endpoints: e, prefix, timings }).readEpoch(), 30)
})

/** Two (or more) real Lease cores on etcd, both sampled every 10 ms. */
const leaseNodes = (t: Test, etcd: EtcdCluster, prefix: string) => {
  const leases = new Map<string, Lease>()
  const log: string[] = []
  let overlaps = 0
  let samples = 0
  const add = (node: string, endpoints: string[]) => {
    const lease = new Lease({
      store: new EtcdLeaseStore({ endpoints, prefix, timings }),
      clock: systemClock,
      timings,
      cluster: 'c',
      node,
    })
    const stamp = () => `${Math.round(performance.now())} ${node}`
    lease.on('active', (e) => log.push(`${stamp()} active ${e.epoch}: ${e.why}`))
    lease.on('standby', (e) => log.push(`${stamp()} standby ${e.epoch}: ${e.why}`))
    lease.on('problem', (m) => log.push(`${stamp()} problem: ${m}`))
    leases.set(node, lease)
    lease.start()
    return lease
  }
  const timer = setInterval(() => {
    samples++
    const active = [...leases.values()].filter((l) => l.isActive()).length
    if (active > 1) overlaps++
  }, 10)
  const actives = () => [...leases.entries()].filter(([, l]) => l.isActive()).map(([n]) => n)
  const close = () => {
    clearInterval(timer)
    for (const l of leases.values()) l.stop()
  }
  t.teardown(close)
  t.teardown(() => {
    if (t.passing() && !process.env.ETCD_TEST_LOG) return
    t.comment(log.join('\n'))
    t.comment(etcd.logs())
  })
  return { add, leases, log, actives, overlaps: () => overlaps, samples: () => samples, close }
}

t.test(
  'the lease core on 3 etcd members: kill, a paused etcd leader, all of etcd down',
  async (t) => {
    if (!needEtcd(t)) return
    const etcd = await EtcdCluster.start(t, 3)
    const prefix = newPrefix()
    await initEtcdCluster({ endpoints: etcd.endpoints, prefix, config })
    const e = etcd.endpoints
    const nodes = leaseNodes(t, etcd, prefix)
    nodes.add('a', e)
    nodes.add('b', [e[2]!, e[1]!, e[0]!])
    const first = await waitUntil('one active', () => nodes.actives()[0])
    t.same(nodes.actives(), [first])

    // The active stops (as if killed): the other takes over once its heartbeat stood still.
    const killed = nodes.leases.get(first)!
    killed.stop()
    const second = await waitUntil('the other active', () =>
      nodes.actives().find((n) => n !== first),
    )
    t.not(second, first)
    t.notOk(killed.isActive(), 'the stopped node fenced by its own clock')
    nodes.leases.delete(first)
    nodes.add(`${first}2`, e)

    // The etcd leader stops for 2 s: writes fail until the others elect a new one.
    const leader = await etcd.leader()
    t.comment(`pausing etcd leader m${leader}`)
    etcd.pause(leader)
    await sleep(2000)
    etcd.resume(leader)
    await waitUntil('one active after the pause', () => nodes.actives().length === 1)
    t.equal(nodes.overlaps(), 0, `no two actives at any of ${nodes.samples()} samples`)

    // All of etcd stops: the active fences within selfFenceMs of its last good renew, and nobody
    // is active until a quorum is back.
    const active = await waitUntil('an active before etcd stops', () => nodes.actives()[0])
    const fenced = new Promise<string>((resolve) =>
      nodes.leases.get(active)!.once('standby', (e) => resolve(e.why)),
    )
    const down = performance.now()
    for (let i = 0; i < 3; i++) etcd.stop(i)
    let activeLate = 0
    const watch = setInterval(() => {
      // Its last good renew started before etcd went down: selfFenceMs later it may not be active.
      if (performance.now() - down > timings.selfFenceMs && nodes.actives().length > 0) activeLate++
    }, 10)
    t.teardown(() => clearInterval(watch))
    t.match(
      await fenced,
      /last good renew started \d+ ms ago \(selfFenceMs 400\)/,
      'the active fenced',
    )
    await sleep(3 * timings.takeoverMs)
    t.same(nodes.actives(), [], 'nobody active while etcd is down')
    clearInterval(watch)
    t.equal(
      activeLate,
      0,
      'no sample found a node active later than selfFenceMs after etcd stopped',
    )
    for (let i = 0; i < 3; i++) etcd.restart(i)
    await etcd.waitHealthy()
    await waitUntil('one active once etcd is back', () => nodes.actives().length === 1)
    t.equal(nodes.overlaps(), 0, `no two actives at any of ${nodes.samples()} samples`)
    nodes.close()
  },
)
