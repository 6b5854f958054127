import { Command, CommanderError } from 'commander'
import { readFileSync } from 'node:fs'
import { isAbsolute, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { controlStateDir } from '../config/control-state-dir.js'
import { COMPLETE_COMMAND } from './complete-command.js'
import { planInstances, planPorts, type HaSpec } from '../config/plan.js'
import { redactPlan } from '../config/secrets.js'
import { commandAccess, describeBackend } from '../ha/backend.js'
import type { ClusterKv } from '../ha/cluster-kv.js'
import type { Plan } from '../config/plan.js'
import { PRESENCE_MS } from '../ha/presence.js'
import { controlRequest, controlStream } from '../control/client.js'
import { checkSocketPath } from '../control/socket-path.js'
import { errorMessage, hasCode, TandemError } from '../errors.js'
import { ephemeralPortWarning } from '../process/port-holder.js'
import type { RolloutEvent } from '../supervisor/rollout.js'
import { formatStatus } from './format-status.js'
import type { StatusReply } from '../status.js'
import { haproxyConfig } from './lb-config.js'
import type { LogsOptions } from './logs.js'
import type { EventsOptions } from './events.js'
import { systemdUnit } from '../ops/systemd-unit.js'

/** tandem's version, from its package.json: two levels up from both src/cli and dist/cli. */
const packageVersion = (): string =>
  (
    JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
      version: string
    }
  ).version

/**
 * Reads and validates a config file. The schema (zod) is loaded only by the commands that need
 * the whole config: building it is most of a command's start-up, and the commands that only talk
 * to a running supervisor (status, switchover, restart...) read the state dir alone.
 */
const loadPlan = async (
  file: string,
  host: 'all' | 'no-cgroups' | 'none' = 'none',
): Promise<Plan> =>
  (await import('../config/load-config.js')).loadConfig(file, process.env, { host })

/** Exit codes: 0 success, 1 runtime failure, 2 usage, 78 configuration error (EX_CONFIG). */
export const EXIT = { ok: 0, failure: 1, usage: 2, config: 78 } as const

/** The exit code of a command that failed with `err` (by its code: see the README's table). */
export const exitCodeOf = (err: unknown): number =>
  hasCode(err, 'ECONFIG')
    ? EXIT.config
    : hasCode(err, 'ETARGET') || hasCode(err, 'EUSAGE')
      ? EXIT.usage
      : EXIT.failure

interface Io {
  out: (text: string) => void
  err: (text: string) => void
}

const defaultIo: Io = {
  out: (t) => process.stdout.write(t + '\n'),
  err: (t) => process.stderr.write(t + '\n'),
}

/**
 * Follows nodes' presence records from the command line: a node is alive while its record
 * changed less than `freshMs` ago, as this process saw it (first sight counts as a change).
 */
const presenceWatch = (kv: ClusterKv, freshMs: number) => {
  const seen = new Map<string, { raw: string; at: number }>()
  return {
    alive: async (node: string): Promise<boolean> => {
      const raw = (await kv.read(join('nodes', node)).catch(() => undefined)) ?? ''
      const now = performance.now()
      const prev = seen.get(node)
      if (!prev || prev.raw !== raw) seen.set(node, { raw, at: now })
      return now - (seen.get(node)?.at ?? now) < freshMs
    },
  }
}

/** How long `tandem switchover` waits for a standby beyond takeoverMs. */
const SWITCHOVER_WAIT_MS = 5000

/** The claim after `released` and its owner, read from the backend, once one appears. */
const waitForNewEpoch = async (
  ha: Pick<HaSpec, 'backend' | 'renewMs' | 'selfFenceMs' | 'takeoverMs' | 'pollMs'>,
  released: number,
): Promise<{ node: string; epoch: number } | undefined> => {
  const { store } = commandAccess(ha, 'switchover')
  const deadline = Date.now() + ha.takeoverMs + SWITCHOVER_WAIT_MS
  while (Date.now() < deadline) {
    const epoch = await store.highestClaim().catch(() => released)
    if (epoch > released) {
      const owner = await store.readOwner(epoch).catch(() => undefined)
      if (owner) return { node: owner.node, epoch }
    }
    await new Promise((r) => setTimeout(r, ha.pollMs))
  }
  return undefined
}

