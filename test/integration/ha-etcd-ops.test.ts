// The cluster operations on an etcd backend (issue 12): `tandem status` (text and --json) names
// the backend, its prefix and each member's health (a stopped member shown failing), and the
// other node as a peer through presence keys in etcd, never the etcd password; `tandem
// switchover` hands over to the other node; `tandem upgrade --cluster` rolls a component that
// runs on every node one instance at a time across nodes (roll slots in etcd). Real supervisors
// (bin/tandem.js) on a real etcd (test/helpers/etcd.ts): one member for the file, three for the
// health test. Faults of the active and of etcd: ha-etcd.test.ts and ha-etcd-faults.test.ts.
// Ports 26600-26689 belong to this file (test files run in parallel).
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import type { StatusReply } from '../../src/status.js'
import { b64, prefixEnd, unb64 } from '../../src/ha/etcd-client.js'
import { EtcdCluster, needEtcd } from '../helpers/etcd.js'
import {
  activeOf,
  etcdCluster,
  HA,
  leader,
  node,
  watchCluster,
  type EtcdBackend,
  type Node,
} from '../helpers/ha-cluster.js'
import {
  accepting,
  cli,
  fixture,
  tempDir,
  waitUntil,
  type LogRecord,
} from '../helpers/supervisor.js'

const etcd = needEtcd(t) ? await EtcdCluster.start(t, 1) : undefined

let prefixes = 0
/** A prefix of its own for each test. */
const newPrefix = () => `/tandem/ha-etcd-ops-${process.pid}-${++prefixes}`

/** `tandem status --json` of node `n`, whole. */
const statusOf = async (n: Node): Promise<StatusReply> => {
  const r = await cli(['status', '--json', '-c', n.config])
  if (r.code !== 0) throw new Error(`status of ${n.name} failed (${r.code}): ${r.err}`)
  return JSON.parse(r.out) as StatusReply
}

/** Keys under `prefix`/ in the etcd member `url` (plain http, no auth). */
const keysUnder = async (url: string, prefix: string): Promise<string[]> => {
  const res = await fetch(`${url}/v3/kv/range`, {
    method: 'POST',
    body: JSON.stringify({
      key: b64(prefix + '/'),
      range_end: prefixEnd(prefix + '/'),
      keys_only: true,
    }),
    signal: AbortSignal.timeout(2000),
  })
  const r = (await res.json()) as { kvs?: { key: string }[] }
  return (r.kvs ?? []).map((kv) => unb64(kv.key)).sort()
}

/**
 * `a` active (started first, its api up and /leader 200), then `b` a standby (/leader 503), on
 * `backend`; with `components(base)` instead of nodeConfig's web and api if given.
 */
const pair = async (
  t: Test,
  backend: EtcdBackend,
  base: number,
  components?: (base: number) => Record<string, unknown>,
) => {
  const a = node(t, backend, 'a', base, HA, components?.(base))
  await a.sup.waitLog('a promoted', (r) => r.event === 'promoted')
  await waitUntil('a on /leader answers 200', async () => (await leader(a)) === 200)
  const b = node(t, backend, 'b', base + 10, HA, components?.(base + 10))
  await b.sup.waitLog('b all ready', (r) => r.event === 'all-ready')
  await waitUntil('b on /leader answers 503', async () => (await leader(b)) === 503)
  return { a, b }
}

/** Waits until `n`'s status shows `other` as a peer (presence through etcd). */
const seesPeer = (n: Node, other: string) =>
  waitUntil(`${n.name} sees ${other} as a peer`, async () => {
    const s = await statusOf(n)
    return s.cluster?.peers.some((p) => p.node === other) && s
  })

