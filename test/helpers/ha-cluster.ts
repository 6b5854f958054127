// A hot-standby cluster of real supervisors for the integration tests: the cluster made by
// `tandem cluster init` (on a shared dir or in etcd), nodes with their own state dirs and ports,
// and samplers that ask every node (or connect to every port) concurrently, to count the
// instants with two actives.
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Test } from 'tap'
import { b64, unb64 } from '../../src/ha/etcd-client.js'
import { accepting, cli, fixture, Supervisor, tempDir, waitUntil, WAIT_MS } from './supervisor.js'

export const HA = { name: 'c1', renewMs: 250, selfFenceMs: 1000, takeoverMs: 2000, pollMs: 100 }

/** An etcd backend as `ha.backend` has it (a node may reach the members by its own proxies). */
export interface EtcdBackend {
  type: 'etcd'
  endpoints: string[]
  prefix: string
  tls?: { ca?: string; cert?: string; key?: string }
  auth?: { user: string; passwordFile: string }
}

/** Where a cluster holds its lease: a shared dir's path, or an etcd backend. */
export type Backend = string | EtcdBackend

/** The `ha` section of a node's config on `backend`. */
const haSection = (ha: Record<string, unknown>, backend: Backend) =>
  typeof backend === 'string' ? { ...ha, sharedDir: backend } : { ...ha, backend }

/** `tandem cluster init` with a config of `ha` on `backend`; throws when it fails. */
const init = async (ha: Record<string, unknown>, backend: Backend, dir: string): Promise<void> => {
  const config = join(dir, 'tandem.json')
  writeFileSync(
    config,
    JSON.stringify({
      ha: haSection(ha, backend),
      components: { none: { command: [process.execPath, '--version'] } },
    }),
  )
  const r = await cli(['cluster', 'init', '-c', config])
  if (r.code !== 0) throw new Error(`tandem cluster init failed (${r.code}): ${r.err}`)
}

export interface Node {
  name: string
  config: string
  sup: Supervisor
  http: number
  api: number
}

/**
 * A shared dir made a cluster by `tandem cluster init`, as an operator does once before the
 * first start: `tandem start` never creates one.
 */
export const cluster = async (t: Test, ha: Record<string, unknown> = HA): Promise<string> => {
  const shared = tempDir(t)
  await init(ha, shared, tempDir(t))
  return shared
}

/**
 * A cluster in etcd under `prefix`, made by `tandem cluster init` (on `endpoints`, the members
 * themselves); the backend for the nodes' configs.
 */
export const etcdCluster = async (
  t: Test,
  endpoints: string[],
  prefix: string,
  ha: Record<string, unknown> = HA,
): Promise<EtcdBackend> => {
  const backend: EtcdBackend = { type: 'etcd', endpoints, prefix }
  await init(ha, backend, tempDir(t))
  return backend
}

/**
 * A node's config file in a fresh dir: its own state dir and control port `base`; `api` runs only
 * on the active node (base+2), `web` everywhere (base+1), unless `components` says otherwise.
 */
export const nodeConfig = (
  t: Test,
  backend: Backend,
  name: string,
  base: number,
  ha: Record<string, unknown> = HA,
  components?: Record<string, unknown>,
): string => {
  const config = join(tempDir(t), 'tandem.json')
  writeFileSync(
    config,
    JSON.stringify({
      node: name,
      stateDir: 'state',
      ha: haSection(ha, backend),
      control: { http: { port: base } },
      components: components ?? {
        web: fixture({ port: base + 1 }),
        api: fixture({ port: base + 2, runOn: 'active' }),
      },
    }),
  )
  return config
}

/**
 * A node started: its own state dir and ports; `api` runs only on the active node, `web`
 * everywhere (see nodeConfig). `shared` is the cluster's shared dir or its etcd backend.
 */
