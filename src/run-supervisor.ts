import { join } from 'node:path'
import { watch } from 'chokidar'
import { mkdirSync } from 'node:fs'
import type { Logger } from 'pino'
import { loadConfig } from './config/load-config.js'
import { planInstances, planPorts, type Plan } from './config/plan.js'
import { eventLoopLag, startHttpEndpoints } from './control/http-endpoints.js'
import { startLbAgent } from './control/lb-agent.js'
import { startControlServer, Streamed } from './control/server.js'
import type { SupervisorSelf, WriterStatus } from './status.js'
import type { EventInput } from './events.js'
import { eventsRoute } from './control/events-route.js'
import { publishRoleEvents } from './ha/role-events.js'
import { logHealthEvents } from './logging/log-health-events.js'
import { streamEventLogger } from './supervisor/event-log.js'
import { hookCommand, runTracked, type TrackedCommandDeps } from './supervisor/hook-command.js'
import { HookRunner } from './supervisor/hook-runner.js'
import { resolveTargets } from './supervisor/targets.js'
import { checkSocketPath, socketPath } from './control/socket-path.js'
import { errorMessage } from './errors.js'
import { ThreadedLog } from './logging/threaded-log.js'
import { groupUsageSampler } from './process/group-usage.js'
import { PidRecords, terminateLeftovers } from './process/pid-records.js'
import { describePortHolder, ephemeralPortWarning, portFree } from './process/port-holder.js'
import { HeldSockets } from './process/held-sockets.js'
import { processStartTime } from './process/process-start-time.js'
import { cgroupSpawner } from './process/cgroup-spawn.js'
import { hookExec } from './process/exec-chain.js'
import { spawnChild } from './process/spawn-child.js'
import { FifoPipes } from './process/fifo-pipes.js'
import { startWatchdog } from './process/watchdog.js'
import { systemClock } from './seams/clock.js'
import { HeapTrim } from './seams/heap-trim.js'
import { Monitor } from './supervisor/monitor.js'
import { Overrides } from './supervisor/overrides.js'
import { probeOnce } from './supervisor/readiness.js'
import { Reconciler } from './supervisor/reconciler.js'
import { EventStream } from './supervisor/event-stream.js'
import { MetricHistory } from './supervisor/metric-history.js'
import { writeHttpToken } from './control/http-token.js'
import { createSupervisor } from './supervisor/app.js'
import { acquireStateLock } from './supervisor/state-lock.js'
import { HaNode } from './ha/ha-node.js'
import { joinBackend } from './ha/backend.js'
import { ExternalRole } from './ha/external-role.js'
import { Lease } from './ha/lease.js'
import { watchUpgradeRequests } from './ha/cluster-upgrade.js'
import { RollLocks } from './ha/roll-lock.js'
import type { RolloutOptions } from './supervisor/rollout.js'
import { takeNotifyEnv } from './ops/sd-notify.js'
import { serviceTimeouts } from './ops/service-timeouts.js'
import { startSystemdNotifier } from './ops/systemd-notifier.js'
import { unitTimeouts } from './ops/systemd-unit.js'

