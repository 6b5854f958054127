// Hot standby on a real etcd (issue 12), faults of the active node: real supervisors whose
// `ha.backend` is a 3-member etcd on loopback (test/helpers/etcd.ts, one cluster for the file,
// a prefix per test, made a cluster by `tandem cluster init`). kill -9 of the active among three
// nodes, SIGSTOP of the active for 0.5, 2 and 5 s, and nodes that cannot reach etcd at start.
// Every node's /leader and active-only api are sampled concurrently for the whole of each test:
// never two actives at one instant, and after each fault some node is active again. Faults of
// etcd itself and partitions: ha-etcd-faults.test.ts.
// Ports 26400-26499 belong to this file (test files run in parallel).
import t, { type Test } from 'tap'
import { EtcdCluster, needEtcd } from '../helpers/etcd.js'
import {
  activeOf,
  etcdCluster,
  leader,
  node,
  nodeConfig,
  renewals,
  sampleLeaders,
  watchCluster,
  type Backend,
  type Node,
} from '../helpers/ha-cluster.js'
import { TcpProxy } from '../helpers/tcp-proxy.js'
import { accepting, sleep, status, Supervisor, waitUntil } from '../helpers/supervisor.js'

const etcd = needEtcd(t) ? await EtcdCluster.start(t, 3) : undefined

let prefixes = 0
/** A cluster of its own for each test, in the file's etcd. */
const newCluster = (t: Test, etcd: EtcdCluster) =>
  etcdCluster(t, etcd.endpoints, `/tandem/ha-etcd-${process.pid}-${++prefixes}`)

/** Node `name` on `backend`, started; resolves once it serves as a standby (or the active). */
const startNode = async (t: Test, backend: Backend, name: string, base: number) => {
  const n = node(t, backend, name, base)
  await n.sup.waitLog(`${name} web ready`, (r) => r.event === 'ready' && r.component === 'web')
  return n
}

/** `a` active (started first, its api up), then standbys `names.slice(1)`. */
const nodes = async (t: Test, etcd: EtcdCluster, base: number, names = ['a', 'b']) => {
  const backend = await newCluster(t, etcd)
  const a = node(t, backend, names[0]!, base)
  await a.sup.waitLog('a promoted', (r) => r.event === 'promoted')
  await waitUntil('a api up', () => accepting(a.api))
  await waitUntil('a on /leader answers 200', async () => (await leader(a)) === 200)
  const rest: Node[] = []
  for (const [i, name] of names.slice(1).entries()) {
    const n = await startNode(t, backend, name, base + 10 * (i + 1))
    await waitUntil(`${name} on /leader answers 503`, async () => (await leader(n)) === 503)
    rest.push(n)
  }
  return { backend, all: [a, ...rest] }
}

/** Freezes `n`'s supervisor process alone (not its children, not its watchdog) for `ms`. */
const freeze = async (t: Test, n: Node, ms: number): Promise<number> => {
  t.teardown(() => n.sup.proc.kill('SIGCONT'))
  const at = performance.now()
  n.sup.proc.kill('SIGSTOP')
  // The fault lasts `ms`: holding it is the one sleep of a fault test.
  await sleep(ms)
  n.sup.proc.kill('SIGCONT')
  return performance.now() - at
}

t.test(
  'one active on etcd: /leader, status names the backend, api on the active alone',
  async (t) => {
    if (!etcd) return
    const {
      all: [a, b],
    } = await nodes(t, etcd, 26400)
    t.same(await (await fetch(`http://127.0.0.1:${a!.http}/leader`)).json(), {
      node: 'a',
      epoch: 1,
    })
    t.equal(await leader(b!), 503)
    const sa = await status(a!.config)
    const sb = await status(b!.config)
    t.equal(sa.role, 'active', "a's status: active")
    t.equal(sb.role, 'standby', "b's status: standby")
    const backend = (sb as unknown as { cluster?: { backend?: unknown } }).cluster?.backend
    t.match(JSON.stringify(backend), /etcd/, `status names the backend: ${JSON.stringify(backend)}`)
    t.notOk(await accepting(b!.api), 'api not on b')
  },
)

t.test(
  'kill -9 of the active among three nodes, twice: one standby takes over each time, never two actives',
  async (t) => {
    if (!etcd) return
    const { all } = await nodes(t, etcd, 26420, ['a', 'b', 'c'])
    const w = watchCluster(t, all)
    let alive = all
    for (let round = 1; round <= 2; round++) {
      const active = await activeOf(alive, 'an active node')
      await waitUntil('the samplers running', () => w.asked() >= 20 * round)
      active.sup.proc.kill('SIGKILL')
      await active.sup.exited
      alive = alive.filter((n) => n !== active)
      const next = await activeOf(alive, `a node active after the kill of ${active.name}`)
      const promoted = await next.sup.waitLog(
        `${next.name} promoted`,
        (r) => r.event === 'promoted',
      )
      t.match(promoted, { epoch: round + 1 }, `${next.name} took over in epoch ${round + 1}`)
      await waitUntil(`${next.name} api up`, () => accepting(next.api))
      t.equal((await status(next.config)).role, 'active', `${next.name}'s status: active`)
      for (const n of alive.filter((x) => x !== next))
        t.equal(await leader(n), 503, `${n.name} still a standby`)
    }
    await w.stop(t)
  },
)

