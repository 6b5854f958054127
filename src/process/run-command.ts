import type { Clock } from '../seams/clock.js'
import { errorMessage } from '../errors.js'
import { osGroups, terminateGroup, type GroupOps } from './process-group.js'
import type { ProcessExit, Spawn } from './spawn-child.js'

/** A short-lived command tandem runs beside its instances (an activation hook, say). */
export interface CommandRequest {
  argv: string[]
  cwd: string
  env: NodeJS.ProcessEnv
  /** Stopped (SIGTERM, then SIGKILL `killAfterMs` later) when it runs longer than this. */
  timeoutMs: number
  killAfterMs?: number
}

export interface CommandDeps {
  clock: Clock
  spawn: Spawn
  groups?: GroupOps
  /** Where its stdout and stderr go, chunk by chunk with their read time (the unified log's
   * PipeOutput, which splits them into lines). */
  pipe(
    stream: 'out' | 'err',
    pid: number,
  ): { push(chunk: Buffer, time: number): void; end(time: number): void }
  /** It was spawned / has ended: pid records and the orphan watchdog follow these. */
  tracked?(pid: number): void
  untracked?(pid: number): void
}

export interface CommandResult extends ProcessExit {
  /** Stopped at its timeout. */
  timedOut: boolean
  /** Why it could not run at all (ESPAWN: the program is missing, say). */
  spawnError?: string
}

/**
 * Runs a command the way tandem runs a child: without a shell, in its own process group (with
 * the parent-death signal), recorded while it runs, its output line by line into the log, and
 * stopped through terminateGroup at its timeout. Resolves when the whole group is gone.
 */
export const runCommand = async (
  req: CommandRequest,
  deps: CommandDeps,
): Promise<CommandResult> => {
  let child
  try {
    child = deps.spawn({
      argv: req.argv,
      cwd: req.cwd,
      env: req.env,
      ipc: false,
      parentDeathSignal: 'SIGTERM',
    })
  } catch (err) {
    return { code: null, signal: null, timedOut: false, spawnError: errorMessage(err) }
  }
  const { pid } = child
  deps.tracked?.(pid)
  const pipes = (['out', 'err'] as const).map((stream) => {
    const output = deps.pipe(stream, pid)
    const input = stream === 'out' ? child.stdout : child.stderr
    input.on('data', (chunk: Buffer) => output.push(chunk, deps.clock.now()))
    return new Promise<void>((resolve) =>
      input.once('close', () => {
        output.end(deps.clock.now())
        resolve()
      }),
    )
  })
  let timedOut = false
  const stop = () =>
    terminateGroup(pid, {
      signal: 'SIGTERM',
      timeoutMs: req.killAfterMs ?? 2_000,
      clock: deps.clock,
      ops: deps.groups ?? osGroups,
      leaderExited: child.exited,
    })
  let stopping: Promise<unknown> | undefined
  const cancel = deps.clock.after(req.timeoutMs, () => {
    timedOut = true
    stopping = stop()
  })
  const exit = await child.exited
  cancel()
  // Whatever it left behind in its group goes too (as for an instance).
  await (stopping ?? stop())
  deps.untracked?.(pid)
  await Promise.race([Promise.all(pipes), deps.clock.sleep(100)])
  return { ...exit, timedOut }
}