export const node = (
  t: Test,
  shared: Backend,
  name: string,
  base: number,
  ha: Record<string, unknown> = HA,
  components?: Record<string, unknown>,
  /** Added to the supervisor's environment (libfaketime, for one). */
  env: NodeJS.ProcessEnv = {},
): Node => {
  const config = nodeConfig(t, shared, name, base, ha, components)
  const sup = new Supervisor(config, env)
  t.teardown(() => sup.kill())
  return { name, config, sup, http: base, api: base + 2 }
}

export const leader = async (n: Node, timeoutMs = 2000): Promise<number> => {
  try {
    const res = await fetch(`http://127.0.0.1:${n.http}/leader`, {
      signal: AbortSignal.timeout(timeoutMs),
    })
    await res.arrayBuffer()
    return res.status
  } catch {
    return 0 // not answering (stopped, frozen, gone)
  }
}

/** One /leader answer: its status (0: none), and for a 200 its epoch and decision instant. */
interface LeaderAnswer {
  code: number
  epoch?: number
  /** When the node decided (its `x-tandem-at`, host monotonic ms), in this process's time base. */
  at?: number
}

/** This process's performance.now() minus the host's monotonic clock (CLOCK_MONOTONIC). */
const hostOffset = () => performance.now() - Number(process.hrtime.bigint()) / 1e6

const leaderAnswer = async (n: Node, timeoutMs: number): Promise<LeaderAnswer> => {
  try {
    const res = await fetch(`http://127.0.0.1:${n.http}/leader`, {
      signal: AbortSignal.timeout(timeoutMs),
    })
    const body = (await res.json()) as { epoch?: number }
    const at = Number(res.headers.get('x-tandem-at'))
    return res.status === 200 && at > 0
      ? { code: 200, epoch: body.epoch ?? 0, at: at + hostOffset() }
      : { code: res.status }
  } catch {
    return { code: 0 } // not answering (stopped, frozen, gone)
  }
}

/**
 * Asks /leader on each node every 10 ms, independently (a frozen node's requests wait without
 * holding up the other's), until stop(). Each 200 carries the instant its node decided (on the
 * host's monotonic clock) and its epoch. Two actives at one instant show as two 200s from
 * different nodes out of epoch order: one of a lower epoch decided after one of a higher epoch,
 * or two nodes in the same epoch. (A reply's delivery time says nothing: a supervisor frozen
 * right after deciding delivers its 200 when it wakes, seconds later.)
 */
export const sampleLeaders = (nodes: Node[]) => {
  let running = true
  const answers: { node: string; epoch: number; at: number }[] = []
  /** Every answer (0: none), for tests that read the timeline. */
  const all: { node: string; code: number; from: number; to: number; at?: number }[] = []
  let asked = 0
  const loops = nodes.map(async (n) => {
    while (running) {
      const from = performance.now()
      const a = await leaderAnswer(n, 10_000)
      asked++
      const to = performance.now()
      all.push({ node: n.name, code: a.code, from, to, ...(a.at ? { at: a.at } : {}) })
      if (a.code === 200) answers.push({ node: n.name, epoch: a.epoch!, at: a.at! })
      await new Promise((r) => setTimeout(r, 10))
    }
  })
  return {
    /** How many answers so far. */
    asked: () => asked,
    stop: async () => {
      running = false
      await Promise.all(loops)
      const overlaps = answers.flatMap((x) =>
        answers
          .filter(
            (y) =>
              y.node !== x.node &&
              (x.epoch === y.epoch ? x.node < y.node : x.epoch < y.epoch && x.at > y.at),
          )
          .map(
            (y) =>
              `${x.node} (epoch ${x.epoch}) 200 at ${x.at.toFixed(1)} / ${y.node} (epoch ${y.epoch}) 200 at ${y.at.toFixed(1)}`,
          ),
      )
      return { overlaps, asked, answers: all }
    },
  }
}

/**
 * Tries to connect to each port every 10 ms, independently, until stop(); resolves with the
 * overlaps: two ports accepting in overlapping attempts (two active-only servers up at once).
 */