/** `[2/3] web#1 starting with the new definition (4.2s)`: one step of a rollout. */
const progressLine = (e: RolloutEvent, elapsedMs: number) =>
  `${e.n !== undefined ? `[${e.n}/${e.of}] ` : ''}${e.message} (${(elapsedMs / 1000).toFixed(1)}s)`

/** The steps that last (the instance's state until the next event); the others stay as a line. */
const LASTING: readonly RolloutEvent['phase'][] = ['draining', 'stopping', 'starting']

/** Redraws the line of a lasting step this often, its elapsed time ticking. */
const TICK_MS = 200

/**
 * Rollout progress on a terminal: each instance's lasting steps (draining, stopping, starting)
 * share one line, redrawn every TICK_MS with the elapsed time going on, so an instance that
 * takes a minute to start shows it; every other event ends its line and stays.
 */
const liveProgress = () => {
  let current: { e: RolloutEvent; at: number } | undefined
  const draw = (e: RolloutEvent, elapsedMs: number, end: boolean) =>
    process.stdout.write(`\r\x1b[K${progressLine(e, elapsedMs)}${end ? '\n' : ''}`)
  const timer = setInterval(() => {
    if (current) draw(current.e, (current.e.elapsedMs ?? 0) + Date.now() - current.at, false)
  }, TICK_MS)
  const show = (e: RolloutEvent) => {
    const lasting = LASTING.includes(e.phase)
    current = lasting ? { e, at: Date.now() } : undefined
    draw(e, e.elapsedMs ?? 0, !lasting)
  }
  const stop = () => {
    clearInterval(timer)
    if (current) process.stdout.write('\n')
  }
  return { show, stop }
}

/**
 * Shows `show()` every `ms` until SIGINT or SIGTERM: on a terminal in place (screen cleared,
 * like watch(1)), otherwise one block after another with a time stamp. A supervisor that goes
 * away is shown as an error, and watching goes on: it may be restarting.
 */
const watch = async (ms: number, show: () => Promise<string>, io: Io): Promise<void> => {
  const tty = process.stdout.isTTY === true
  let stop!: () => void
  const stopped = new Promise<void>((r) => (stop = r))
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  try {
    for (let done = false; !done;) {
      let text: string
      try {
        text = await show()
      } catch (err) {
        text = `tandem: ${errorMessage(err)}`
      }
      const stamp = `${new Date().toISOString()}  every ${ms / 1000}s, Ctrl-C to stop`
      io.out(tty ? `\x1b[H\x1b[2J${stamp}\n\n${text}` : `${stamp}\n${text}\n`)
      let timer: NodeJS.Timeout | undefined
      done = await Promise.race([
        stopped.then(() => true),
        new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms))),
      ])
      clearTimeout(timer)
    }
  } finally {
    process.off('SIGINT', stop)
    process.off('SIGTERM', stop)
  }
}

/**
 * Runs the `tandem` command line and resolves with the process exit code. The operator commands
 * (start with targets, stop, restart, status, upgrade, reload, switchover, shutdown, logs
 * --reopen) talk to the running supervisor over its control socket; the others work alone.
 */
