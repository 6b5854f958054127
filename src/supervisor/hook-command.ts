import type { HookSpec } from '../config/plan.js'
import type { PipeOutput } from '../logging/pipe-output.js'
import type { PidRecord } from '../process/pid-records.js'
import { processStartTime } from '../process/process-start-time.js'
import { runCommand, type CommandRequest, type CommandResult } from '../process/run-command.js'
import type { Spawn } from '../process/spawn-child.js'
import type { Clock } from '../seams/clock.js'
import type { TandemEvent } from './event-stream.js'
import { hookEnv } from './hook-env.js'

/** A hook's stop: SIGTERM to its group at its timeout, SIGKILL this much later. */
export const HOOK_KILL_AFTER_MS = 2_000

/**
 * In the unified log, a hook's output lines carry `component: "(hook)"` and `instance`: the
 * hook's index (a name no component can have: the per-instance file is `(hook).<index>.log`).
 */
export const HOOK_LOG_COMPONENT = '(hook)'

/** Where a command's output lines go in the unified log. */
export interface CommandLogSource {
  component: string
  instance: number
  port: number | undefined
}

/** What the supervisor gives every command it runs beside its instances. */
export interface TrackedCommandDeps {
  clock: Clock
  spawn: Spawn
  pipe(source: CommandLogSource & { childPid: number; stream: 'out' | 'err' }): PipeOutput
  pidRecords: { add(r: PidRecord): void; remove(pid: number): void }
  watchdog: {
    watch(pgid: number, signal: NodeJS.Signals, timeoutMs: number): void
    unwatch(pgid: number): void
  }
}

/**
 * Runs a command beside the instances (an event hook, an instance's activation hook) through
 * process/ as children are run (runCommand: no shell, its own process group with the
 * parent-death signal), with a pid record `id` and the orphan watchdog while it runs, its output
 * line by line into the unified log under `as`, stopped at its timeoutMs (SIGTERM to its group,
 * SIGKILL HOOK_KILL_AFTER_MS later). `spawn` overrides the deps' (to run it as an instance's user).
 */
export const runTracked = (
  deps: TrackedCommandDeps,
  id: string,
  req: Omit<CommandRequest, 'killAfterMs'>,
  as: CommandLogSource,
  spawn: Spawn = deps.spawn,
): Promise<CommandResult> =>
  runCommand(
    { ...req, killAfterMs: HOOK_KILL_AFTER_MS },
    {
      clock: deps.clock,
      spawn,
      pipe: (stream, childPid) => deps.pipe({ ...as, childPid, stream }),
      tracked: (pid) => {
        deps.watchdog.watch(pid, 'SIGTERM', HOOK_KILL_AFTER_MS)
        deps.pidRecords.add({
          id,
          pid,
          startTime: processStartTime(pid) ?? '',
          port: undefined,
          stopSignal: 'SIGTERM',
          stopTimeoutMs: HOOK_KILL_AFTER_MS,
        })
      },
      untracked: (pid) => {
        deps.watchdog.unwatch(pid)
        deps.pidRecords.remove(pid)
      },
    },
  )

/**
 * How the supervisor runs a hook for an event (runTracked), as the supervisor's user, in the
 * config file's directory, with hookEnv's environment; its output under `component: "(hook)"`.
 */
export const hookCommand =
  (deps: TrackedCommandDeps & { baseEnv: NodeJS.ProcessEnv; configFile: string }) =>
  (hook: HookSpec, index: number, e: TandemEvent): Promise<CommandResult> =>
    runTracked(
      deps,
      `hook#${index}`,
      {
        argv: hook.command,
        cwd: hook.cwd,
        env: hookEnv(deps.baseEnv, e, deps.configFile),
        timeoutMs: hook.timeoutMs,
      },
      { component: HOOK_LOG_COMPONENT, instance: index, port: undefined },
    )
