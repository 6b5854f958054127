import { EventEmitter } from 'node:events'
import { isDeepStrictEqual } from 'node:util'
import type { Cancel } from '../seams/clock.js'
import type { InstanceSpec, Plan } from '../config/plan.js'
import { planInstances } from '../config/plan.js'
import type { InstanceStatus } from '../status.js'
import { Instance, type InstanceDeps, type InstanceEvent } from './instance.js'

/** The node's role as HA last published it (no side effect in reading it). */
export interface RoleSnapshot {
  active: boolean
  epoch: number
}

/** The listening sockets tandem holds (HeldSockets), as the reconciler uses them. */
export interface ReconcilerSockets extends NonNullable<InstanceDeps['sockets']> {
  /** Closes every held socket whose instance `keep` does not name. */
  releaseUnless(keep: (id: string) => boolean): void
}

export type ReconcilerDeps = Omit<InstanceDeps, 'onEvent' | 'wake' | 'sockets'> & {
  /**
   * Listening sockets held for instances with `socket`: each is kept while its instance wants to
   * run and released after the pass in which it stopped wanting it (see #releaseSockets).
   */
  sockets?: ReconcilerSockets
  /**
   * With ha: the node's role. Components with `runOn: active` and a cold standby run only while
   * it is active; an active-only instance serving an epoch the node no longer holds is stopped
   * (a hot one comes back as a standby). Default: active in epoch 0 (no ha).
   */
  nodeRole?: () => RoleSnapshot
  /**
   * With ha: tells a ready hot standby instance that the node is active in `epoch` (IPC, signal
   * or hook). False when the node turned out not to be active at the last moment (nothing done).
   */
  activate?: (inst: Instance, epoch: number) => boolean
}

/** Why a stopped instance that is wanted does not start yet, for status. */
const waitingReason = (deps: string[]): string => `waiting for ${deps.join(', ')} to be ready`

/** What an instance should be: its definition, and the generation of its run (see restart). */
interface Desired {
  spec: InstanceSpec
  generation: number
}

/**
 * The one place that decides what runs, and the only caller of Instance.start, stop and
 * redefine. Desired state, per instance: run or not (the plan, minus what an operator stopped
 * by hand, minus instances leaving the plan, minus everything once shutdown began, minus
 * active-only ones while the node is not active), a definition and a restart generation.
 * `reconcile()` compares it with each instance and acts to converge, components in dependency
 * order: a running instance whose definition or generation is behind is drained (its
 * component's `rollout.drainMs`, if ready), stopped, redefined and started again. Operator
 * start, stop and restart, rollouts (`replaceInstance`), restarts after backoff and shutdown all
 * change desired state and wait for this: there is no second path that spawns or stops.
 */
