import type { Logger } from 'pino'
import type { HaSpec } from '../config/plan.js'
import { errorMessage, TandemError } from '../errors.js'
import { hostMonotonic, type Clock } from '../seams/clock.js'
import { watchdogMarginMs, type Watchdog } from '../process/watchdog.js'
import { instanceEnv } from '../process/child-env.js'
import type { CommandRequest, CommandResult } from '../process/run-command.js'
import type { Instance } from '../supervisor/instance.js'
import type { Reconciler, RoleSnapshot } from '../supervisor/reconciler.js'
import type { BackendStatus, ClusterStatus } from '../status.js'
import type { ClusterKv } from './cluster-kv.js'
import { ExternalRole } from './external-role.js'
import type { NodeRole } from './node-role.js'
import { Presence } from './presence.js'

/**
 * The IPC messages an active-only child receives (see the child helper). `deadline` is the
 * supervisor's own fence time as an absolute time on the host's monotonic clock
 * (`hostMonotonic()`): a message that arrives late cannot extend it.
 */
export type ChildMessage =
  | { type: 'tandem:activate'; epoch: number; deadline: number }
  | { type: 'tandem:lease'; epoch: number; deadline: number }

/**
 * Whether `/leader` may answer 200 (pure): every active-only instance that is wanted and has not
 * given up serves as active in `epoch`, and each active-only component has one that does. A load
 * balancer routes to the node that answers 200: it must not answer over children it knows to be
 * down (starting after a promotion, restarting, killed by the watchdog, not yet activated).
 */
export const leaderServing = (
  instances: readonly Pick<Instance, 'id' | 'state' | 'activeEpoch' | 'spec' | 'completed'>[],
  wanted: (id: string) => boolean,
  epoch: number,
): { serving: true } | { serving: false; missing: string[] } => {
  // A one-shot that ran to its clean end is done, not down.
  const activeOnly = instances.filter(
    (i) => i.spec.runOn === 'active' && wanted(i.id) && !i.completed,
  )
  const missing = activeOnly
    .filter((i) => i.state !== 'failed' && !(i.state === 'ready' && i.activeEpoch === epoch))
    .map((i) => i.id)
  // One that gave up does not hold the others back, unless none of its component is left.
  for (const c of new Set(activeOnly.map((i) => i.spec.component))) {
    if (activeOnly.filter((i) => i.spec.component === c).every((i) => i.state === 'failed'))
      missing.push(`${c} (every instance failed)`)
  }
  return missing.length ? { serving: false, missing } : { serving: true }
}

/**
 * A node of a hot-standby cluster: runs the Lease and publishes the node's role to the
 * reconciler (`roleSnapshot`, read without side effects), which makes the children follow it.
 * Promoted: `runOn: active` components with a cold standby start, and the reconciler activates
 * hot standby instances through `activate` (IPC message, signal or hook command), each only
 * after a synchronous check that the lease is still held. Fenced or released: the reconciler
 * stops the active children (hot ones come back as standbys). Right after each good renew, every
 * active child with an IPC channel gets the node's new fence time as its deadline
 * (`tandem:lease`), and the watchdog gets it for all of them: a child still running at its
 * deadline plus a margin is killed, cooperative or not, before a standby can take over.
 */
export class HaNode {
  readonly lease: NodeRole
  readonly #ha: HaSpec
  readonly #node: string
  readonly #reconciler: () => Reconciler
  readonly #log: Logger
  readonly #watchdog: Pick<Watchdog, 'lease'> | undefined
  readonly #marginMs: number
  readonly #presence: Presence | undefined
  readonly #backend: () => BackendStatus
  readonly #clock: Clock
  readonly #runCommand: (inst: Instance, req: CommandRequest) => Promise<CommandResult>
  /** The role as the lease last said: active (until `validUntil`, monotonic) in `epoch`. */
  #role = { active: false, epoch: 0, validUntil: 0 }