t.test(
  'status on each of two nodes names etcd, the prefix, the member (ok, leader) and the other node as a peer',
  async (t) => {
    if (!etcd) return
    const prefix = newPrefix()
    const backend = await etcdCluster(t, etcd.endpoints, prefix)
    const { a, b } = await pair(t, backend, 26600)
    const endpoint = etcd.endpoints[0]!
    for (const [n, other, role, otherRole] of [
      [a, b, 'active', 'standby'],
      [b, a, 'standby', 'active'],
    ] as const) {
      await seesPeer(n, other.name)
      const s = await waitUntil(`${n.name}'s member checked`, async () => {
        const s = await statusOf(n)
        return s.cluster?.backend.endpoints?.[0]?.ok !== undefined && s
      })
      t.equal(s.role, role, `${n.name}'s role`)
      t.match(
        s.cluster,
        {
          name: 'c1',
          epoch: 1,
          backend: {
            type: 'etcd',
            prefix,
            endpoints: [{ endpoint, ok: true, leader: true, version: /^3\./ }],
          },
          peers: [{ node: other.name, role: otherRole, epoch: 1 }],
        },
        `${n.name}'s status --json: ${JSON.stringify(s.cluster)}`,
      )
      t.equal(s.cluster?.peers.length, 1, 'one peer')
      const text = await cli(['status', '-c', n.config])
      t.equal(text.code, 0, text.err)
      t.match(text.out, `node ${n.name}  role ${role}`)
      t.match(text.out, `cluster c1  epoch 1  etcd ${prefix}`)
      t.match(text.out, new RegExp(`^etcd ${endpoint}  ok \\(leader\\)  version 3\\.`, 'm'))
      t.match(
        text.out,
        new RegExp(`^peer ${other.name}  role ${otherRole}  epoch 1  pid \\d+`, 'm'),
      )
    }
    const keys = await keysUnder(endpoint, prefix)
    t.ok(
      keys.includes(`${prefix}/nodes/a`) && keys.includes(`${prefix}/nodes/b`),
      'presence keys in etcd',
    )
  },
)

t.test(
  'status with a 3-member etcd and authentication: each member ok, one leader; a stopped member shown failing; never the password',
  async (t) => {
    if (!etcd) return
    const etcd3 = await EtcdCluster.start(t, 3)
    const password = `pw-${process.pid}-never-shown`
    await etcd3.enableAuth(`root-${password}`, [{ name: 'tandem', password, prefix: '/tandem/' }])
    const dir = tempDir(t)
    const passwordFile = join(dir, 'etcd-password')
    writeFileSync(passwordFile, password + '\n', { mode: 0o600 })
    const prefix = newPrefix()
    const backend = {
      type: 'etcd' as const,
      endpoints: etcd3.endpoints,
      prefix,
      auth: { user: 'tandem', passwordFile },
    }
    // cluster init through the same authentication the nodes use.
    const initConfig = join(dir, 'init.json')
    writeFileSync(
      initConfig,
      JSON.stringify({
        ha: { ...HA, backend },
        components: { none: { command: [process.execPath, '--version'] } },
      }),
    )
    const init = await cli(['cluster', 'init', '-c', initConfig])
    t.equal(init.code, 0, init.err)
    t.notMatch(init.out + init.err, password, 'cluster init never prints the password')
    const { a, b } = await pair(t, backend, 26620)
    for (const n of [a, b]) {
      const s = await waitUntil(
        `${n.name}: every member ok, one leader, ${b.name} seen`,
        async () => {
          const s = await statusOf(n)
          const eps = s.cluster?.backend.endpoints ?? []
          return (
            eps.length === 3 &&
            eps.every((e) => e.ok) &&
            eps.filter((e) => e.leader).length === 1 &&
            (s.cluster?.peers.length ?? 0) === 1 &&
            s
          )
        },
      )
      t.same(
        s.cluster?.backend.endpoints?.map((e) => e.endpoint),
        etcd3.endpoints,
        `${n.name}: each member named`,
      )
      const json = await cli(['status', '--json', '-c', n.config])
      const text = await cli(['status', '-c', n.config])
      t.notMatch(json.out, password, `${n.name}: status --json never shows the password`)
      t.notMatch(text.out, password, `${n.name}: status never shows the password`)
    }

    // A follower: the lease goes on on the other two, and the member's check fails at the next
    // refresh (every ETCD_HEALTH_MS).
    const leaderIndex = await etcd3.leader()
    const stopped = leaderIndex === 0 ? 1 : 0
    const down = etcd3.endpoints[stopped]!
    etcd3.stop(stopped)
    for (const n of [a, b]) {
      const s = await waitUntil(`${n.name} shows ${down} failing`, async () => {
        const s = await statusOf(n)
        const e = s.cluster?.backend.endpoints?.find((x) => x.endpoint === down)
        return e?.ok === false && s
      })
      const eps = s.cluster!.backend.endpoints!
      t.match(
        eps.find((e) => e.endpoint === down),
        { ok: false, error: /\S/ },
        `${n.name}: ${down} failing, saying why`,
      )
      t.ok(
        eps.filter((e) => e.endpoint !== down).every((e) => e.ok),
        `${n.name}: the other two members ok`,
      )
      const text = await cli(['status', '-c', n.config])
      t.comment(text.out.split('\n').find((l) => l.startsWith(`etcd ${down}`)))
      t.match(
        text.out,
        new RegExp(`^etcd ${down}  failing: \\S`, 'm'),
        `${n.name}: text says failing`,
      )
      t.notMatch(text.out + (await cli(['status', '--json', '-c', n.config])).out, password)
    }
    t.equal(await leader(a), 200, 'a still active with one member down')
    t.equal(await leader(b), 503, 'b still a standby')
    for (const n of [a, b]) {
      t.notOk(
        n.sup.records.some((r) => JSON.stringify(r).includes(password)),
        `${n.name}'s log never holds the password`,
      )
    }
  },
)