export class Reconciler extends EventEmitter<{
  event: [InstanceEvent]
  shutdown: []
  /** A reconcile pass ended (instances may have been forgotten: no instance event says so). */
  reconciled: []
}> {
  #plan: Plan

  /** What this node runs now; a reload or upgrade replaces it (replacePlan). */
  get plan(): Plan {
    return this.#plan
  }
  readonly instances = new Map<string, Instance>()
  readonly stoppedByOperator: Set<string>
  readonly #desired = new Map<string, Desired>()
  /** Instances the plan dropped: stopped, then forgotten. */
  readonly #leaving = new Set<string>()
  /** Ready instances draining before a replacement stops them: the drain's timer. */
  readonly #draining = new Map<string, Cancel>()
  readonly #instanceDeps: InstanceDeps
  readonly #nodeRole: () => RoleSnapshot
  readonly #activate: ReconcilerDeps['activate']
  readonly #sockets: ReconcilerSockets | undefined
  #shuttingDown = false
  #scheduled = false
  #shutdown: Promise<void> | undefined

  constructor(plan: Plan, deps: ReconcilerDeps, stoppedByOperator: Iterable<string> = []) {
    super()
    this.#plan = plan
    const known = new Set(planInstances(plan).map((i) => i.id))
    this.stoppedByOperator = new Set([...stoppedByOperator].filter((id) => known.has(id)))
    this.#nodeRole = deps.nodeRole ?? (() => ({ active: true, epoch: 0 }))
    this.#activate = deps.activate
    this.#sockets = deps.sockets
    this.#instanceDeps = {
      ...deps,
      onEvent: (e) => {
        this.emit('event', e)
        this.schedule()
      },
      wake: () => this.schedule(),
    }
    for (const spec of planInstances(plan)) this.#add(spec)
  }

  #add(spec: InstanceSpec): void {
    this.instances.set(spec.id, new Instance(spec, this.#instanceDeps))
    this.#desired.set(spec.id, { spec, generation: 0 })
  }

  /** True once shutdown has begun: nothing starts any more. */
  get shuttingDown(): boolean {
    return this.#shuttingDown
  }

  /**
   * Makes `next` the plan: instances it adds are created (and started by the next reconcile
   * pass, dependencies first); instances it drops are stopped and then forgotten (`whenGone`).
   * Existing instances keep their definition: a rollout replaces them one by one
   * (`replaceInstance`).
   */
  replacePlan(next: Plan): void {
    const ids = new Set(planInstances(next).map((i) => i.id))
    for (const id of this.instances.keys()) if (!ids.has(id)) this.#leaving.add(id)
    for (const spec of planInstances(next)) {
      this.#leaving.delete(spec.id)
      if (!this.instances.has(spec.id)) this.#add(spec)
    }
    this.#plan = next
    this.reconcile()
  }

  /**
   * Takes instances out of what runs ahead of a plan that drops them (a reload stops what it
   * removes before it adds): they are stopped and forgotten.
   */
  retire(ids: readonly string[]): void {
    for (const id of ids) if (this.instances.has(id)) this.#leaving.add(id)
    this.reconcile()
  }

  /** Resolves once each of the instances has left (stopped and forgotten). */
  whenGone(ids: readonly string[]): Promise<void> {
    return this.#until(() => ids.every((id) => !this.instances.has(id)))
  }

  /**
   * A rollout's step: `spec` becomes the instance's definition, in a new generation. A running
   * instance is drained, stopped and started again with it; a stopped one is redefined (and
   * started if wanted). Returns the generation whose run carries the new definition.
   */
  replaceInstance(id: string, spec: InstanceSpec): number {
    const d = this.#desired.get(id)!
    const generation = d.generation + 1
    this.#desired.set(id, { spec, generation })
    this.reconcile()
    return generation
  }

  /** The generation desired of an instance (the next replaceInstance makes it one more). */
  generationOf(id: string): number {
    return this.#desired.get(id)?.generation ?? 0
  }

  /** The definition an instance is to run (the rollout's, during one). */
  desiredSpec(id: string): InstanceSpec | undefined {
    return this.#desired.get(id)?.spec
  }

  /** Whether the instance should be running now. */
  desired(id: string): boolean {
    const inst = this.instances.get(id)
    return (
      !this.#shuttingDown &&
      !this.stoppedByOperator.has(id) &&
      !this.#leaving.has(id) &&
      inst !== undefined &&
      (inst.spec.runOn !== 'active' || inst.spec.standby === 'hot' || this.#nodeRole().active)
    )
  }

  /** Its definition or generation is behind what is desired: it is to be replaced. */
  #behind(inst: Instance): boolean {
    const d = this.#desired.get(inst.id)!
    return inst.generation < d.generation || !isDeepStrictEqual(inst.spec, d.spec)
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
    const role = this.#nodeRole()
    for (const inst of [...this.instances.values()]) {
      const id = inst.id
      // Not while a handover's old process still finishes: forgotten, it would be out of reach of
      // shutdown and of a second SIGINT (its end, `retired`, brings another pass).
      if (this.#leaving.has(id) && inst.state === 'stopped' && !inst.handingOver) {
        this.#forget(id)
        continue
      }
      const want = this.desired(id)
      const d = this.#desired.get(id)!
      const behind = this.#behind(inst)
      switch (inst.state) {
        case 'stopped':
          if (!isDeepStrictEqual(inst.spec, d.spec)) inst.redefine(d.spec)
          // A one-shot that ran to its clean end starts again only for a new generation.
          if (
            want &&
            (!inst.completed || inst.generation < d.generation) &&
            this.#unmetDependencies(inst.spec).length === 0
          )
            void inst.start(d.generation)
          break
        case 'backoff':
        case 'failed':
          if (!want) void inst.stop()
          else if (behind || inst.due) {
            if (!isDeepStrictEqual(inst.spec, d.spec)) inst.redefine(d.spec)
            void inst.start(d.generation)
          }
          break
        case 'starting':
        case 'ready':
          // Shutdown stops in its own order.
          if (this.#shuttingDown) break
          if (!want) void inst.stop()
          else if (this.#servesLapsedRole(inst, role)) void inst.stop()
          else if (behind) this.#replace(inst)
          else if (
            this.#activate &&
            inst.state === 'ready' &&
            inst.spec.runOn === 'active' &&
            inst.activeEpoch === undefined &&
            role.active &&
            this.#activate(inst, role.epoch)
          )
            inst.markActive(role.epoch)
          break
        default:
          break
      }
    }
    this.#releaseSockets()
    this.emit('reconciled')
  }

  /**
   * A held socket lives as long as its instance wants to run: an instance that left the plan,
   * was stopped by an operator or failed (gave up) refuses connections again, rather than
   * letting them wait in a backlog that no process will accept from. Shutdown releases them
   * all (nothing is desired any more).
   */
  #releaseSockets(): void {
    this.#sockets?.releaseUnless((id) => {
      const inst = this.instances.get(id)
      return inst !== undefined && inst.state !== 'failed' && this.desired(id)
    })
  }

  /** An active-only instance serving as active in an epoch the node does not hold (now). */
  #servesLapsedRole(inst: Instance, role: RoleSnapshot): boolean {
    return (
      inst.spec.runOn === 'active' &&
      inst.activeEpoch !== undefined &&
      (!role.active || inst.activeEpoch !== role.epoch)
    )
  }

  /**
   * Resolves once no active-only instance serves as active any more (stopped, or a hot one back
   * as a standby): what a node waits for before it hands over.
   */
  whenQuiesced(): Promise<void> {
    this.reconcile()
    return this.#until(() =>
      [...this.instances.values()].every(
        (i) =>
          i.spec.runOn !== 'active' ||
          (i.activeEpoch === undefined &&
            (i.spec.standby === 'hot' ||
              !(i.state === 'starting' || i.state === 'ready' || i.state === 'stopping'))),
      ),
    )
  }

  /**
   * Drains a ready instance (its component's rollout.drainMs), then ends its run: a handover
   * where one fits (see #handsOver), else a stop (the next pass starts the new definition).
   */
  #replace(inst: Instance): void {
    if (this.#draining.has(inst.id)) return
    const component = this.plan.components.find((c) => c.name === inst.spec.component)
    const drainMs = component?.rollout.drainMs ?? 0
    if (drainMs <= 0 || inst.state !== 'ready') {
      this.#endRun(inst)
      return
    }
    inst.setDraining(true)
    this.#draining.set(
      inst.id,
      this.#instanceDeps.clock.after(drainMs, () => {
        this.#draining.delete(inst.id)
        this.#endRun(inst)
      }),
    )
  }

  #endRun(inst: Instance): void {
    const d = this.#desired.get(inst.id)
    if (d && this.#handsOver(inst, d.spec)) {
      inst.setDraining(false)
      void inst.handOver(d.spec, d.generation)
      return
    }
    void inst.stop().finally(() => {
      inst.setDraining(false)
    })
  }

  /**
   * Whether a ready instance is replaced make-before-break (Instance.handOver): its new process
   * starts on the socket tandem holds while the old one serves on, and the old one is stopped
   * once the new one is ready; connections never wait for a process to start. Only where both
   * processes serve the same held socket (its port, address and backlog unchanged), where
   * readiness is the new process's own word (IPC: an HTTP probe through the shared socket could
   * be answered by the old process) and for instances that do not serve an HA role (an
   * active-only instance has one process serving its epoch). Anything else stops the old
   * process first; with a held socket, connections then wait in its backlog meanwhile.
   */
  #handsOver(inst: Instance, next: InstanceSpec): boolean {
    const now = inst.spec.socket
    return (
      this.#sockets !== undefined &&
      inst.state === 'ready' &&
      // One handover at a time: a replacement while the last one's old process still finishes
      // its requests stops the current process first.
      !inst.handingOver &&
      now !== undefined &&
      next.socket !== undefined &&
      next.port === inst.spec.port &&
      next.socket.host === now.host &&
      next.socket.backlog === now.backlog &&
      next.readiness.type === 'ipc' &&
      inst.spec.runOn !== 'active' &&
      next.runOn !== 'active'
    )
  }

  #forget(id: string): void {
    this.#draining.get(id)?.()
    this.#draining.delete(id)
    this.instances.delete(id)
    this.#desired.delete(id)
    this.#leaving.delete(id)
    this.stoppedByOperator.delete(id)
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
   * (its instances are failed or stopped themselves), in the generation desired of it.
   * Operator commands wait for this.
   */
  settled(id: string): boolean {
    const inst = this.instances.get(id)
    if (!inst) return true
    const want = this.desired(id)
    if (want && this.#behind(inst) && inst.state !== 'stopped') return false
    if (inst.state === 'ready' || inst.state === 'failed' || inst.state === 'backoff') return true
    if (inst.state !== 'stopped') return false
    if (!want) return true
    if (this.#behind(inst)) return !this.#mayStart(inst)
    return inst.completed || !this.#mayStart(inst)
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

  /** Resolves when `done()` holds, checked after each instance event. */
  #until(done: () => boolean): Promise<void> {
    return new Promise((resolve) => {
      const check = () => {
        if (!done()) return
        this.off('event', check)
        this.off('reconciled', check)
        resolve()
      }
      this.on('event', check)
      this.on('reconciled', check)
      // Let the reconcile pass that this action scheduled run first.
      queueMicrotask(() => queueMicrotask(check))
    })
  }

  /** Resolves when every one of the instances is settled (see `settled`). */
  waitSettled(ids: readonly string[]): Promise<void> {
    return this.#until(() => ids.every((id) => this.settled(id)))
  }

  /** Operator stop: the instances stay stopped (persisted by the caller) until started again. */
  async stopInstances(ids: readonly string[]): Promise<void> {
    ids.forEach((id) => this.stoppedByOperator.add(id))
    this.reconcile()
    await this.#until(() =>
      ids.every((id) => {
        const state = this.instances.get(id)?.state
        return state === undefined || state === 'stopped'
      }),
    )
  }

  /**
   * Operator start: clears "stopped by hand"; an instance that is not running gets a new
   * generation (a failed one a fresh start, a one-shot that completed runs again).
   */
  async startInstances(ids: readonly string[]): Promise<void> {
    for (const id of ids) {
      this.stoppedByOperator.delete(id)
      const inst = this.instances.get(id)!
      if (inst.state === 'failed' || inst.state === 'backoff' || inst.state === 'stopped')
        this.#bump(id)
    }
    this.reconcile()
    await this.waitSettled(ids)
  }

  #bump(id: string): void {
    const d = this.#desired.get(id)!
    this.#desired.set(id, { ...d, generation: d.generation + 1 })
  }

  /**
   * Operator restart, one instance at a time: each gets a new generation, so the reconciler
   * drains it (its component's `rollout.drainMs`, if it is ready), stops it and starts it again
   * (clearing failed and "stopped by hand"); it is waited for until ready or given up before
   * the next one goes down.
   */
  async restartInstances(ids: readonly string[]): Promise<void> {
    for (const id of ids) {
      const inst = this.instances.get(id)
      if (!inst) continue
      this.emit('event', {
        event: 'restart',
        id,
        component: inst.spec.component,
        instance: inst.spec.index,
        port: inst.spec.port,
        childPid: inst.pid,
        reason: 'operator request',
        cause: 'operator',
      })
      if (this.#shuttingDown) return
      this.stoppedByOperator.delete(id)
      this.#bump(id)
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
      for (const cancel of this.#draining.values()) cancel()
      this.#draining.clear()
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
      // Instances the plan had dropped but not yet stopped (a rollout cut short).
      await Promise.all([...this.instances.values()].map((i) => i.stop()))
      for (const i of this.instances.values()) i.setDraining(false)
    })()
    return this.#shutdown
  }
}