  constructor(options: {
    ha: HaSpec
    node: string
    /** The Lease (through the backend's store), or an ExternalRole. */
    role: NodeRole
    /** Where presence goes (the shared dir, etcd); none with an external backend. */
    kv: ClusterKv | undefined
    backend: () => BackendStatus
    reconciler: () => Reconciler
    log: Logger
    clock: Clock
    /** Kills active children if this process freezes (see Watchdog.lease). */
    watchdog?: Pick<Watchdog, 'lease'>
    /**
     * Runs an instance's activation hook as tandem runs children (process/runCommand: own group,
     * pid record, output in the log), on the supervisor's base environment.
     */
    runCommand: (inst: Instance, req: CommandRequest) => Promise<CommandResult>
  }) {
    this.#watchdog = options.watchdog
    this.#marginMs = watchdogMarginMs(options.ha.selfFenceMs, options.ha.takeoverMs)
    this.#backend = options.backend
    this.#clock = options.clock
    this.#runCommand = options.runCommand
    this.#presence =
      options.kv &&
      new Presence(
        options.kv,
        () => ({
          node: options.node,
          pid: process.pid,
          role: this.lease.role,
          epoch: this.lease.epoch,
        }),
        options.clock,
        (m) => this.#log.error({ event: 'ha', cluster: options.ha.name }, m),
      )
    this.#ha = options.ha
    this.#node = options.node
    this.#reconciler = options.reconciler
    this.#log = options.log
    this.lease = options.role
    this.lease.on('active', ({ epoch, why }) => {
      this.#log.warn(
        { event: 'promoted', epoch, cluster: this.#ha.name },
        `active for epoch ${epoch} (${why})`,
      )
      this.#role = {
        active: true,
        epoch,
        validUntil: this.#clock.monotonic() + this.lease.validForMs(),
      }
      // Cold active-only components start, hot ones are activated: the reconciler's business.
      this.#reconciler().reconcile()
    })
    // Right after each good renew: the children's and the watchdog's deadline is the node's own.
    this.lease.on('renewed', ({ epoch, validMs }) => {
      this.#role = { active: true, epoch, validUntil: this.#clock.monotonic() + validMs }
      this.#sendLeases()
    })
    this.lease.on('standby', ({ epoch, why }) => {
      this.#log.warn(
        {
          event: why.startsWith('released') ? 'released' : 'fenced',
          epoch,
          cluster: this.#ha.name,
        },
        `no longer active in epoch ${epoch}: ${why}; stopping active children`,
      )
      // The reconciler stops them now. The watchdog keeps the last deadline: whatever still
      // serves past it plus the margin is killed, since a standby may claim takeoverMs after
      // the last renew.
      this.#role = { active: false, epoch: this.lease.epoch, validUntil: 0 }
      this.#reconciler().reconcile()
    })
    this.lease.on('problem', (m) => this.#log.error({ event: 'ha', cluster: this.#ha.name }, m))
  }

  /** Starts competing. */
  start(): void {
    this.#reconciler().on('event', (e) => {
      const inst = this.#reconciler().instances.get(e.id)
      if (!inst || inst.spec.runOn !== 'active') return
      // A child spawned active is the watchdog's to kill if this process freezes.
      if (e.event === 'spawned' && inst.activeEpoch !== undefined) this.#sendLeases()
    })
    this.lease.start()
    this.#presence?.start()
  }

  /**
   * Leaves the cluster: an active node hands over as switchover does (its active children
   * stopped first, then `released`, so a standby takes over within pollMs rather than after
   * takeoverMs, and never beside it); then it stops competing.
   */
  async leave(): Promise<void> {
    if (this.lease.isActive()) await this.lease.release(() => this.#reconciler().whenQuiesced())
    this.stop()
  }

  stop(): void {
    this.lease.stop()
    this.#presence?.stop()
    this.#watchdog?.lease(0, 0, [])
  }

  /** Calls `fn` whenever this node becomes active or standby. */
  onRoleChange(fn: () => void): void {
    this.lease.on('active', fn)
    this.lease.on('standby', fn)
  }

  /** Synchronous, fences when the lease has lapsed: checked right before anything visible. */
  isActive(): boolean {
    return this.lease.isActive()
  }

  /**
   * For the reconciler: the role as the lease last published it, active only until the fence
   * time of the last good renew. Reading it changes nothing (no fencing inside a reconcile).
   */
  roleSnapshot(): RoleSnapshot {
    const r = this.#role
    return { active: r.active && this.#clock.monotonic() < r.validUntil, epoch: r.epoch }
  }

  /** The role, epoch and (active) deadline on the host's monotonic clock a child spawned now gets. */
  roleFor(): { role: 'active' | 'standby'; epoch: number; deadline?: number } {
    const deadline = this.#deadline()
    return deadline !== undefined
      ? { role: 'active', epoch: this.lease.epoch, deadline }
      : { role: 'standby', epoch: this.lease.epoch }
  }

  /** The node's fence time on the host's monotonic clock, undefined when not active. */
  #deadline(): number | undefined {
    const validMs = this.lease.validForMs()
    return validMs > 0 ? hostMonotonic() + validMs : undefined
  }

  /** For status: the cluster, this node's epoch, and the active heartbeat as last seen. */
  status(): ClusterStatus {
    const seen = this.lease.observed()
    return {
      name: this.#ha.name,
      epoch: this.lease.epoch,
      backend: this.#backend(),
      ...(seen && !this.isActive() ? { heartbeat: seen } : {}),
      peers: this.#presence?.peers() ?? [],
    }
  }

  /**
   * `/leader`: the node and epoch only while active and its active-only children serve (see
   * `leaderServing`); otherwise what is missing, for the 503's body.
   */
  leader(): { node: string; epoch: number } | { missing: string[] } | undefined {
    if (!this.isActive()) return undefined
    const r = this.#reconciler()
    const ok = leaderServing([...r.instances.values()], (id) => r.desired(id), this.lease.epoch)
    return ok.serving ? { node: this.#node, epoch: this.lease.epoch } : { missing: ok.missing }
  }

  /**
   * `tandem switchover`: stops being active, stops the active children, then writes `released`
   * so that a standby takes over within pollMs. ECLUSTER when this node is not active.
   */
  async switchover(): Promise<{ epoch: number }> {
    const epoch = this.lease.epoch
    const released = await this.lease.release(() => this.#reconciler().whenQuiesced())
    if (!released) {
      throw new TandemError(
        'ECLUSTER',
        `node ${this.#node} is not the active node of cluster "${this.#ha.name}" (epoch ${epoch}): run switchover on the active one`,
      )
    }
    return { epoch }
  }

  /**
   * `POST /promote` (external backend: the cluster manager made this node the active one):
   * active in a new epoch, or the current one when already active. EUSAGE with a lease.
   */
  promote(): { node: string; epoch: number } {
    const role = this.#external('promote')
    return { node: this.#node, epoch: role.promote() }
  }

  /**
   * `POST /demote` (external backend): standby, once the active children have stopped (hot ones
   * come back as standbys). Idempotent. EUSAGE with a lease.
   */
  async demote(): Promise<{ node: string; epoch: number }> {
    const role = this.#external('demote')
    await role.release(() => this.#reconciler().whenQuiesced())
    return { node: this.#node, epoch: role.epoch }
  }

  #external(what: string): ExternalRole {
    if (this.lease instanceof ExternalRole) return this.lease
    throw new TandemError(
      'EUSAGE',
      `${what} is for ha.backend {"type": "external"} (a cluster manager such as Pacemaker decides); cluster "${this.#ha.name}" holds a lease, which decides by itself (see tandem switchover)`,
    )
  }

  #activeOnly(): Instance[] {
    return [...this.#reconciler().instances.values()].filter((i) => i.spec.runOn === 'active')
  }

  /**
   * For the reconciler (the only caller): tells a ready hot standby instance that the node is
   * active in `epoch`. False, with nothing done, unless the node still is: the check is
   * synchronous and comes right before the visible act. True once the act was tried (a failure
   * is logged; the instance counts as activated, and is not told twice).
   */
  activate(inst: Instance, epoch: number): boolean {
    if (!this.isActive() || this.lease.epoch !== epoch) return false
    const deadline = this.#deadline()
    if (deadline === undefined) return false
    const a = inst.spec.activate
    const fields = {
      event: 'activate',
      component: inst.spec.component,
      instance: inst.spec.index,
      epoch,
    }
    // Marked before the act, so that the leases sent next include it.
    inst.markActive(epoch)
    if (a.type === 'ipc') {
      if (!inst.send({ type: 'tandem:activate', epoch, deadline } satisfies ChildMessage)) {
        this.#log.error(fields, `${inst.id}: cannot send the activation (no IPC channel)`)
        return true
      }
    } else if (a.type === 'signal') {
      try {
        process.kill(inst.pid!, a.signal)
      } catch (err) {
        this.#log.error(fields, `${inst.id}: cannot send ${a.signal}: ${errorMessage(err)}`)
        return true
      }
    } else {
      this.#runHook(inst, a.command, a.timeoutMs, epoch)
    }
    this.#log.info(fields, `${inst.id} activated for epoch ${epoch} (${a.type})`)
    this.#sendLeases()
    return true
  }

  /** The activation hook: run through process/ like every child (see runCommand). */
  #runHook(inst: Instance, command: string[], timeoutMs: number, epoch: number): void {
    const fields = {
      event: 'activate',
      component: inst.spec.component,
      instance: inst.spec.index,
      epoch,
    }
    const program = command[0]
    // What the instance itself gets: its account's HOME and USER, its env files (read now), env.
    let env: Record<string, string>
    try {
      env = instanceEnv(inst.spec)
    } catch (err) {
      this.#log.error(
        fields,
        `${inst.id}: activation hook ${program} not run: ${errorMessage(err)}`,
      )
      return
    }
    void this.#runCommand(inst, {
      argv: command,
      cwd: inst.spec.cwd,
      env: {
        ...env,
        TANDEM_ROLE: 'active',
        TANDEM_EPOCH: String(epoch),
        TANDEM_PID: String(inst.pid),
      },
      timeoutMs,
    }).then(
      (r) => {
        if (r.spawnError)
          this.#log.error(fields, `${inst.id}: activation hook ${program} failed: ${r.spawnError}`)
        else if (r.timedOut)
          this.#log.error(
            fields,
            `${inst.id}: activation hook ${program} still ran after timeoutMs ${timeoutMs}: stopped`,
          )
        else if (r.code !== 0)
          this.#log.error(
            fields,
            `${inst.id}: activation hook ${program} exited ${r.signal ?? r.code}`,
          )
      },
      (err: unknown) =>
        this.#log.error(fields, `${inst.id}: activation hook ${program}: ${errorMessage(err)}`),
    )
  }

  /**
   * Each active child with an IPC channel learns the node's new fence time; the watchdog learns
   * it for all of them, cooperative or not, and kills those still running past it plus the margin.
   */
  #sendLeases(): void {
    const deadline = this.#deadline()
    if (deadline === undefined) return
    const serving = this.#activeOnly().filter((i) => i.activeEpoch !== undefined && i.pid)
    for (const inst of serving) {
      inst.send({ type: 'tandem:lease', epoch: inst.activeEpoch!, deadline } satisfies ChildMessage)
    }
    this.#watchdog?.lease(
      deadline,
      this.#marginMs,
      serving.map((i) => i.pid!),
    )
  }
}