t.test(
  'switchover on the active node: the other becomes active, the output names it and its epoch; and back, --json',
  async (t) => {
    if (!etcd) return
    const backend = await etcdCluster(t, etcd.endpoints, newPrefix())
    const { a, b } = await pair(t, backend, 26640)
    const w = watchCluster(t, [a, b])
    await waitUntil('the samplers running', () => w.asked() >= 20)

    const r = await cli(['switchover', '-c', a.config])
    t.equal(r.code, 0, r.err)
    t.match(r.out, /^node a released epoch 1 of cluster c1\nnode b is active \(epoch 2\)$/m)
    t.equal(await activeOf([a, b], 'a node active after the switchover'), b, 'b active')
    await waitUntil('a on /leader answers 503', async () => (await leader(a)) === 503)
    t.same(await (await fetch(`http://127.0.0.1:${b.http}/leader`)).json(), {
      node: 'b',
      epoch: 2,
    })
    await waitUntil('b api up', () => accepting(b.api))
    t.notOk(await accepting(a.api), 'api stopped on a')
    t.equal((await statusOf(b)).role, 'active', "b's status: active")
    t.equal((await statusOf(a)).role, 'standby', "a's status: standby")

    const back = await cli(['switchover', '--json', '-c', b.config])
    t.equal(back.code, 0, back.err)
    t.match(JSON.parse(back.out), {
      released: 2,
      node: 'b',
      cluster: 'c1',
      next: { node: 'a', epoch: 3 },
    })
    t.notMatch(back.out, /passwordFile|"backend"/, 'the reply as printed holds only the result')
    t.equal(await activeOf([a, b], 'a node active after the second switchover'), a, 'a active')
    await waitUntil('a api up again', () => accepting(a.api))
    await w.stop(t)
  },
)

/** A `web` of one instance on every node (slow to become ready, so that a restart shows). */
const rolling = (base: number, version: string) => ({
  web: fixture(
    {
      port: base + 1,
      runOn: 'all',
      rollout: { maxUnavailable: 1 },
      readiness: { type: 'http', path: '/' },
    },
    { VERSION: version, READY_DELAY_MS: '300' },
  ),
  api: fixture({ port: base + 2, runOn: 'active' }),
})

const rewrite = (n: Node, base: number, version: string) => {
  const c = JSON.parse(readFileSync(n.config, 'utf8')) as Record<string, unknown>
  writeFileSync(n.config, JSON.stringify({ ...c, components: rolling(base, version) }))
}

