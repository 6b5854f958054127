import { watch } from 'chokidar'
import { mkdirSync } from 'node:fs'
import { isDeepStrictEqual } from 'node:util'
import type { Logger } from 'pino'
import { loadConfig } from '../config/load-config.js'
import { planInstances, planPorts, type Plan } from '../config/plan.js'
import { eventLoopLag, startHttpEndpoints } from '../control/http-endpoints.js'
import { startLbAgent } from '../control/lb-agent.js'
import { startControlServer, Streamed } from '../control/server.js'
import type { StatusReply, SupervisorSelf } from '../status.js'
import { checkSocketPath, socketPath } from '../control/socket-path.js'
import { errorMessage, TandemError } from '../errors.js'
import { ThreadedLog } from '../logging/threaded-log.js'
import { groupUsageSampler } from '../process/group-usage.js'
import { PidRecords, terminateLeftovers } from '../process/pid-records.js'
import { describePortHolder, ephemeralPortWarning, portFree } from '../process/port-holder.js'
import { HeldSockets } from '../process/held-sockets.js'
import { processStartTime } from '../process/process-start-time.js'
import { cgroupSpawner } from '../process/cgroup-spawn.js'
import { runCommand } from '../process/run-command.js'
import { hookExec } from '../process/exec-chain.js'
import { spawnChild } from '../process/spawn-child.js'
import { startWatchdog } from '../process/watchdog.js'
import { systemClock } from '../seams/clock.js'
import type { InstanceEvent } from './instance.js'
import { ChangeQueue } from './change-queue.js'
import { Monitor } from './monitor.js'
import { Overrides } from './overrides.js'
import { probeOnce } from './readiness.js'
import { Reconciler } from './reconciler.js'
import { EventStream, fromInstanceEvent } from './event-stream.js'
import { acquireStateLock } from './state-lock.js'
import { HaNode } from '../ha/ha-node.js'
import { joinBackend } from '../ha/backend.js'
import { ExternalRole } from '../ha/external-role.js'
import { Lease } from '../ha/lease.js'
import { watchUpgradeRequests } from '../ha/cluster-upgrade.js'
import { RollLocks } from '../ha/roll-lock.js'
import { resolveTargets } from './targets.js'
import { rollout, type RolloutEvent, type RolloutOptions, type RolloutResult } from './rollout.js'
import { describeExit } from './instance.js'
import { takeNotifyEnv } from '../ops/sd-notify.js'
import { serviceTimeouts } from '../ops/service-timeouts.js'
import { startSystemdNotifier } from '../ops/systemd-notifier.js'
import { unitTimeouts } from '../ops/systemd-unit.js'

export interface SupervisorOptions {
  configPath: string
  /** Force pretty (true) or JSON (false) output; default: pretty on a TTY. */
  pretty?: boolean
}

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

const logEvent = (log: Logger, e: InstanceEvent) => {
  const { event, id, exit, stderrTail, ...rest } = e
  const fields = {
    event,
    ...rest,
    ...(exit ? { exit } : {}),
    ...(stderrTail?.length ? { stderrTail } : {}),
  }
  switch (event) {
    case 'failed':
      return log.error(fields, `${id} failed: ${e.reason}`)
    case 'exited':
      return exit && exit.reason !== 'exited'
        ? log.warn(fields, `${id} did not start: ${describeExit(exit)}`)
        : log.warn(fields, `${id} exited: ${exit ? describeExit(exit) : ''}`)
    case 'backoff':
      return log.warn(fields, `${id} restarting in ${e.delayMs} ms`)
    case 'spawned':
      return log.info(fields, `${id} spawned (pid ${e.childPid})`)
    case 'restart':
      return log.warn(fields, `${id} restarting: ${e.reason}`)
    case 'reactivated':
      return log.warn(
        fields,
        `${id} active again in epoch ${e.epoch} after its deadline had lapsed for ${e.lapsedMs} ms (a lease message came late)`,
      )
    default:
      return log.info(fields, `${id} ${event}`)
  }
}

