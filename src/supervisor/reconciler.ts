import { EventEmitter } from 'node:events'
import type { InstanceSpec, Plan } from '../config/plan.js'
import { planInstances } from '../config/plan.js'
import { Instance, type InstanceDeps, type InstanceEvent, type InstanceStatus } from './instance.js'

export type ReconcilerDeps = Omit<InstanceDeps, 'onEvent' | 'wake'> & {
  /**
   * Whether this node is active (with ha: holds the lease, checked synchronously); components
   * with `runOn: active` and a cold standby run only then. Default: always (no ha).
   */
  nodeActive?: () => boolean
}

/** Why a stopped instance that is wanted does not start yet, for status. */
const waitingReason = (deps: string[]): string => `waiting for ${deps.join(', ')} to be ready`

/**
 * The one place that decides what runs. Desired state is the plan, minus what an operator
 * stopped by hand, minus everything once shutdown began; `reconcile()` compares it with each
 * instance's state and starts or stops instances to match, components in dependency order.
 * Operator actions, restarts after backoff and shutdown all go through here: there is no second
 * path that spawns or stops processes.
 */
export class Reconciler extends EventEmitter<{ event: [InstanceEvent]; shutdown: [] }> {
  #plan: Plan

  /** What this node runs now; a reload or upgrade replaces it (replacePlan). */
  get plan(): Plan {
    return this.#plan
  }
  readonly instances = new Map<string, Instance>()
  readonly stoppedByOperator: Set<string>
  /** Instances a rollout holds down while it replaces them: not started by reconcile. */
  readonly #held = new Set<string>()
  readonly #instanceDeps: InstanceDeps
  readonly #nodeActive: () => boolean
  #shuttingDown = false
  #scheduled = false
  #shutdown: Promise<void> | undefined