export const sampleAccepting = (ports: number[]) => {
  let running = true
  const ups: { port: number; from: number; to: number }[] = []
  const loops = ports.map(async (port) => {
    while (running) {
      const from = performance.now()
      if (await accepting(port)) ups.push({ port, from, to: performance.now() })
      await new Promise((r) => setTimeout(r, 10))
    }
  })
  return {
    /** The attempts that connected so far (performance.now() windows), for timelines. */
    ups: () => [...ups],
    stop: async () => {
      running = false
      await Promise.all(loops)
      return ups
        .filter((x) => ups.some((y) => y.port > x.port && y.from <= x.to && x.from <= y.to))
        .map((x) => `${x.port} up at ${x.from.toFixed(0)} while another was`)
    },
  }
}

/**
 * The node answering /leader 200 among `nodes`, once one does (waits up to `ms`). Used after a
 * fault: the service is back.
 */
export const activeOf = (nodes: Node[], what: string, ms = WAIT_MS): Promise<Node> =>
  waitUntil(
    what,
    async () => {
      const codes = await Promise.all(nodes.map((n) => leader(n)))
      return nodes[codes.indexOf(200)]
    },
    ms,
  )

/**
 * Both samplers over `nodes` (their /leader and their active-only `api` ports), running until
 * stop(t), which asserts 0 overlaps of each and returns the timelines; stopped at teardown too.
 */
export const watchCluster = (t: Test, nodes: Node[]) => {
  const leaders = sampleLeaders(nodes)
  const api = sampleAccepting(nodes.map((n) => n.api))
  let stopped: ReturnType<typeof stopBoth> | undefined
  const stopBoth = async () => {
    const l = await leaders.stop()
    const apiUps = api.ups()
    return { leaders: l, apiOverlaps: await api.stop(), apiUps }
  }
  const stop = () => (stopped ??= stopBoth())
  t.teardown(async () => {
    await stop()
  })
  return {
    /** Answers so far. */
    asked: () => leaders.asked(),
    /** Stops sampling; asserts never two /leader 200 at one instant, never two apis accepting. */
    stop: async (t: Test) => {
      const { leaders: l, apiOverlaps, apiUps } = await stop()
      t.same(l.overlaps, [], `never two nodes answering /leader 200 (${l.asked} answers)`)
      t.same(apiOverlaps, [], `never two active-only apis accepting at once (${apiUps.length} ups)`)
      return { answers: l.answers, apiUps }
    },
  }
}

/**
 * The seq of hb/<epoch> as the backend holds it now (-1 when unreadable: gone, mid-write, or
 * etcd not answering). On etcd, asked of each endpoint in turn.
 */
export const heartbeatSeq = async (backend: Backend, epoch: number): Promise<number> => {
  const parse = (raw: string) => {
    try {
      return (JSON.parse(raw) as { seq?: number }).seq ?? -1
    } catch {
      return -1
    }
  }
  if (typeof backend === 'string') {
    try {
      return parse(readFileSync(join(backend, 'hb', String(epoch)), 'utf8'))
    } catch {
      return -1
    }
  }
  for (const url of backend.endpoints) {
    try {
      const res = await fetch(`${url}/v3/kv/range`, {
        method: 'POST',
        body: JSON.stringify({ key: b64(`${backend.prefix}/hb/${epoch}`) }),
        signal: AbortSignal.timeout(1000),
      })
      const kv = ((await res.json()) as { kvs?: { value?: string }[] }).kvs?.[0]
      return kv ? parse(unb64(kv.value)) : -1
    } catch {
      // the next member
    }
  }
  return -1
}

/**
 * Waits until the holder of `epoch` has renewed `renews` more times: an observation window
 * counted in the cluster's own progress rather than in time. Resolves false if it did not.
 */
export const renewals = async (backend: Backend, epoch: number, renews: number) => {
  const from = await waitUntil(
    `hb/${epoch} readable`,
    async () => 1 + (await heartbeatSeq(backend, epoch)),
  )
  return waitUntil(
    `${renews} renews of epoch ${epoch}`,
    async () => (await heartbeatSeq(backend, epoch)) >= from - 1 + renews,
  ).then(
    () => true,
    () => false,
  )
}