/** A close that may be asked for twice (by shutdown, and by a start-up it cut short). */
const once = (close: () => Promise<void>): (() => Promise<void>) => {
  let closing: Promise<void> | undefined
  return () => (closing ??= close())
}

/**
 * `watchConfig`: a change of the config file reloads it (after writes have settled: editors save
 * in several steps). Polling, so that it also works on NFS and zFS.
 */
const watchConfig = (file: string, reload: (why: string) => Promise<unknown>, log: Logger) => {
  const watcher = watch(file, {
    ignoreInitial: true,
    usePolling: true,
    interval: 500,
    awaitWriteFinish: { stabilityThreshold: 300, pollInterval: 100 },
  })
  watcher.on('change', () => {
    log.info({ event: 'signal' }, `${file} changed: reloading`)
    void reload('config file changed')
  })
  watcher.on('error', (err) =>
    log.error({ event: 'rollout' }, `watching ${file}: ${errorMessage(err)}`),
  )
  return watcher
}

/**
 * `tandem start`: the composition root. Builds the real clock, spawner, pid records, watchdog,
 * logger and control server around a Reconciler, runs until SIGTERM/SIGINT or `tandem shutdown`,
 * and resolves with the exit code. A ConfigError or ELOCKED is thrown before anything starts.
 */