export interface SupervisorOptions {
  configPath: string
  /** Force pretty (true) or JSON (false) output; default: pretty on a TTY. */
  pretty?: boolean
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
  let logStatus: (s: WriterStatus[]) => void = () => {}
  const unified = new ThreadedLog(plan.logs, {
    node: plan.node,
    pretty: options.pretty,
    onProblem: (m) => {
      process.stderr.write(`tandem: ${m}\n`)
      logProblem(m)
    },
    onStatus: (s) => logStatus(s),
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
  const publish = (e: EventInput) => void events.publish(e)
  events.subscribe(streamEventLogger(log))
  logStatus = logHealthEvents(publish)
  const pidRecords = new PidRecords(plan.stateDir)
  const watchdog = startWatchdog((m) => log.error({ event: 'watchdog' }, m))
  // Real pipes for the output of instances and hooks (cheaper per line than Node's
  // socketpairs, and a child can open /dev/stdout).
  const pipes = new FifoPipes({
    dir: join(plan.stateDir, 'pipes'),
    keep: Math.min(
      64,
      Math.max(16, 4 * plan.components.reduce((n, c) => n + c.instances.length, 0)),
    ),
    onProblem: (m) => log.warn({ event: 'pipes' }, m),
  }).start()
  // Hooks (event hooks, activation hooks) run as tracked commands: pid record, watchdog, log.
  const commandDeps: TrackedCommandDeps = {
    clock: systemClock,
    spawn: (r) => spawnChild({ ...r, pipes }),
    pipe: (source) => unified.pipe(source),
    pidRecords,
    watchdog,
  }
  const hooks = new HookRunner(plan.hooks, {
    log,
    run: hookCommand({ ...commandDeps, baseEnv: process.env, configFile: plan.configFile }),
  })
  events.subscribe(hooks.listener)
  const overrides = new Overrides(plan.stateDir)
  let ha: HaNode | undefined
  // Listening sockets of instances with `socket`: held across their restarts, closed when the
  // instance no longer wants one (the reconciler releases it) and at shutdown.
  const heldSockets = new HeldSockets()
  const reconciler = new Reconciler(
    plan,
    {
      clock: systemClock,
      spawn: cgroupSpawner((r) => spawnChild({ ...r, pipes })),
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
        pidRecords.remove(pid)
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
      // As the instance's user, with its umask and limits (a hook has no more privilege), its
      // output under the instance's name.
      runCommand: (inst, req) =>
        runTracked(
          commandDeps,
          `${inst.id}:activate`,
          { ...req, env: { ...process.env, ...req.env } },
          { component: inst.spec.component, instance: inst.spec.index, port: inst.spec.port },
          (r) => spawnChild({ ...r, pipes, exec: hookExec(inst.spec.exec) }),
        ),
    })
  }
  if (ha) publishRoleEvents(ha.lease, plan.ha!.name, publish)
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
  // The last hour of samples, for the status page's charts.
  const history = new MetricHistory({ clock: systemClock })
  const monitor = new Monitor(() => reconciler.instances.values(), {
    intervalMs: plan.metrics.intervalMs,
    idleIntervalMs: plan.metrics.idleIntervalMs,
    clock: systemClock,
    sample: groupUsageSampler({ monotonic: () => systemClock.monotonic() }),
    probe: probeOnce,
    onError: (m) => log.error({ event: 'monitor' }, m),
    history,
  })
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
  /** The supervisor's own figures (status, /health, /metrics). */
  const self = (): SupervisorSelf => ({
    rssBytes: process.memoryUsage().rss,
    // Measured from the first reader on (status, /health, /metrics), not from the start: its
    // histograms wake the loop every 20 ms, which is most of an idle supervisor's CPU (0.21 %
    // of a core against 0.03 % without, bench:footprint).
    eventLoopLagMs: eventLoopLag(),
    uptimeMs: Math.round(process.uptime() * 1000),
  })
  // The main thread's heap, kept level over months of running (see HeapTrim).
  const heapTrim = new HeapTrim().start()
  const app = createSupervisor({
    plan,
    log,
    clock: systemClock,
    events,
    reconciler,
    monitor,
    notifier,
    ...(ha ? { ha } : {}),
    overrides,
    logs: unified,
    loadConfig,
    ...(exclusive ? { exclusive } : {}),
    self,
    pid: process.pid,
    hooks,
    closeAfterInstances: [
      ['the held sockets', () => heldSockets.close()],
      ['the hooks', () => hooks.close()],
      ['the pipes made ahead', () => pipes.close()],
    ],
    closeLast: [
      ['the watchdog', () => watchdog.close()],
      ['the cluster backend', () => backend?.close()],
      ['the state lock', () => releaseLock()],
      ['the heap trim', () => heapTrim.stop()],
    ],
  })

  // Signals first: a SIGTERM during the rest of the start-up shuts down what is there.
  const signals: NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGUSR2']
  const handlers = signals.map((s) => [s, () => app.signal(s)] as const)
  handlers.forEach(([s, h]) => process.on(s, h))
  const exitCode = async (): Promise<number> => {
    const code = await app.done
    handlers.forEach(([s, h]) => process.off(s, h))
    return code
  }
  /** A listener that cannot start ends the start: what is open is closed, the error thrown. */
  const abandon = async (err: unknown): Promise<never> => {
    await app.shutdown(`start-up failed: ${errorMessage(err)}`)
    handlers.forEach(([s, h]) => process.off(s, h))
    throw err
  }

  const control = await startControlServer(
    socketPath(plan.stateDir),
    {
      'GET /status': app.status,
      'GET /events': eventsRoute({
        events,
        resolveTargets: (t) => resolveTargets(t, planInstances(reconciler.plan)),
        clock: systemClock,
        onCutOff: (m) => log.warn({ event: 'events' }, m),
      }),
      'POST /logs/reopen': () => app.reopenLogs('tandem logs --reopen'),
      'POST /upgrade': (b) => new Streamed((emit) => app.upgrade(b, emit)),
      'POST /reload': () => new Streamed((emit) => app.reload(emit)),
      'POST /stop': app.stopInstances,
      'POST /start': app.startInstances,
      'POST /restart': app.restartInstances,
      'POST /switchover': app.switchover,
      'POST /promote': app.promote,
      'POST /demote': app.demote,
      'POST /shutdown': () => {
        void app.shutdown('tandem shutdown')
        return { ok: true, pid: process.pid }
      },
    },
    (m) => log.error({ event: 'control' }, m),
  ).catch(abandon)
  app.open('listener', 'the control socket', control)
  const http = plan.control.http
  if (http) {
    const close = await startHttpEndpoints(
      http,
      {
        status: app.status,
        ready: app.ready,
        leader: app.leader,
        self,
      },
      (m) => log.error({ event: 'control' }, m),
      {
        events,
        history,
        clock: systemClock,
        pid: process.pid,
        node: plan.node,
        // A new token at each start; its file is the state dir's (0700), itself 0600.
        token: () => writeHttpToken(plan.stateDir).token,
        // The control socket's functions: the page acts as `tandem restart` etc. does.
        actions: {
          restart: app.restartInstances,
          stop: app.stopInstances,
          start: app.startInstances,
          switchover: app.switchover,
        },
        onAction: (r, m) =>
          (r.outcome === 'done' ? log.info : log.warn).call(log, { event: 'http-action', ...r }, m),
      },
    ).catch(abandon)
    app.open('listener', 'the HTTP endpoints', close)
  }
  const agent = plan.control.agent
  if (agent) {
    const close = await startLbAgent(agent, app.status, (m) =>
      log.error({ event: 'control' }, m),
    ).catch(abandon)
    app.open('listener', 'the load balancer agent', close)
  }
  // Asked to stop while the listeners were starting: nothing runs yet.
  if (app.stopping) return exitCode()

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
  const leftovers = await terminateLeftovers(pidRecords.leftovers, systemClock)
  pidRecords.forgetLeftovers()
  for (const r of leftovers) {
    log.warn(
      { event: 'leftover', id: r.id, childPid: r.pid, port: r.port },
      `terminated leftover ${r.id} (pid ${r.pid}, port ${r.port ?? '-'}) of a previous supervisor`,
    )
  }
  // Asked to stop while leftovers were terminated: nothing was started; nothing starts now.
  if (app.stopping) return exitCode()
  app.start()
  if (ha && backend?.kv) {
    const requests = watchUpgradeRequests(
      backend.kv,
      systemClock,
      plan.node,
      async (req) => {
        log.info(
          { event: 'cluster-upgrade', id: req.id, by: req.by },
          `cluster upgrade ${req.id} requested by ${req.by}: doing this node's part`,
        )
        // Active-only instances are replaced while this node is a standby (handOver).
        return app.clusterUpgradePart(req)
      },
      (m) => log.error({ event: 'cluster-upgrade' }, m),
    )
    app.open('watcher', 'cluster upgrade requests', () => requests.close())
  }
  if (plan.watchConfig) {
    const watcher = watchConfig(plan.configFile, app.reloadQuietly, log)
    app.open('watcher', 'the config watcher', () => watcher.close())
  }
  return exitCode()
}