  constructor(plan: Plan, deps: ReconcilerDeps, stoppedByOperator: Iterable<string> = []) {
    super()
    this.#plan = plan
    const known = new Set(planInstances(plan).map((i) => i.id))
    this.stoppedByOperator = new Set([...stoppedByOperator].filter((id) => known.has(id)))
    this.#nodeActive = deps.nodeActive ?? (() => true)
    this.#instanceDeps = {
      ...deps,
      onEvent: (e) => {
        this.emit('event', e)
        this.schedule()
      },
      wake: () => this.schedule(),
    }
    for (const spec of planInstances(plan))
      this.instances.set(spec.id, new Instance(spec, this.#instanceDeps))
  }

  /** True once shutdown has begun: nothing starts any more. */
  get shuttingDown(): boolean {
    return this.#shuttingDown
  }

  /** A rollout holds an instance down while it replaces it (see Rollout). */
  hold(id: string): void {
    this.#held.add(id)
  }

  release(id: string): void {
    this.#held.delete(id)
    this.schedule()
  }

  /**
   * Makes `next` the plan: instances it adds are created (and started by the next reconcile
   * pass, dependencies first); instances it drops must already be stopped, and are forgotten.
   * Existing instances keep their definition: a rollout redefines them one by one.
   */
  replacePlan(next: Plan): void {
    const ids = new Set(planInstances(next).map((i) => i.id))
    for (const [id, inst] of this.instances) {
      if (ids.has(id)) continue
      if (inst.state !== 'stopped' && inst.state !== 'failed')
        throw new Error(`${id} must be stopped before it leaves the plan (it is ${inst.state})`)
      this.instances.delete(id)
      this.stoppedByOperator.delete(id)
    }
    for (const spec of planInstances(next))
      if (!this.instances.has(spec.id))
        this.instances.set(spec.id, new Instance(spec, this.#instanceDeps))
    this.#plan = next
    this.schedule()
  }

  /** Whether the instance should be running now. */
  desired(id: string): boolean {
    const inst = this.instances.get(id)
    return (
      !this.#shuttingDown &&
      !this.stoppedByOperator.has(id) &&
      !this.#held.has(id) &&
      inst !== undefined &&
      (inst.spec.runOn !== 'active' || inst.spec.standby === 'hot' || this.#nodeActive())
    )
  }

  #of(component: string): Instance[] {
    return [...this.instances.values()].filter((i) => i.spec.component === component)
  }

  /**
   * A dependency is met when each of its wanted instances is ready or has given up (failed), and
   * at least one is ready: one broken instance must not keep a whole stack down.
   */
  #unmetDependencies(spec: InstanceSpec): string[] {
    const component = this.plan.components.find((c) => c.name === spec.component)
    return (component?.dependsOn ?? []).filter((d) => {
      const wanted = this.#of(d).filter((i) => this.desired(i.id))
      return !(
        wanted.every((i) => i.state === 'ready' || i.state === 'failed') &&
        wanted.some((i) => i.state === 'ready')
      )
    })
  }

  /** Coalesces many events into one reconcile pass. */
  schedule(): void {
    if (this.#scheduled) return
    this.#scheduled = true
    queueMicrotask(() => {
      this.#scheduled = false
      this.reconcile()
    })
  }

  reconcile(): void {
    for (const inst of this.instances.values()) {
      const want = this.desired(inst.id)
      switch (inst.state) {
        case 'stopped':
          if (want && !inst.completed && this.#unmetDependencies(inst.spec).length === 0)
            void inst.start()
          break
        case 'backoff':
          if (!want) void inst.stop()
          else if (inst.due) void inst.start()
          break
        case 'failed':
          if (!want) void inst.stop()
          else if (inst.due) void inst.start()
          break
        case 'starting':
        case 'ready':
          if (!want && !this.#shuttingDown) void inst.stop()
          break
        default:
          break
      }
    }
  }

  status(): (InstanceStatus & { stoppedByOperator: boolean })[] {
    return [...this.instances.values()].map((i) => {
      const s = i.status()
      const waiting =
        i.state === 'stopped' && this.desired(i.id) ? this.#unmetDependencies(i.spec) : []
      return {
        ...s,
        reason: waiting.length ? waitingReason(waiting) : s.reason,
        stoppedByOperator: this.stoppedByOperator.has(i.id),
      }
    })
  }

  /**
   * Whether the instance has reached a state it will not leave by itself soon: ready, failed,
   * backing off, stopped for good, or stopped waiting on a dependency that cannot come up
   * (its instances are failed or stopped themselves). Operator commands wait for this.
   */
  settled(id: string): boolean {
    const inst = this.instances.get(id)!
    if (inst.state === 'ready' || inst.state === 'failed' || inst.state === 'backoff') return true
    if (inst.state !== 'stopped') return false
    return !this.desired(id) || inst.completed || !this.#mayStart(inst)
  }

  /** A stopped, wanted instance may still start: each unmet dependency may still come up. */
  #mayStart(inst: Instance): boolean {
    return this.#unmetDependencies(inst.spec).every((d) =>
      this.#of(d).some(
        (i) =>
          this.desired(i.id) &&
          (i.state === 'starting' ||
            i.state === 'stopping' ||
            i.state === 'backoff' ||
            (i.state === 'stopped' && !i.completed && this.#mayStart(i))),
      ),
    )
  }

  /** Resolves when every one of the instances is settled (see `settled`). */
  waitSettled(ids: readonly string[]): Promise<void> {
    return new Promise((resolve) => {
      const check = () => {
        if (!ids.every((id) => this.settled(id))) return
        this.off('event', check)
        resolve()
      }
      this.on('event', check)
      // Let the reconcile pass that this action scheduled run first.
      queueMicrotask(() => queueMicrotask(check))
    })
  }

  /** Operator stop: the instances stay stopped (persisted by the caller) until started again. */
  async stopInstances(ids: readonly string[]): Promise<void> {
    ids.forEach((id) => this.stoppedByOperator.add(id))
    await Promise.all(ids.map((id) => this.instances.get(id)!.stop()))
  }

  /** Operator start: clears "stopped by hand" and starts them (a failed one gets a fresh start). */
  async startInstances(ids: readonly string[]): Promise<void> {
    ids.forEach((id) => this.stoppedByOperator.delete(id))
    for (const id of ids) {
      const inst = this.instances.get(id)!
      if (inst.state === 'failed' || inst.state === 'backoff') inst.due = true
      inst.completed = false
    }
    this.reconcile()
    await this.waitSettled(ids)
  }

  /**
   * Operator restart, one instance at a time: each is drained (its component's
   * `rollout.drainMs`, if it is ready), stopped, started again (clearing failed and
   * "stopped by hand") and waited for until ready or given up, before the next one goes down.
   */
  async restartInstances(ids: readonly string[]): Promise<void> {
    for (const id of ids) {
      const inst = this.instances.get(id)!
      this.emit('event', {
        event: 'restart',
        id,
        component: inst.spec.component,
        instance: inst.spec.index,
        port: inst.spec.port,
        childPid: inst.pid,
        reason: 'operator request',
      })
      // Drained first, as in a rollout: a load balancer stops sending it work before it stops.
      const { drainMs } = this.#plan.components.find((c) => c.name === inst.spec.component)!.rollout
      if (drainMs > 0 && inst.state === 'ready') {
        inst.draining = true
        try {
          await this.#instanceDeps.clock.sleep(drainMs)
          await inst.stop()
        } finally {
          inst.draining = false
        }
      } else {
        await inst.stop()
      }
      this.stoppedByOperator.delete(id)
      inst.completed = false
      if (this.#shuttingDown) return
      this.reconcile()
      await this.waitSettled([id])
    }
  }

  /**
   * Stops everything in reverse dependency order: a component stops once every component that
   * depends on it has stopped; unrelated components stop in parallel. Idempotent: later calls
   * join the first.
   */
  shutdown(): Promise<void> {
    this.#shutdown ??= (async () => {
      this.#shuttingDown = true
      this.emit('shutdown')
      const stopped = new Map<string, Promise<void>>()
      const stop = (name: string): Promise<void> => {
        let p = stopped.get(name)
        if (!p) {
          const dependents = this.plan.components.filter((c) => c.dependsOn.includes(name))
          p = Promise.all(dependents.map((d) => stop(d.name))).then(() =>
            Promise.all(this.#of(name).map((i) => i.stop())).then(() => undefined),
          )
          stopped.set(name, p)
        }
        return p
      }
      await Promise.all(this.plan.components.map((c) => stop(c.name)))
    })()
    return this.#shutdown
  }
}