export const runSupervisor = async (options: SupervisorOptions): Promise<number> => {
  const plan: Plan = loadConfig(options.configPath)
  checkSocketPath(plan)
  // Taken out of the environment before anything is spawned: only tandem speaks for the service.
  const notifyEnv = takeNotifyEnv(process.env)
  // A backend that cannot be used (the shared dir or etcd unreachable, another cluster's, a TLS
  // file missing) starts nothing: ECLUSTER or ECONFIG.
  let backendProblem: (m: string) => void = (m) => process.stderr.write(`tandem: ${m}\n`)
  const backend = plan.ha
    ? await joinBackend(plan.ha, { onProblem: (m) => backendProblem(m), clock: systemClock })
    : undefined
  mkdirSync(plan.stateDir, { recursive: true, mode: 0o700 })
  // Until the log is open, problems go to stderr (the lock is taken before the log is opened:
  // a second supervisor must not write to this one's log).
  let lockProblem: (m: string) => void = (m) => process.stderr.write(`tandem: ${m}\n`)
  const releaseLock = await acquireStateLock(plan.stateDir, (m) => lockProblem(m))
  // Log file problems go to stderr at once (the file is what fails) and into the log.
  let logProblem: (m: string) => void = () => {}
  const unified = new ThreadedLog(plan.logs, {
    node: plan.node,
    pretty: options.pretty,
    onProblem: (m) => {
      process.stderr.write(`tandem: ${m}\n`)
      logProblem(m)
    },
  })
  const log = unified.logger
  logProblem = (m) => log.warn({ event: 'log-file' }, m)
  lockProblem = (m) => log.error({ event: 'lock' }, m)
  backendProblem = (m) => log.error({ event: 'ha' }, m)
  // Every state transition and supervisor event, numbered: hooks, `tandem events` and the
  // status page read it.
  const events = new EventStream({
    node: plan.node,
    clock: systemClock,
    onListenerError: (err) =>
      log.error({ event: 'events' }, `an event consumer failed: ${errorMessage(err)}`),
  })
  const pidRecords = new PidRecords(plan.stateDir)
  const watchdog = startWatchdog((m) => log.error({ event: 'watchdog' }, m))
  const overrides = new Overrides(plan.stateDir)
  let ha: HaNode | undefined
  // Listening sockets of instances with `socket`: held across their restarts, closed when the
  // instance no longer wants one (see the 'reconciled' listener below) and at shutdown.
  const heldSockets = new HeldSockets()
  const reconciler = new Reconciler(
    plan,
    {
      clock: systemClock,
      spawn: cgroupSpawner(spawnChild),
      portFree,
      sockets: heldSockets,
      describePortHolder,
      random: Math.random,
      baseEnv: process.env,
      pipe: (spec, stream, childPid) =>
        unified.pipe({
          component: spec.component,
          instance: spec.index,
          port: spec.port,
          childPid,
          stream,
        }),
      logFlow: unified,
      maxLineBytes: plan.logs.maxLineBytes,
      tracked: (spec, pid) => {
        watchdog.watch(pid, spec.stop.signal as NodeJS.Signals, spec.stop.timeoutMs)
        pidRecords.add({
          id: spec.id,
          pid,
          startTime: processStartTime(pid) ?? '',
          port: spec.port,
          stopSignal: spec.stop.signal as NodeJS.Signals,
          stopTimeoutMs: spec.stop.timeoutMs,
        })
      },
      untracked: (spec, pid) => {
        watchdog.unwatch(pid)
        pidRecords.remove(spec.id)
      },
      role: () => ha?.roleFor() ?? { role: 'active', epoch: 0 },
      ...(plan.ha
        ? {
            nodeRole: () => ha?.roleSnapshot() ?? { active: false, epoch: 0 },
            activate: (inst, epoch) => ha?.activate(inst, epoch) ?? false,
          }
        : {}),
    },
    overrides.read((m) => log.warn({ event: 'overrides' }, m)),
  )
  if (plan.ha && backend) {
    const timings = plan.ha
    ha = new HaNode({
      ha: plan.ha,
      node: plan.node,
      role: backend.store
        ? new Lease({
            store: backend.store,
            clock: systemClock,
            timings,
            cluster: plan.ha.name,
            node: plan.node,
          })
        : new ExternalRole({ clock: systemClock, timings, stateDir: plan.stateDir }),
      kv: backend.kv,
      backend: () => backend.status(),
      reconciler: () => reconciler,
      log,
      clock: systemClock,
      watchdog,
      runCommand: (inst, req) => {
        const id = `${inst.id}:activate`
        const stop = { signal: 'SIGTERM' as const, timeoutMs: 2_000 }
        return runCommand(
          { ...req, env: { ...process.env, ...req.env }, killAfterMs: stop.timeoutMs },
          {
            clock: systemClock,
            // As the instance's user, with its umask and limits: a hook has no more privilege.
            spawn: (r) => spawnChild({ ...r, exec: hookExec(inst.spec.exec) }),
            pipe: (stream, childPid) =>
              unified.pipe({
                component: inst.spec.component,
                instance: inst.spec.index,
                port: inst.spec.port,
                childPid,
                stream,
              }),
            tracked: (pid) => {
              watchdog.watch(pid, stop.signal, stop.timeoutMs)
              pidRecords.add({
                id,
                pid,
                startTime: processStartTime(pid) ?? '',
                port: undefined,
                stopSignal: stop.signal,
                stopTimeoutMs: stop.timeoutMs,
              })
            },
            untracked: (pid) => {
              watchdog.unwatch(pid)
              pidRecords.remove(id)
            },
          },
        )
      },
    })
  }
  // Instances of components that run on every node restart one roll slot at a time across
  // the cluster (rollout.maxUnavailable slots in the shared dir or etcd; none with an external
  // backend, whose cluster manager restarts what it wants).
  const rollLocks =
    plan.ha && backend?.slotStore
      ? new RollLocks(plan.ha, plan.node, systemClock, backend.slotStore)
      : undefined
  const exclusive: RolloutOptions['exclusive'] = rollLocks
    ? (c, fn) =>
        c.instances[0]?.runOn === 'all'
          ? rollLocks.hold(c.name, c.rollout.maxUnavailable, fn, (m) =>
              log.info({ event: 'rollout', phase: 'waiting', component: c.name }, m),
            )
          : fn()
    : undefined
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
  const monitor = new Monitor(() => reconciler.instances.values(), {
    intervalMs: plan.metrics.intervalMs,
    idleIntervalMs: plan.metrics.idleIntervalMs,
    clock: systemClock,
    sample: groupUsageSampler({ monotonic: () => systemClock.monotonic() }),
    probe: probeOnce,
    onError: (m) => log.error({ event: 'monitor' }, m),
  })
  const wanted = () => [...reconciler.instances.values()].filter((i) => reconciler.desired(i.id))
  // A one-shot instance that ended cleanly (a migration, say) is done, not missing.
  const allWantedReady = () => wanted().every((i) => i.state === 'ready' || i.completed)
  let allReady = false
  // Under systemd (Type=notify): READY=1, STATUS=, STOPPING=1, WATCHDOG=1.
  const timeouts = serviceTimeouts(plan)
  const notifier = startSystemdNotifier(
    notifyEnv && {
      notify: notifyEnv,
      pid: process.pid,
      clock: systemClock,
      env: process.env,
      readyWithinMs: timeouts.readyWithinMs,
      startTimeoutMs: unitTimeouts(timeouts).startSec * 1000,
      sources: {
        instances: () =>
          // A one-shot that ran to its clean end is done (as for allWantedReady): neither ready
          // nor given up. `completed` is set only in the stopped state and cleared by a start.
          [...reconciler.instances.values()].map((i) => ({
            id: i.id,
            state: i.state,
            wanted: reconciler.desired(i.id),
            completed: i.completed,
            gaveUp:
              i.state === 'failed' ||
              (i.state === 'stopped' && !i.completed && reconciler.settled(i.id)),
          })),
        role: () => {
          const r = ha?.roleFor()
          return r && `${r.role}, epoch ${r.epoch}`
        },
      },
      info: (m) => log.info({ event: 'systemd' }, m),
      warn: (m) => log.warn({ event: 'systemd' }, m),
      error: (m) => log.error({ event: 'systemd' }, m),
    },
  )
  reconciler.on('event', (e) => {
    logEvent(log, e)
    const published = fromInstanceEvent(e)
    if (published) events.publish(published)
    monitor.changed()
    const nowReady = wanted().length > 0 && allWantedReady()
    if (nowReady && !allReady)
      log.info({ event: 'all-ready' }, `all ${wanted().length} wanted instances are ready`)
    allReady = nowReady
    notifier.update()
  })
  // A held socket lives as long as its instance wants to run: an instance that left the plan,
  // was stopped by an operator or failed (given up) refuses connections again, rather than
  // letting them wait in a backlog that no process will accept from.
  reconciler.on('reconciled', () =>
    heldSockets.releaseUnless((id) => {
      const inst = reconciler.instances.get(id)
      return inst !== undefined && inst.state !== 'failed' && reconciler.desired(id)
    }),
  )
  ha?.lease.on('active', () => notifier.update())
  ha?.lease.on('standby', () => notifier.update())
  const statusReply = (): StatusReply => ({
    node: plan.node,
    role: ha ? (ha.isActive() ? 'active' : 'standby') : 'standalone',
    ...(ha ? { cluster: ha.status() } : {}),
    pid: process.pid,
    config: plan.configFile,
    instances: reconciler.status(),
    logs: unified.status(),
    supervisor: self(),
  })
  /** The supervisor's own figures (status, /health, /metrics). */
  const self = (): SupervisorSelf => ({
    rssBytes: process.memoryUsage().rss,
    eventLoopLagMs: eventLoopLag(),
    uptimeMs: Math.round(process.uptime() * 1000),
  })
  // The lag is measured from the first reader on (status, /health, /metrics), not from the
  // start: its histograms wake the loop every 20 ms, which is most of an idle supervisor's CPU
  // (0.21 % of a core against 0.03 % without, bench:footprint).

  let resolveDone!: (code: number) => void
  const done = new Promise<number>((r) => (resolveDone = r))
  let stopping: Promise<void> | undefined
  /** A second SIGINT killed every instance: the exit code says so. */
  let forced = false
  // What start-up has opened so far: a shutdown may come at any point of it (a signal, a POST
  // /shutdown as soon as the control socket listens) and closes what is there.
  const open: {
    control?: () => Promise<void>
    http?: () => Promise<void>
    agent?: () => Promise<void>
    clusterRequests?: { close(): Promise<void> }
    configWatcher?: { close(): Promise<void> }
    signals?: () => void
  } = {}
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
      await step('the config watcher', () => open.configWatcher?.close())
      await step('cluster upgrade requests', () => open.clusterRequests?.close())
      // An active node hands over first (a standby takes over within pollMs); then it stops
      // competing, so that it is not promoted while it goes down.
      await step('leaving the cluster', () => ha?.leave())
      await step('stopping the instances', () => reconciler.shutdown())
      await step('the held sockets', () => heldSockets.close())
      await step('the control socket', () => open.control?.())
      await step('the HTTP endpoints', () => open.http?.())
      await step('the load balancer agent', () => open.agent?.())
      await step('the watchdog', () => watchdog.close())
      await step('the cluster backend', () => backend?.close())
      await step('the state lock', () => releaseLock())
      await step('systemd notification', () => notifier.close())
      log.info({ event: 'shutdown' }, 'all instances stopped; exiting')
      await step('the log', () => unified.close())
      open.signals?.()
      resolveDone(forced || failed ? 1 : 0)
    })())

  const act = async (body: Record<string, unknown>, action: (ids: string[]) => Promise<void>) => {
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
    const next = loadConfig(plan.configFile)
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
    log.info({ event: 'rollout', phase: 'begin' }, `${what} of ${plan.configFile} begins`)
    const { handOver, ...rest } = options
    const exclusively = handOver ? handOverFirst(exclusive) : exclusive
    return await rollout(
      reconciler,
      next,
      { ...rest, exclusive: exclusively },
      systemClock,
      (e) => {
        if (e.phase === 'added' || e.phase === 'removed') monitor.sync()
        const { message, ...fields } = e
        ;(e.phase === 'failed' ? log.error : log.info).call(log, fields, message)
        emit(e)
      },
    )
  }
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
    if (rolling)
      throw new TandemError('EBUSY', `${rolling} is running; try again when it has finished`)
    rolling = `${what === 'upgrade' ? 'an' : 'a'} ${what} started at ${new Date().toISOString()}`
    if (what === 'reload') notifier.reloading()
    try {
      return await serially(() => rolloutNow(what, options, emit))
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

  /**
   * A listener that cannot start ends the start: nothing runs yet, so leave nothing behind
   * either (the listeners already open, given newest first, then the watchdog, log and lock).
   */
  const giveUp =
    (...opened: (() => Promise<void>)[]) =>
    async (err: unknown): Promise<never> => {
      for (const close of opened) await close()
      heldSockets.close()
      await watchdog.close()
      backend?.close()
      await unified.close()
      await releaseLock()
      throw err
    }
  const haOnly = (what: string): HaNode => {
    if (ha) return ha
    throw new TandemError(
      'EUSAGE',
      `${what} needs an "ha" section with backend {"type": "external"} in ${plan.configFile}: this node is standalone`,
    )
  }
  open.control = once(
    await startControlServer(
      socketPath(plan.stateDir),
      {
        'GET /status': statusReply,
        'POST /logs/reopen': () => {
          unified.reopen()
          log.info({ event: 'log-reopen' }, 'log files reopened (tandem logs --reopen)')
          return { ok: true, files: unified.status().map((w) => w.path) }
        },
        'POST /upgrade': (b) =>
          new Streamed((emit) =>
            runRollout(
              'upgrade',
              {
                all: b.all === true,
                addRemove: false,
                ...(Array.isArray(b.components) && b.components.length
                  ? { components: b.components.map(String) }
                  : {}),
              },
              emit,
            ),
          ),
        'POST /reload': () =>
          new Streamed((emit) => runRollout('reload', { all: false, addRemove: true }, emit)),
        'POST /stop': (b) => act(b, (ids) => reconciler.stopInstances(ids)),
        'POST /start': (b) => act(b, (ids) => reconciler.startInstances(ids)),
        'POST /restart': (b) => act(b, (ids) => serially(() => reconciler.restartInstances(ids))),
        'POST /switchover': async () => {
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
        },
        'POST /promote': () => haOnly('promote').promote(),
        'POST /demote': () => haOnly('demote').demote(),
        'POST /shutdown': () => {
          void shutdown('tandem shutdown')
          return { ok: true, pid: process.pid }
        },
      },
      (m) => log.error({ event: 'control' }, m),
    ).catch(giveUp()),
  )
  const http = plan.control.http
  open.http = http
    ? once(
        await startHttpEndpoints(
          http,
          {
            status: statusReply,
            ready: allWantedReady,
            leader: () => (ha ? ha.leader() : { node: plan.node, epoch: 0 }),
            self,
          },
          (m) => log.error({ event: 'control' }, m),
        ).catch(giveUp(open.control)),
      )
    : undefined
  const agent = plan.control.agent
  open.agent = agent
    ? once(
        await startLbAgent(agent, statusReply, (m) => log.error({ event: 'control' }, m)).catch(
          giveUp(...[open.http, open.control].filter((c) => c !== undefined)),
        ),
      )
    : undefined
  // A shutdown asked while the listeners were starting has closed what was open then.
  if (stopping) {
    await open.http?.()
    await open.agent?.()
    return done
  }

  let interrupts = 0
  const onSignal = (signal: NodeJS.Signals) => {
    if (signal === 'SIGINT' && ++interrupts > 1) {
      // The stop sequence goes on and finishes at once, since every group is now dead.
      forced = true
      log.warn({ event: 'shutdown' }, 'second SIGINT: killing every instance now')
      for (const i of reconciler.instances.values()) i.killNow()
    }
    void shutdown(signal)
  }
  const handlers: [NodeJS.Signals, () => void][] = [
    ['SIGTERM', () => onSignal('SIGTERM')],
    ['SIGINT', () => onSignal('SIGINT')],
    // Reload and log reopening arrive with later work; until then the signals must not kill us.
    [
      'SIGHUP',
      () => {
        log.info({ event: 'signal' }, 'SIGHUP: reloading the config')
        void reload('SIGHUP')
      },
    ],
    [
      'SIGUSR2',
      () => {
        unified.reopen()
        log.info({ event: 'log-reopen' }, 'SIGUSR2: log files reopened')
      },
    ],
  ]
  handlers.forEach(([s, h]) => process.on(s, h))
  open.signals = () => handlers.forEach(([s, h]) => process.off(s, h))

  log.info(
    {
      event: 'start',
      config: plan.configFile,
      stateDir: plan.stateDir,
      instances: planInstances(plan).length,
    },
    `tandem supervisor ${process.pid} starting ${planInstances(plan).length} instances from ${plan.configFile}`,
  )
  const portWarning = ephemeralPortWarning(planPorts(plan))
  if (portWarning) log.warn({ event: 'config-warning' }, portWarning)
  const leftovers = await terminateLeftovers(pidRecords.read(), systemClock)
  for (const r of leftovers) {
    log.warn(
      { event: 'leftover', id: r.id, childPid: r.pid, port: r.port },
      `terminated leftover ${r.id} (pid ${r.pid}, port ${r.port ?? '-'}) of a previous supervisor`,
    )
  }
  // Asked to stop while leftovers were terminated: nothing was started; nothing starts now.
  if (stopping) return done
  reconciler.schedule()
  notifier.start()
  ha?.start()
  open.clusterRequests =
    ha && backend?.kv
      ? watchUpgradeRequests(
          backend.kv,
          systemClock,
          plan.node,
          async (req) => {
            log.info(
              { event: 'cluster-upgrade', id: req.id, by: req.by },
              `cluster upgrade ${req.id} requested by ${req.by}: doing this node's part`,
            )
            // Active-only instances are replaced while this node is a standby (handOver).
            return runRollout('upgrade', {
              all: req.all,
              addRemove: false,
              handOver: true,
              ...(req.components.length ? { components: req.components } : {}),
            })
          },
          (m) => log.error({ event: 'cluster-upgrade' }, m),
        )
      : undefined
  monitor.start()
  open.configWatcher = plan.watchConfig ? watchConfig(plan.configFile, reload, log) : undefined
  return done
}
