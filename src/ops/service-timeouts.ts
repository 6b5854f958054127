import type { ComponentSpec, Plan } from '../config/plan.js'

/**
 * Per component in a chain of stops: SIGKILL delivery, the 100 ms wait for the last piped lines
 * and the reaping (src/supervisor/instance.ts).
 */
export const STOP_STEP_SLACK_MS = 1_000
/** After the last instance: closing the control listeners and the watchdog, flushing the log. */
export const STOP_SLACK_MS = 5_000
/** Per component in a chain of starts: the port check, the spawn, the first readiness probe. */
export const START_STEP_SLACK_MS = 1_000
/**
 * Before the first spawn: Node and the modules load, the config is read, the state lock taken,
 * the control socket bound. Well under a second on an idle host; ten for a loaded one.
 */
export const START_SLACK_MS = 10_000
/** A leftover of a previous supervisor gets its stop timeout, then this long to be reaped (pid-records.ts). */
export const LEFTOVER_REAP_MS = 5_000

/** How long `tandem start` may take to come up and to stop, computed from a config. */
export interface ServiceTimeouts {
  /**
   * From the first reconcile pass until every instance has had its whole readiness timeout, its
   * dependencies' included: an instance not ready by then has failed its first start.
   */
  readyWithinMs: number
  /** The components along which readyWithinMs adds up, dependencies first. */
  startChain: string[]
  /** From the process start to readiness: leftovers of a previous run stopped first, then readyWithinMs. */
  startMs: number
  /** From SIGTERM to the exit, when every instance takes as long as it is allowed to stop. */
  stopMs: number
  /** The components along which stopMs adds up, in stop order (dependents first). */
  stopChain: string[]
}

const max = (values: number[]): number => values.reduce((a, b) => Math.max(a, b), 0)

/**
 * The longest stop one instance of the component can take: the stop signal, SIGKILL to the group
 * after stop.timeoutMs; and when the leader exits just before that, the rest of its group
 * (grandchildren) gets another stop.timeoutMs before its own SIGKILL (Instance #reapGroup).
 */
const stopCost = (c: ComponentSpec): number =>
  c.instances.length ? 2 * max(c.instances.map((i) => i.stop.timeoutMs)) + STOP_STEP_SLACK_MS : 0

/** Instances of a component start together; a start not ready within its timeout has failed. */
const startCost = (c: ComponentSpec): number =>
  c.instances.length
    ? max(c.instances.map((i) => (i.readiness.type === 'none' ? 0 : i.readiness.timeoutMs))) +
      START_STEP_SLACK_MS
    : 0

/**
 * The heaviest path through the dependency graph, `next(c)` giving the components that come
 * after c: its total and the components along it.
 */
const heaviestPath = (
  components: ComponentSpec[],
  cost: (c: ComponentSpec) => number,
  before: (c: ComponentSpec) => ComponentSpec[],
): { ms: number; chain: string[] } => {
  const memo = new Map<string, { ms: number; chain: string[] }>()
  // The config is validated acyclic (check-config.ts), so this recursion ends.
  const finish = (c: ComponentSpec): { ms: number; chain: string[] } => {
    let found = memo.get(c.name)
    if (!found) {
      const prior = before(c)
        .map(finish)
        .reduce<{ ms: number; chain: string[] }>((a, b) => (b.ms > a.ms ? b : a), {
          ms: 0,
          chain: [],
        })
      found = { ms: prior.ms + cost(c), chain: [...prior.chain, c.name] }
      memo.set(c.name, found)
    }
    return found
  }
  return components
    .map(finish)
    .reduce<{ ms: number; chain: string[] }>((a, b) => (b.ms > a.ms ? b : a), { ms: 0, chain: [] })
}

/**
 * Bounds of the supervisor's start and stop for a config, as the code does them: components
 * start once their dependencies are ready and stop once their dependents have stopped
 * (Reconciler), so both add up along the heaviest chain of dependsOn, not over every component.
 * The systemd unit's TimeoutStartSec and TimeoutStopSec come from here, and `tandem start`
 * reports itself ready to systemd, degraded, after readyWithinMs at the latest.
 */
export const serviceTimeouts = (plan: Plan): ServiceTimeouts => {
  const { components } = plan
  const byName = new Map(components.map((c) => [c.name, c]))
  const start = heaviestPath(components, startCost, (c) =>
    c.dependsOn.flatMap((d) => byName.get(d) ?? []),
  )
  const stop = heaviestPath(components, stopCost, (c) =>
    components.filter((x) => x.dependsOn.includes(c.name)),
  )
  const instances = components.flatMap((c) => c.instances)
  const leftoversMs = instances.length
    ? max(instances.map((i) => i.stop.timeoutMs)) + LEFTOVER_REAP_MS
    : 0
  // With ha, joining reads the shared dir at the start, and an active node hands over before it
  // stops: its active-only instances stop (in parallel), then it writes `released`. A shared dir
  // slower than takeoverMs would make standbys take over anyway: that much is allowed for each.
  const ha = plan.ha
  const handOverMs = ha
    ? max(instances.filter((i) => i.runOn === 'active').map((i) => 2 * i.stop.timeoutMs)) +
      ha.takeoverMs
    : 0
  return {
    readyWithinMs: start.ms,
    startChain: start.chain,
    startMs: START_SLACK_MS + (ha?.takeoverMs ?? 0) + leftoversMs + start.ms,
    stopMs: handOverMs + stop.ms + STOP_SLACK_MS,
    stopChain: stop.chain,
  }
}
