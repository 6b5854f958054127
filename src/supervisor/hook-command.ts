import type { HookSpec } from '../config/plan.js'
import type { PipeOutput } from '../logging/pipe-output.js'
import type { PidRecord } from '../process/pid-records.js'
import { processStartTime } from '../process/process-start-time.js'
import { runCommand, type CommandResult } from '../process/run-command.js'
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

/**
 * How the supervisor runs a hook for an event: through process/ as it runs children (runCommand:
 * no shell, its own process group with the parent-death signal, a pid record and the orphan
 * watchdog while it runs, its output line by line into the unified log, stopped at timeoutMs),
 * as the supervisor's user, in the config file's directory, with hookEnv's environment.
 */
export const hookCommand =
  (deps: {
    clock: Clock
    spawn: Spawn
    baseEnv: NodeJS.ProcessEnv
    configFile: string
    pipe(source: {
      component: string
      instance: number
      port: undefined
      childPid: number
      stream: 'out' | 'err'
    }): PipeOutput
    pidRecords: { add(r: PidRecord): void; remove(pid: number): void }
    watchdog: {
      watch(pgid: number, signal: NodeJS.Signals, timeoutMs: number): void
      unwatch(pgid: number): void
    }
  }) =>
  (hook: HookSpec, index: number, e: TandemEvent): Promise<CommandResult> => {
    const id = `hook#${index}`
    return runCommand(
      {
        argv: hook.command,
        cwd: hook.cwd,
        env: hookEnv(deps.baseEnv, e, deps.configFile),
        timeoutMs: hook.timeoutMs,
        killAfterMs: HOOK_KILL_AFTER_MS,
      },
      {
        clock: deps.clock,
        spawn: deps.spawn,
        pipe: (stream, childPid) =>
          deps.pipe({
            component: HOOK_LOG_COMPONENT,
            instance: index,
            port: undefined,
            childPid,
            stream,
          }),
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
  }
