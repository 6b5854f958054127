// A hot-standby cluster of real supervisors for the integration tests: the cluster made by
// `tandem cluster init`, nodes with their own state dirs and ports, and samplers that ask every
// node (or connect to every port) concurrently, to count the instants with two actives.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Test } from 'tap'
import { accepting, cli, fixture, Supervisor, tempDir } from './supervisor.js'

export const HA = { name: 'c1', renewMs: 250, selfFenceMs: 1000, takeoverMs: 2000, pollMs: 100 }

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
  const config = join(tempDir(t), 'tandem.json')
  writeFileSync(
    config,
    JSON.stringify({
      ha: { ...ha, sharedDir: shared },
      components: { none: { command: [process.execPath, '--version'] } },
    }),
  )
  const r = await cli(['cluster', 'init', '-c', config])
  if (r.code !== 0) throw new Error(`tandem cluster init failed (${r.code}): ${r.err}`)
  return shared
}

/** A node: its own state dir and ports; `api` runs only on the active node, `web` everywhere. */
export const node = (
  t: Test,
  shared: string,
  name: string,
  base: number,
  ha: Record<string, unknown> = HA,
  components?: Record<string, unknown>,
  /** Added to the supervisor's environment (libfaketime, for one). */
  env: NodeJS.ProcessEnv = {},
): Node => {
  const dir = tempDir(t)
  const config = join(dir, 'tandem.json')
  writeFileSync(
    config,
    JSON.stringify({
      node: name,
      stateDir: 'state',
      ha: { ...ha, sharedDir: shared },
      control: { http: { port: base } },
      components: components ?? {
        web: fixture({ port: base + 1 }),
        api: fixture({ port: base + 2, runOn: 'active' }),
      },
    }),
  )
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
