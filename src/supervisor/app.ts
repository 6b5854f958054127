import { isDeepStrictEqual } from 'node:util'
import type { Logger } from 'pino'
import { planInstances, type HookSpec, type Plan } from '../config/plan.js'
import { TandemError, errorMessage } from '../errors.js'
import type { Clock } from '../seams/clock.js'
import type {
  ClusterStatus,
  HookStatus,
  StatusReply,
  SupervisorSelf,
  WriterStatus,
} from '../status.js'
import { ChangeQueue } from './change-queue.js'
import { fromInstanceEvent, type EventInput, type EventStream } from './event-stream.js'
import { logInstanceEvent } from './event-log.js'
import { withRolloutEvents, type InstanceFields } from './rollout-events.js'
import type { Reconciler } from './reconciler.js'
import { rollout, type RolloutEvent, type RolloutOptions, type RolloutResult } from './rollout.js'
import { resolveTargets } from './targets.js'

/** What the core needs of the HA node (HaNode): the role, handovers, and leaving at shutdown. */
export interface HaPart {
  isActive(): boolean
  status(): ClusterStatus
  leader(): { node: string; epoch: number } | { missing: string[] } | undefined
  roleFor(): { role: 'active' | 'standby'; epoch: number }
  switchover(): Promise<{ epoch: number }>
  promote(): { node: string; epoch: number }
  demote(): Promise<{ node: string; epoch: number }>
  /** Joins the cluster (competes for the role). */
  start(): void
  /** Hands over if active, then stops competing. */
  leave(): Promise<void>
  /** The role changed. */
  onRoleChange(fn: () => void): void
}

/** systemd's view (ops/systemd-notifier): READY, STATUS, STOPPING, the watchdog. */
export interface NotifierPart {
  start(): void
  update(): void
  reloading(): void
  reloaded(): void
  stopping(): void
  close(): Promise<void>
}

/** The resource and health monitor (Monitor). */
export interface MonitorPart {
  start(): void
  changed(): void
  sync(): void
  stop(): void
}

/** A listener or watcher that shutdown closes. */
export type Close = () => Promise<void> | void

/** Everything the core is given; `runSupervisor` builds the real ones, tests build fakes. */
export interface SupervisorDeps {
  plan: Plan
  log: Logger
  clock: Clock
  events: EventStream
  reconciler: Reconciler
  monitor: MonitorPart
  notifier: NotifierPart
  ha?: HaPart
  /** Operator stops, persisted across supervisor restarts (Overrides). */
  overrides: { write(stopped: Iterable<string>): void }
  /** The unified log: its writers' status, reopening, and the last close. */
  logs: { status(): WriterStatus[]; reopen(): void; close(): Promise<void> }
  /** Reads and validates the config file again (throws ECONFIG): upgrades and reloads. */
  loadConfig(file: string): Plan
  /** A component's part of a rollout under the cluster's roll slots (RollLocks), if any. */
  exclusive?: RolloutOptions['exclusive']
  /** The supervisor's own figures (status, /health, /metrics). */
  self(): SupervisorSelf
  pid: number
  /** The config's hooks (HookRunner): status (runs, failures, drops), and a reload's hooks. */
  hooks?: {
    status(): HookStatus[]
    replace(hooks: readonly HookSpec[]): { kept: number; added: number; removed: number }
  }
  /** What shutdown closes once the instances have stopped, before the listeners (held sockets). */
  closeAfterInstances: [what: string, close: Close][]
  /** What shutdown closes after the listeners, in order (the watchdog, the backend, the lock). */
  closeLast: [what: string, close: Close][]
}

/** An operator's targets in a request body: `{"targets": ["all" | "web" | "web#0", ...]}`. */
const targetsOf = (body: Record<string, unknown>): string[] => {
  const t = body.targets
  if (!Array.isArray(t) || !t.every((x) => typeof x === 'string')) {
    throw Object.assign(
      new Error('expected {"targets": ["all" | "<component>" | "<component>#<index>", ...]}'),
      { code: 'EUSAGE' },
    )
  }
  return t
}

export type Supervisor = ReturnType<typeof createSupervisor>

/**
 * The supervisor's core: what `tandem start` does between its listeners and its processes.
 * Operator actions, rollouts and reloads (one at a time, through one queue), status, the
 * start and the shutdown (once, in order, never rejecting: a step that throws is logged and
 * makes the exit code 1). It spawns nothing and listens on nothing itself: every handler is
 * safe to call at any point of start-up and shutdown, and tests drive it with fakes.
 */