/** When the node's web instance was down (stopping to ready), from its own log: wall ms. */
const downWindows = (n: Node) => {
  const out: { who: string; from: number; to: number }[] = []
  let from: number | undefined
  for (const r of n.sup.records as (LogRecord & { time?: number })[]) {
    if (r.component !== 'web' || typeof r.time !== 'number') continue
    if (r.event === 'stopping') from = r.time
    else if (r.event === 'ready' && from !== undefined) {
      out.push({ who: `${n.name} web#${r.instance}`, from, to: r.time })
      from = undefined
    }
  }
  return out
}

/**
 * Connects to each port every 10 ms, independently, until stop(): the attempts that failed, as
 * performance.now() windows.
 */
const sampleRefused = (ports: number[]) => {
  let running = true
  const refused: { port: number; from: number; to: number }[] = []
  let attempts = 0
  const loops = ports.map(async (port) => {
    while (running) {
      const from = performance.now()
      const up = await accepting(port)
      attempts++
      if (!up) refused.push({ port, from, to: performance.now() })
      await new Promise((r) => setTimeout(r, 10))
    }
  })
  return {
    attempts: () => attempts,
    stop: async () => {
      running = false
      await Promise.all(loops)
      return refused
    },
  }
}

t.test(
  'upgrade --cluster on etcd: each node replaces its web instance, never both at once (roll slots in etcd); exit 0 listing both',
  async (t) => {
    if (!etcd) return
    const prefix = newPrefix()
    const backend = await etcdCluster(t, etcd.endpoints, prefix)
    const { a, b } = await pair(t, backend, 26660, (base) => rolling(base, 'v1'))
    await seesPeer(a, 'b')
    const webs = [26661, 26671]
    for (const port of webs) t.ok(await accepting(port), `web on ${port} up`)
    rewrite(a, 26660, 'v2')
    rewrite(b, 26670, 'v2')
    const sampler = sampleRefused(webs)
    await waitUntil('the sampler running', () => sampler.attempts() >= 20)

    const r = await cli(['upgrade', '--cluster', '-c', a.config])
    const refused = await sampler.stop()
    t.equal(r.code, 0, r.err)
    t.match(r.out, /^cluster upgrade \S+: asked a, b$/m)
    t.match(r.out, /^node a: 1 replaced$/m)
    t.match(r.out, /^node b: 1 replaced$/m)
    t.match(r.out, /^cluster upgrade \S+ done on a, b$/m)

    for (const n of [a, b]) {
      t.equal(
        n.sup.count((x) => x.event === 'spawned' && x.component === 'web'),
        2,
        `${n.name}: its web instance replaced`,
      )
      const s = await statusOf(n)
      t.ok(
        s.instances.filter((i) => i.component === 'web').every((i) => i.state === 'ready'),
        `${n.name}: web ready`,
      )
    }
    for (const port of webs) {
      const res = await fetch(`http://127.0.0.1:${port}/`)
      await res.arrayBuffer()
      t.equal(res.headers.get('x-version'), 'v2', `web on ${port} serves v2`)
    }

    const down = [...downWindows(a), ...downWindows(b)]
    t.equal(down.length, 2, `one down window per node: ${JSON.stringify(down)}`)
    t.same(
      down.filter((x) => down.some((y) => y !== x && y.from < x.to && x.from < y.to)),
      [],
      'the two nodes were never restarting web at the same time (their logs)',
    )
    for (const port of webs) {
      t.ok(
        refused.some((x) => x.port === port),
        `the sampler saw web on ${port} down once`,
      )
    }
    // Whether one web always answered is not judged from the sampler: its windows are those of
    // this process's connection attempts, which a stall of this process widens (the two nodes
    // restart about 100 ms apart); the supervisors' own log times above are the evidence.

    const keys = await keysUnder(etcd.endpoints[0]!, prefix)
    t.ok(
      keys.some((k) => k.startsWith(`${prefix}/roll/web/0/`)),
      `the roll slot is in etcd (${keys.filter((k) => k.includes('/roll/')).join(', ')})`,
    )
    const id = /cluster upgrade (\S+): asked/.exec(r.out)?.[1]
    for (const k of [
      `requests/${id}.json`,
      `requests/${id}.a.result.json`,
      `requests/${id}.b.result.json`,
    ])
      t.ok(keys.includes(`${prefix}/${k}`), `${k} in etcd`)
  },
)