t.test(
  'SIGSTOP of the active for 0.5 s changes nothing; for 2 s and 5 s it wakes fenced and the standby has taken over',
  async (t) => {
    if (!etcd) return
    const {
      backend,
      all: [a, b],
    } = await nodes(t, etcd, 26450)
    const w = watchCluster(t, [a!, b!])
    await waitUntil('the samplers running', () => w.asked() >= 20)

    const short = await freeze(t, a!, 500)
    t.comment(`a frozen for ${Math.round(short)} ms`)
    // Longer than takeoverMs of renews after the pause: a wrongful takeover would have happened.
    t.ok(await renewals(backend, 1, 12), 'a went on renewing epoch 1 after the pause')
    t.equal(await leader(a!), 200, 'a still active')
    t.equal(
      b!.sup.count((r) => r.event === 'promoted'),
      0,
      'b never promoted',
    )
    t.equal(
      a!.sup.count((r) => r.event === 'fenced'),
      0,
      'a never fenced',
    )

    let [active, standby] = [a!, b!]
    for (const ms of [2000, 5000]) {
      const fencesBefore = active.sup.count((r) => r.event === 'fenced')
      const promotionsBefore = standby.sup.count((r) => r.event === 'promoted')
      const held = await freeze(t, active, ms)
      t.comment(`${active.name} frozen for ${Math.round(held)} ms`)
      await waitUntil(
        `${active.name} fenced`,
        () => active.sup.count((r) => r.event === 'fenced') > fencesBefore,
      )
      await waitUntil(
        `${standby.name} promoted`,
        () => standby.sup.count((r) => r.event === 'promoted') > promotionsBefore,
      )
      t.equal(
        await activeOf([active, standby], `a node active after ${ms} ms`),
        standby,
        `${standby.name} active`,
      )
      await waitUntil(`${standby.name} api up`, () => accepting(standby.api))
      await waitUntil(`${active.name} api stopped`, async () => !(await accepting(active.api)))
      await waitUntil(
        `${active.name} on /leader answers 503`,
        async () => (await leader(active)) === 503,
      )
      t.equal((await status(active.config)).role, 'standby', `${active.name} back as a standby`)
      ;[active, standby] = [standby, active]
    }
    await w.stop(t)
  },
)

t.test(
  'etcd unreachable at start (nothing listening, a black hole), a TLS file missing, a prefix never initialized: tandem start exits 1 (78 for the config) naming it, starts no child, never active',
  async (t) => {
    if (!etcd) return
    const nobody = 'http://127.0.0.1:26490'
    t.notOk(await accepting(26490), 'nothing listens on 26490')
    const hole = await TcpProxy.start(t, 26491, { host: '127.0.0.1', port: 26490 })
    await hole.cut('blackhole')
    const cases: [string, Backend, RegExp, number][] = [
      [
        'a port nobody listens on',
        { type: 'etcd', endpoints: [nobody], prefix: '/tandem/nowhere' },
        /http:\/\/127\.0\.0\.1:26490/,
        1,
      ],
      [
        'a black hole',
        { type: 'etcd', endpoints: [hole.url], prefix: '/tandem/nowhere' },
        /http:\/\/127\.0\.0\.1:26491/,
        1,
      ],
      [
        'a TLS file that does not exist (a config error)',
        {
          type: 'etcd',
          endpoints: ['https://127.0.0.1:26490'],
          prefix: '/tandem/nowhere',
          tls: { ca: 'no-such-ca.pem' },
        },
        /no-such-ca\.pem/,
        78,
      ],
      [
        'a prefix never initialized',
        {
          type: 'etcd',
          endpoints: etcd.endpoints,
          prefix: `/tandem/ha-etcd-${process.pid}-never`,
        },
        /never initialized|tandem cluster init/,
        1,
      ],
    ]
    for (const [what, backend, message, exitCode] of cases) {
      const config = nodeConfig(t, backend, 'x', 26470)
      const sup = new Supervisor(config)
      t.teardown(() => sup.kill())
      const sampling = sampleLeaders([{ name: 'x', http: 26470 } as Node])
      const { code } = await sup.exited
      await sup.ended
      const { answers } = await sampling.stop()
      const err = sup.stderr.join('\n')
      t.equal(code, exitCode, `${what}: exit code ${exitCode} (${err})`)
      t.match(err, message, `${what}: the error names it`)
      t.equal(
        sup.count((r) => r.event === 'spawned'),
        0,
        `${what}: no child started`,
      )
      t.equal(
        sup.count((r) => r.event === 'promoted'),
        0,
        `${what}: never promoted`,
      )
      t.same(
        answers.filter((x) => x.code === 200),
        [],
        `${what}: /leader never 200`,
      )
      t.notOk(await accepting(26471), `${what}: web not running`)
    }
  },
)