export const main = async (argv: string[], io: Io = defaultIo): Promise<number> => {
  let code: number = EXIT.ok
  const program = new Command('tandem')
    .description('Process supervisor with cold and hot standby')
    .version(packageVersion(), '-V, --version', 'print the version')
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s.trimEnd()), writeErr: (s) => io.err(s.trimEnd()) })
    .option(
      '-c, --config <file>',
      'config file (env TANDEM_CONFIG)',
      process.env.TANDEM_CONFIG ?? 'tandem.json',
    )

  const configPath = () => program.opts<{ config: string }>().config
  const stateDir = () => controlStateDir(configPath())
  const action = async (path: string, targets: string[], json: boolean) => {
    const reply = (await controlRequest(await stateDir(), 'POST', path, { targets })) as Pick<
      StatusReply,
      'instances'
    >
    if (json) io.out(JSON.stringify(reply))
    else
      for (const i of reply.instances)
        io.out(`${i.id}: ${i.state}${i.reason ? ` (${i.reason})` : ''}`)
  }

  program
    .command('start')
    .description(
      'run the supervisor in the foreground; with targets, start those instances in the running one',
    )
    .argument('[targets...]', 'all, <component> or <component>#<index>')
    .option('--json', 'print the result as JSON (with targets)')
    .action(async (targets: string[], o: { json?: boolean }) => {
      if (targets.length) return action('/start', targets, o.json === true)
      // Loaded here: the supervisor's modules (pino, chokidar, ...) would slow every other
      // command's start (a switchover's time counts from it).
      const { runSupervisor } = await import('../run-supervisor.js')
      code = await runSupervisor({ configPath: configPath() })
    })
  program
    .command('status')
    .description('show every instance of the running supervisor')
    .option('--json', 'print JSON')
    .option('-w, --watch [seconds]', 'refresh the table every few seconds (default 2) until Ctrl-C')
    .action(async (o: { json?: boolean; watch?: boolean | string }) => {
      const show = async () => {
        const reply = (await controlRequest(await stateDir(), 'GET', '/status')) as StatusReply
        return o.json ? JSON.stringify(reply) : formatStatus(reply)
      }
      if (o.watch === undefined) return io.out(await show())
      const seconds = o.watch === true ? 2 : Number(o.watch)
      if (!(seconds >= 0.1)) {
        throw new TandemError(
          'EUSAGE',
          `--watch expects a number of seconds of at least 0.1, got ${JSON.stringify(o.watch)}`,
        )
      }
      await watch(seconds * 1000, show, io)
    })
  for (const [name, what] of [
    ['stop', 'stop instances (they stay stopped, also across supervisor restarts, until started)'],
    ['restart', 'restart instances one at a time, each waited for until ready; clears failed'],
  ] as const) {
    program
      .command(name)
      .description(what)
      .argument('<targets...>', 'all, <component> or <component>#<index>')
      .option('--json', 'print the result as JSON')
      .action((targets: string[], o: { json?: boolean }) =>
        action(`/${name}`, targets, o.json === true),
      )
  }
  const rolloutCommand = async (path: string, body: unknown, json: boolean) => {
    const live = !json && process.stdout.isTTY === true ? liveProgress() : undefined
    const show = (e: RolloutEvent) =>
      json
        ? io.out(JSON.stringify(e))
        : live
          ? live.show(e)
          : io.out(progressLine(e, e.elapsedMs ?? 0))
    try {
      const result = await controlStream(await stateDir(), path, body, (raw) =>
        show(raw as RolloutEvent),
      )
      if (json) io.out(JSON.stringify({ result }))
    } finally {
      live?.stop()
    }
  }
  /**
   * `tandem upgrade --cluster`: writes a request into the shared dir, then follows the nodes that
   * are alive (this one and its peers whose presence changed lately) until each has written its
   * result or gone away. Exit 1 if any failed or went away.
   */
  const clusterUpgrade = async (components: string[], all: boolean, json: boolean) => {
    const plan = await loadPlan(configPath())
    if (!plan.ha) {
      throw new TandemError('EUSAGE', `--cluster needs an "ha" section in ${plan.configFile}`)
    }
    const ha = plan.ha
    const alive = async () => {
      const s = (await controlRequest(plan.stateDir, 'GET', '/status')) as StatusReply
      const fresh = ha.takeoverMs + PRESENCE_MS * 4
      return [
        s.node,
        ...(s.cluster?.peers ?? []).filter((p) => p.lastChangeAgoMs < fresh).map((p) => p.node),
      ]
    }
    const { readUpgradeResults, writeUpgradeRequest } = await import('../ha/cluster-upgrade.js')
    const { kv } = commandAccess(ha, 'upgrade --cluster')
    const nodes = await alive()
    const presence = presenceWatch(kv, ha.takeoverMs + PRESENCE_MS * 4)
    const request = await writeUpgradeRequest(kv, plan.node, { all, components })
    const say = (o: Record<string, unknown>, text: string) =>
      io.out(json ? JSON.stringify(o) : text)
    say(
      { event: 'requested', id: request.id, nodes },
      `cluster upgrade ${request.id}: asked ${nodes.join(', ')}`,
    )
    const pending = new Set(nodes)
    const failed: string[] = []
    while (pending.size) {
      await new Promise((r) => setTimeout(r, 250))
      const results = await readUpgradeResults(kv, request.id, [...pending])
      for (const [node, r] of results) {
        pending.delete(node)
        if (!r.ok) failed.push(`${node}: ${r.message}`)
        say({ event: 'result', ...r }, `node ${node}: ${r.ok ? r.message : `failed: ${r.message}`}`)
      }
      for (const node of [...pending]) {
        if (await presence.alive(node)) continue
        pending.delete(node)
        failed.push(`${node}: went away before finishing its part`)
        say({ event: 'gone', node }, `node ${node} went away before finishing its part`)
      }
    }
    if (failed.length) {
      throw new TandemError(
        'EROLLOUT',
        `cluster upgrade ${request.id} incomplete: ${failed.join('; ')}`,
      )
    }
    say(
      { event: 'done', id: request.id },
      `cluster upgrade ${request.id} done on ${nodes.join(', ')}`,
    )
  }
  program
    .command('upgrade')
    .description(
      'replace instances one batch at a time with the definitions in the config file: the changed components, or those named; rolls back if a new instance does not come up',
    )
    .argument('[components...]', 'components to roll (default: every changed one)')
    .option('--all', 'replace every instance of them even if unchanged (new code in place)')
    .option(
      '--cluster',
      'ask every node of the cluster (ha) to do its part; instances restart one roll slot at a time across nodes',
    )
    .option('--json', 'one JSON event per line')
    .action((components: string[], o: { all?: boolean; json?: boolean; cluster?: boolean }) =>
      o.cluster
        ? clusterUpgrade(components, o.all === true, o.json === true)
        : rolloutCommand('/upgrade', { components, all: o.all === true }, o.json === true),
    )
  program
    .command('reload')
    .description(
      're-read the config file: start added components, stop removed ones, roll changed ones one by one (as SIGHUP does)',
    )
    .option('--json', 'one JSON event per line')
    .action((o: { json?: boolean }) => rolloutCommand('/reload', {}, o.json === true))
  program
    .command('switchover')
    .description(
      'hand the active role over to a standby: active children stop, then a standby takes over within pollMs',
    )
    .option('--json', 'print the result as JSON')
    .action(async (o: { json?: boolean }) => {
      const reply = (await controlRequest(await stateDir(), 'POST', '/switchover')) as {
        released: number
        node: string
        cluster: string
      } & Partial<Pick<HaSpec, 'backend' | 'renewMs' | 'selfFenceMs' | 'takeoverMs' | 'pollMs'>>
      // The supervisor says where and how to follow the handover: no config to load here. One
      // started before it said so (the supervisor not restarted since an upgrade of tandem) did
      // hand over all the same: the config file tells the rest.
      const { backend, renewMs, selfFenceMs, takeoverMs, pollMs, ...released } = reply
      const follow =
        backend && renewMs && selfFenceMs && takeoverMs && pollMs
          ? { backend, renewMs, selfFenceMs, takeoverMs, pollMs }
          : (await loadPlan(configPath())).ha
      if (!follow) {
        throw new TandemError(
          'ECONFIG',
          `node ${reply.node} released epoch ${reply.released}, but ${configPath()} has no "ha" section to follow the handover with`,
        )
      }
      if (!o.json)
        io.out(`node ${reply.node} released epoch ${reply.released} of cluster ${reply.cluster}`)
      const next = await waitForNewEpoch(follow, reply.released)
      if (o.json) io.out(JSON.stringify({ ...released, next: next ?? null }))
      else if (next) io.out(`node ${next.node} is active (epoch ${next.epoch})`)
      if (!next) {
        throw new TandemError(
          'ECLUSTER',
          `no standby took over within ${follow.takeoverMs + SWITCHOVER_WAIT_MS} ms (is one running?); node ${reply.node} takes the role back after takeoverMs`,
        )
      }
      if (next.node === reply.node) {
        // The handover did not happen: say so, rather than report a success.
        throw new TandemError(
          'ECLUSTER',
          `no standby took over: node ${reply.node} took the role back (epoch ${next.epoch}) after takeoverMs; is a standby running, and can it reach ${describeBackend(follow.backend)}?`,
        )
      }
    })
  program
    .command('cluster')
    .description('set up the hot standby cluster named in the config (ha)')
    .command('init')
    .description(
      'create the cluster in its backend (config.json in the shared dir, or <prefix>/config in etcd): once, on one node, after the shared storage is mounted; exit 0 if it exists with the same values',
    )
    .option('--json', 'print the result as JSON')
    .action(async (o: { json?: boolean }) => {
      const { runClusterInit } = await import('./cluster-init.js')
      await runClusterInit(await loadPlan(configPath()), o, io)
    })
  program
    .command('shutdown')
    .description('stop every instance and the supervisor')
    .action(async () => {
      const reply = (await controlRequest(await stateDir(), 'POST', '/shutdown')) as { pid: number }
      io.out(`supervisor ${reply.pid} is shutting down`)
    })
  program
    .command('logs')
    .description(
      'print the unified log (rotated files too), with or without a running supervisor; -f follows it',
    )
    .argument('[targets...]', 'all, <component> or <component>#<index> (default: all)')
    .option('-f, --follow', 'then print new records as they are written, until Ctrl-C')
    .option('-n, --lines <n>', 'the last n records, or all (default 50; all with --since)')
    .option('--since <when>', 'records since an age (30s, 10m, 2h, 1d) or an ISO date')
    .option('--level <level>', 'records of this level and above: trace debug info warn error fatal')
    .option('--json', 'the JSON lines as written')
    .option('--reopen', 'ask the running supervisor to reopen its log files (after logrotate)')
    .action(async (targets: string[], o: LogsOptions) => {
      const { runLogs } = await import('./logs.js')
      code = await runLogs(await loadPlan(configPath()), targets, o, io)
    })
  program
    .command('events')
    .description(
      "print the supervisor's recent events (instances, rollouts, roles, log files), oldest first; -f follows the live ones",
    )
    .argument('[targets...]', 'all, <component> or <component>#<index> (default: every event)')
    .option('-f, --follow', 'then print events as they happen, until Ctrl-C')
    .option('--since <seq>', 'only events after this sequence number')
    .option('--json', 'one JSON object per line')
    .action(async (targets: string[], o: EventsOptions) => {
      const { runEvents } = await import('./events.js')
      await runEvents(await stateDir(), targets, o, io)
    })
  program
    .command('lb-config')
    .description(
      'print load balancer config for the instances in the config file (docs/load-balancers.md)',
    )
    .argument('<kind>', 'haproxy')
    .argument('[components...]', 'components to include (default: every one with ports)')
    .option(
      '--host <address>',
      "address the load balancer connects to (default: each component's host)",
    )
    .action(async (kind: string, components: string[], o: { host?: string }) => {
      if (kind !== 'haproxy') {
        throw new TandemError('EUSAGE', `lb-config supports haproxy, got ${JSON.stringify(kind)}`)
      }
      io.out(
        haproxyConfig(await loadPlan(configPath()), {
          components,
          ...(o.host !== undefined ? { host: o.host } : {}),
        }).trimEnd(),
      )
    })
  program
    .command('unit')
    .description('print a service unit that runs `tandem start` for the config file')
    .argument('<kind>', 'systemd')
    .option('--user', 'a user unit, for systemctl --user (default: a system unit)')
    .option(
      '--run-as <user>',
      'User= of a system unit: the account tandem and its instances run as',
    )
    .option('--watchdog <seconds>', 'WatchdogSec=: tandem pings systemd every half of it')
    .option(
      '--node <path>',
      'absolute path of the node binary to run tandem with',
      process.execPath,
    )
    .action(
      async (
        kind: string,
        o: { user?: boolean; runAs?: string; watchdog?: string; node: string },
      ) => {
        if (kind !== 'systemd') {
          throw new TandemError(
            'EUSAGE',
            `unknown unit kind ${JSON.stringify(kind)}: expected one of systemd`,
          )
        }
        if (o.user && o.runAs !== undefined) {
          throw new TandemError(
            'EUSAGE',
            `--run-as ${o.runAs} is for a system unit; a --user unit runs as the user whose manager starts it`,
          )
        }
        // A name systemd takes as it is in User=: no spaces, quotes or specifiers.
        if (o.runAs !== undefined && !/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(o.runAs)) {
          throw new TandemError(
            'EUSAGE',
            `--run-as expects a user name or uid (letters, digits, "_", "." and "-"), got ${JSON.stringify(o.runAs)}`,
          )
        }
        const watchdogSec = o.watchdog === undefined ? undefined : Number(o.watchdog)
        if (watchdogSec !== undefined && !(Number.isInteger(watchdogSec) && watchdogSec >= 2)) {
          throw new TandemError(
            'EUSAGE',
            `--watchdog expects a whole number of seconds of at least 2, got ${JSON.stringify(o.watchdog)}`,
          )
        }
        if (!isAbsolute(o.node)) {
          throw new TandemError(
            'EUSAGE',
            `--node expects an absolute path (systemd runs no shell to find it), got ${JSON.stringify(o.node)}`,
          )
        }
        const plan = await loadPlan(configPath(), 'no-cgroups')
        io.out(
          systemdUnit(plan, {
            node: o.node,
            tandem: fileURLToPath(new URL('../../bin/tandem.js', import.meta.url)),
            userUnit: o.user === true,
            ...(o.runAs !== undefined ? { runAs: o.runAs } : {}),
            ...(watchdogSec !== undefined ? { watchdogSec } : {}),
          }).trimEnd(),
        )
      },
    )
  program
    .command('validate')
    .description('check a config file and print its instances with their ports')
    .option('--json', 'print the plan as JSON')
    .action(async (o: { json?: boolean }) => {
      const plan = await loadPlan(configPath(), 'all')
      checkSocketPath(plan)
      const instances = planInstances(plan)
      const portWarning = ephemeralPortWarning(planPorts(plan))
      if (o.json) {
        io.out(JSON.stringify(redactPlan(plan)))
      } else {
        io.out(
          `${plan.configFile} is valid: node ${plan.node}, ${instances.length} instances, state dir ${plan.stateDir}`,
        )
        for (const i of instances)
          io.out(`  ${i.id.padEnd(24)} port ${i.port ?? '-'}  ${i.argv.join(' ')}`)
      }
      if (portWarning) io.err(`warning: ${portWarning}`)
    })

  program
    .command('ocf')
    .description(
      'the OCF resource agent for Pacemaker (docs/pacemaker.md): parameters from OCF_RESKEY_config, _tandem, _node; exits with the OCF code',
    )
    .argument('<action>', 'meta-data, validate-all, start, stop, monitor, promote or demote')
    .action(async (action: string) => {
      const { runOcf } = await import('./ocf.js')
      code = await runOcf(action, process.env, packageVersion(), io)
    })

  program
    .command('completion')
    .description(
      'print a shell completion script for commands, options and targets: source <(tandem completion bash)',
    )
    .argument('<shell>', 'bash or zsh')
    .action(async (shell: string) => {
      const { completionScript } = await import('./completion.js')
      io.out(completionScript(shell))
    })

  if (argv[2] === COMPLETE_COMMAND) {
    // The completion scripts' call with the words being typed: a command line of its own, which
    // commander must not parse (its -h would print help). Silent whatever happens: the answer
    // lands in the operator's command line.
    try {
      const { complete, formatCompletion } = await import('./completion.js')
      io.out(formatCompletion(complete(program, argv.slice(3))))
    } catch {
      // no completions
    }
    return EXIT.ok
  }
  try {
    await program.parseAsync(argv)
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.code === 'commander.helpDisplayed' ||
        err.code === 'commander.version' ||
        err.exitCode === 0
        ? EXIT.ok
        : EXIT.usage
    }
    io.err(`tandem: ${errorMessage(err)}`)
    return exitCodeOf(err)
  }
  return code
}