export const createSupervisor = (deps: SupervisorDeps) => {
  const { plan, log, events, reconciler, monitor, notifier, ha, overrides, logs } = deps
  /** The hooks in force: the config's at start, a reload's since. */
  let hooks = plan.hooks

  /**
   * A cluster upgrade's part: an active-only instance is replaced only while this node is a
   * standby, so that it never restarts while serving. The check comes right before each such
   * instance, not once at the start of the part: a peer doing its own part may hand the role
   * to this node in between (it did, in a test on a loaded machine, and this node then
   * restarted the only serving api in place).
   */
  const handOverFirst =
    (inner: RolloutOptions['exclusive']): RolloutOptions['exclusive'] =>
    async (c, fn) => {
      if (c.instances[0]?.runOn === 'active' && ha?.isActive()) {
        log.info(
          { event: 'cluster-upgrade', component: c.name },
          `handing over before rolling ${c.name} (active only)`,
        )
        await ha.switchover()
      }
      return inner ? inner(c, fn) : fn()
    }

  const wanted = () => [...reconciler.instances.values()].filter((i) => reconciler.desired(i.id))
  // A one-shot instance that ended cleanly (a migration, say) is done, not missing.
  const allWantedReady = () => wanted().every((i) => i.state === 'ready' || i.completed)
  let allReady = false
  reconciler.on('event', (e) => {
    const published = fromInstanceEvent(e, {
      stoppedByOperator: (id) => reconciler.stoppedByOperator.has(id),
    })
    logInstanceEvent(log, e, published && events.publish(published).seq)
    monitor.changed()
    const nowReady = wanted().length > 0 && allWantedReady()
    if (nowReady && !allReady)
      log.info({ event: 'all-ready' }, `all ${wanted().length} wanted instances are ready`)
    allReady = nowReady
    notifier.update()
  })
  ha?.onRoleChange(() => notifier.update())

  const status = (): StatusReply => ({
    node: plan.node,
    role: ha ? (ha.isActive() ? 'active' : 'standby') : 'standalone',
    ...(ha ? { cluster: ha.status() } : {}),
    pid: deps.pid,
    config: plan.configFile,
    instances: reconciler.status(),
    logs: logs.status(),
    supervisor: deps.self(),
    ...(deps.hooks && hooks.length ? { hooks: deps.hooks.status() } : {}),
  })

  let resolveDone!: (code: number) => void
  const done = new Promise<number>((r) => (resolveDone = r))
  let stopping: Promise<void> | undefined
  /** A second SIGINT killed every instance: the exit code says so. */
  let forced = false
  let started = false
  // Watchers (closed before the instances stop, so that nothing starts a change) and listeners
  // (closed after, so that status answers while the instances stop), in the order opened.
  const watchers: [what: string, close: Close][] = []
  const listeners: [what: string, close: Close][] = []

  /**
   * Stops everything, once (later calls join the first), and never rejects: a step that
   * throws is logged, the others still run, and the exit code becomes 1.
   */
  const shutdown = (why: string): Promise<void> =>
    (stopping ??= (async () => {
      let failed = false
      const step = async (what: string, fn: () => unknown) => {
        try {
          await fn()
        } catch (err) {
          failed = true
          log.error({ event: 'shutdown' }, `shutdown: ${what} failed: ${errorMessage(err)}`)
        }
      }
      log.info(
        { event: 'shutdown' },
        `shutting down (${why}): stopping instances in reverse dependency order`,
      )
      await step('systemd notification', () => notifier.stopping())
      await step('the monitor', () => monitor.stop())
      for (const [what, close] of watchers) await step(what, close)
      // An active node hands over first (a standby takes over within pollMs); then it stops
      // competing, so that it is not promoted while it goes down.
      await step('leaving the cluster', () => ha?.leave())
      await step('stopping the instances', () => reconciler.shutdown())
      for (const [what, close] of deps.closeAfterInstances) await step(what, close)
      for (const [what, close] of listeners) await step(what, close)
      for (const [what, close] of deps.closeLast) await step(what, close)
      await step('systemd notification', () => notifier.close())
      log.info({ event: 'shutdown' }, 'all instances stopped; exiting')
      await step('the log', () => logs.close())
      resolveDone(forced || failed ? 1 : 0)
    })())

  /**
   * Registers what shutdown must close: a `watcher` (the config watcher, cluster upgrade
   * requests) before the instances stop, a `listener` (control socket, HTTP, agent) after.
   * Something opened once a shutdown has begun is closed at once.
   */
  const open = (kind: 'watcher' | 'listener', what: string, close: Close): void => {
    if (stopping) {
      void Promise.resolve()
        .then(close)
        .catch((err: unknown) =>
          log.error({ event: 'shutdown' }, `shutdown: ${what} failed: ${errorMessage(err)}`),
        )
      return
    }
    ;(kind === 'watcher' ? watchers : listeners).push([what, close])
  }

  /**
   * Changes of what runs wait for the start: until then a previous supervisor's leftovers may
   * still hold the ports (they are terminated first), and a shutdown refuses them.
   */
  const mayChange = (what: string) => {
    if (stopping) throw new TandemError('EBUSY', `the supervisor is shutting down: no ${what}`)
    if (!started)
      throw new TandemError(
        'EBUSY',
        `the supervisor is still starting (ending what a previous one left running): no ${what} yet; try again in a moment`,
      )
  }

  const act = async (body: Record<string, unknown>, action: (ids: string[]) => Promise<void>) => {
    mayChange('operator action')
    const ids = resolveTargets(targetsOf(body), planInstances(reconciler.plan))
    const acting = action(ids)
    // The action changed "stopped by hand" synchronously: persist it before waiting on processes.
    overrides.write(reconciler.stoppedByOperator)
    await acting
    overrides.write(reconciler.stoppedByOperator)
    return { instances: reconciler.status().filter((s) => ids.includes(s.id)) }
  }

  const rolloutNow = async (
    what: string,
    options: RolloutOptions & { handOver?: boolean },
    emit: (e: RolloutEvent) => void,
  ): Promise<RolloutResult> => {
    // A config that does not validate changes nothing (loadConfig throws ECONFIG).
    const next = deps.loadConfig(plan.configFile)
    if (next.stateDir !== plan.stateDir)
      throw new TandemError(
        'EUSAGE',
        `stateDir cannot change while running (${plan.stateDir} -> ${next.stateDir}): restart the supervisor`,
      )
    for (const c of options.components ?? [])
      if (!next.components.some((x) => x.name === c))
        throw new TandemError(
          'ETARGET',
          `unknown component "${c}"; expected one of ${next.components.map((x) => x.name).join(', ')}`,
        )
    for (const key of ['logs', 'metrics', 'control', 'node', 'ha'] as const)
      if (!isDeepStrictEqual(next[key], plan[key]))
        log.warn(
          { event: 'rollout' },
          `${what}: the change of "${key}" takes effect at the next supervisor start`,
        )
    // Hooks take the new config at once: the rollout's own events already run the new ones.
    if (deps.hooks && !isDeepStrictEqual(next.hooks, hooks)) {
      const { kept, added, removed } = deps.hooks.replace(next.hooks)
      hooks = next.hooks
      log.info(
        { event: 'hook' },
        `${what}: hooks changed: ${added} new or changed, ${removed} changed or removed, ${kept} kept as they were`,
      )
    }
    log.info({ event: 'rollout', phase: 'begin' }, `${what} of ${plan.configFile} begins`)
    const { handOver, ...rest } = options
    const exclusively = handOver ? handOverFirst(deps.exclusive) : deps.exclusive
    return await rollout(reconciler, next, { ...rest, exclusive: exclusively }, deps.clock, (e) => {
      if (e.phase === 'added' || e.phase === 'removed') monitor.sync()
      const { message, ...fields } = e
      ;(e.phase === 'failed' ? log.error : log.info).call(log, fields, message)
      emit(e)
    })
  }
  const instanceFields: InstanceFields = (id) => {
    const i = reconciler.instances.get(id)
    return i
      ? { component: i.spec.component, instance: i.spec.index, port: i.spec.port, childPid: i.pid }
      : {}
  }
  const publish = (e: EventInput) => void events.publish(e)
  // Operator restarts and rollouts change what runs one at a time, in the order asked.
  const changes = new ChangeQueue()
  const serially = <T>(fn: () => Promise<T>): Promise<T> => changes.run(fn)
  // One rollout at a time: an upgrade or reload while another runs is refused, not interleaved.
  let rolling: string | undefined
  const runRollout = async (
    what: string,
    options: RolloutOptions & { handOver?: boolean },
    emit: (e: RolloutEvent) => void = () => {},
  ): Promise<RolloutResult> => {
    mayChange(what)
    if (rolling)
      throw new TandemError('EBUSY', `${rolling} is running; try again when it has finished`)
    rolling = `${what === 'upgrade' ? 'an' : 'a'} ${what} started at ${new Date(deps.clock.now()).toISOString()}`
    if (what === 'reload') notifier.reloading()
    try {
      return await serially(() =>
        withRolloutEvents(what, plan.configFile, publish, instanceFields, (progress) =>
          rolloutNow(what, options, (e) => {
            progress(e)
            emit(e)
          }),
        ),
      )
    } finally {
      monitor.sync()
      overrides.write(reconciler.stoppedByOperator)
      rolling = undefined
      if (what === 'reload') notifier.reloaded()
    }
  }
  const reload = (why: string) =>
    runRollout('reload', { all: false, addRemove: true }).catch((err: unknown) =>
      log.error({ event: 'rollout' }, `reload (${why}) failed: ${errorMessage(err)}`),
    )

  const haOnly = (what: string): HaPart => {
    if (ha) return ha
    throw new TandemError(
      'EUSAGE',
      `${what} needs an "ha" section with backend {"type": "external"} in ${plan.configFile}: this node is standalone`,
    )
  }

  const switchover = async () => {
    if (!ha) {
      throw new TandemError(
        'EUSAGE',
        `switchover needs an "ha" section in ${plan.configFile}: this node is standalone`,
      )
    }
    if (plan.ha!.backend.type === 'external') {
      throw new TandemError(
        'EUSAGE',
        `switchover is not for ha.backend {"type": "external"}: the cluster manager decides which node is active (pcs resource move)`,
      )
    }
    if (ha.isActive()) {
      const epoch = ha.status().epoch
      publish({ event: 'switchover', message: `switchover: handing over epoch ${epoch}`, epoch })
    }
    const { epoch } = await ha.switchover()
    const { name, backend: where, renewMs, selfFenceMs, takeoverMs, pollMs } = plan.ha!
    // What the CLI needs to follow the handover, so that it need not load the config.
    return {
      released: epoch,
      node: plan.node,
      cluster: name,
      backend: where,
      renewMs,
      selfFenceMs,
      takeoverMs,
      pollMs,
    }
  }

  const reopenLogs = (why: string) => {
    logs.reopen()
    log.info({ event: 'log-reopen' }, `log files reopened (${why})`)
    return { ok: true, files: logs.status().map((w) => w.path) }
  }

  let interrupts = 0
  /** SIGTERM, SIGINT (twice: kill every instance now), SIGHUP (reload), SIGUSR2 (reopen logs). */
  const signal = (s: NodeJS.Signals): void => {
    switch (s) {
      case 'SIGHUP':
        log.info({ event: 'signal' }, 'SIGHUP: reloading the config')
        void reload('SIGHUP')
        return
      case 'SIGUSR2':
        reopenLogs('SIGUSR2')
        return
      case 'SIGINT':
        if (++interrupts > 1) {
          // The stop sequence goes on and finishes at once, since every group is now dead.
          forced = true
          log.warn({ event: 'shutdown' }, 'second SIGINT: killing every instance now')
          for (const i of reconciler.instances.values()) i.killNow()
        }
        break
    }
    void shutdown(s)
  }

  return {
    status,
    /** Every wanted instance is ready (or a one-shot that completed). */
    ready: allWantedReady,
    leader: () => (ha ? ha.leader() : { node: plan.node, epoch: 0 }),
    stopInstances: (body: Record<string, unknown>) =>
      act(body, (ids) => reconciler.stopInstances(ids)),
    startInstances: (body: Record<string, unknown>) =>
      act(body, (ids) => reconciler.startInstances(ids)),
    restartInstances: (body: Record<string, unknown>) =>
      act(body, (ids) => serially(() => reconciler.restartInstances(ids))),
    upgrade: (body: Record<string, unknown>, emit?: (e: RolloutEvent) => void) =>
      runRollout(
        'upgrade',
        {
          all: body.all === true,
          addRemove: false,
          ...(Array.isArray(body.components) && body.components.length
            ? { components: body.components.map(String) }
            : {}),
        },
        emit,
      ),
    reload: (emit?: (e: RolloutEvent) => void) =>
      runRollout('reload', { all: false, addRemove: true }, emit),
    /** A reload asked by a signal or the config watcher: failures are logged, not thrown. */
    reloadQuietly: reload,
    /** This node's part of a cluster upgrade: active-only instances after handing over. */
    clusterUpgradePart: (req: { all: boolean; components: string[] }) =>
      runRollout('upgrade', {
        all: req.all,
        addRemove: false,
        handOver: true,
        ...(req.components.length ? { components: req.components } : {}),
      }),
    switchover,
    promote: () => haOnly('promote').promote(),
    demote: () => haOnly('demote').demote(),
    reopenLogs,
    signal,
    shutdown,
    open,
    /** A shutdown has begun (a start-up that sees it goes no further). */
    get stopping(): boolean {
      return stopping !== undefined
    },
    /**
     * Starts supervising: the first reconcile, systemd's deadlines, the cluster, the monitor.
     * Once; nothing after a shutdown began.
     */
    start(): void {
      if (started || stopping) return
      started = true
      reconciler.schedule()
      notifier.start()
      ha?.start()
      monitor.start()
    },
    /** Resolves with the exit code once shutdown has finished. */
    done,
  }
}
