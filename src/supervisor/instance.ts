import type { InstanceSpec } from '../config/plan.js'
import { errorMessage, hasCode } from '../errors.js'
import type { PipeOutput } from '../logging/pipe-output.js'
import { readPipe, type LogFlow } from '../logging/read-pipe.js'
import { StderrTail } from '../logging/stderr-tail.js'
import { osGroups, terminateGroup, type GroupOps } from '../process/process-group.js'
import { supervisorUser } from '../process/account.js'
import { instanceEnv } from '../process/child-env.js'
import type { SocketSpec } from '../process/held-sockets.js'
import type { ChildHandle, ListenSocket, ProcessExit, Spawn } from '../process/spawn-child.js'
import type { Usage } from '../process/group-usage.js'
import type { Cancel, Clock } from '../seams/clock.js'
import { checkTransition, type InstanceState } from './instance-state.js'
import { waitReady } from './readiness.js'
import {
  isFailure,
  nextFailureCount,
  portRetryDelay,
  recordFailure,
  restartDelay,
  shouldRestart,
} from './restart-policy.js'
import type { ExitRecord, InstanceStatus } from '../status.js'

/** How many stderr lines an instance keeps for the crash report. */
export const STDERR_TAIL_LINES = 20

/** One state change (or `spawned`) of one instance: the log, status and the reconciler read these. */
export interface InstanceEvent {
  event: InstanceState | 'spawned' | 'restart' | 'reactivated' | 'retired'
  id: string
  component: string
  instance: number
  port: number | undefined
  childPid: number | undefined
  from?: InstanceState
  exit?: ExitRecord
  delayMs?: number
  reason?: string
  stderrTail?: string[]
  /**
   * Why, where a reason string alone would have to be parsed: a `failed` that the crash-loop
   * window decided, a `restart` of a ready instance over its memory limit or after failed
   * liveness checks, or one an operator asked for. The event stream names these apart.
   */
  cause?: 'crashLoop' | 'memory' | 'unhealthy' | 'operator'
  /** `reactivated`: the epoch its child serves again, after how long its deadline had lapsed. */
  epoch?: number
  lapsedMs?: number
}

/** What an instance needs from the outside world; tests pass fakes for what they control. */
export interface InstanceDeps {
  clock: Clock
  spawn: Spawn
  /** Signals and looks at process groups (default: the OS's). */
  groups?: GroupOps
  portFree(port: number): Promise<boolean>
  /**
   * The listening sockets tandem holds (HeldSockets): the fd of an instance's, bound on its
   * first start and kept across its restarts. Throws EPORTINUSE when a stranger has the port.
   * Without it, `socket` in a spec is ignored (the child binds its port itself).
   */
  sockets?: { acquire(id: string, spec: SocketSpec): Promise<number> }
  /** Why the port is not free: `port N is in use by pid P`, or what else holds it. */
  describePortHolder(port: number): string
  random(): number
  /** Environment every child starts from (the supervisor's own, plus TANDEM_* variables). */
  baseEnv: NodeJS.ProcessEnv
  onEvent(e: InstanceEvent): void
  /** A restart delay elapsed (`due` is now set): the reconciler should look again. */
  wake(): void
  /** Where a child's pipe goes: called once per pipe; takes its chunks as they are read. */
  pipe(spec: InstanceSpec, stream: 'out' | 'err', childPid: number): PipeOutput
  /** The log's back-pressure: while it is congested, children's pipes are not read. */
  logFlow: LogFlow
  /** A longer line is cut and marked truncated (the stderr tail cuts it as the log does). */
  maxLineBytes: number
  /** A child was spawned / has exited: pid records and the orphan watchdog follow these. */
  tracked(spec: InstanceSpec, pid: number): void
  untracked(spec: InstanceSpec, pid: number): void
  /**
   * The node's role for a child about to be spawned: TANDEM_ROLE (active or standby),
   * TANDEM_EPOCH and, for an active child with an IPC channel (the one that renews it),
   * TANDEM_DEADLINE: absolute ms on `hostMonotonic()`, the supervisor's own fence time. Without
   * it every child starts active in epoch 0 without a deadline (a node without ha).
   */
  role?: (spec: InstanceSpec) => { role: 'active' | 'standby'; epoch: number; deadline?: number }
}

/** Whether an instance's child gets an IPC channel: for readiness, activation or its lease. */
export const wantsIpc = (spec: InstanceSpec): boolean =>
  spec.readiness.type === 'ipc' || (spec.runOn === 'active' && spec.activate.type === 'ipc')

interface Run {
  /** The definition it runs (its stop signal and timeout). */
  spec: InstanceSpec
  abort: AbortController
  child?: ChildHandle
  /** When its process was spawned (monotonic ms). */
  startedAt?: number
  /**
   * A handover replaced it: its process serves the held socket until its successor is ready,
   * then gets its stop signal; its end changes nothing in the instance (`retired` is logged).
   */
  retiring?: boolean
  /** Set when we stop the run for a reason of its own (memory, liveness): a failure, not a stop. */
  failure?: { reason: 'memory' | 'unhealthy'; detail: string }
  /** The stop under way (terminateGroup): set once the stop signal went to the group. */
  termination?: Promise<{ killed: boolean }>
  done: Promise<void>
}

/**
 * An instance's state with the facts that belong to one state only: a stopped instance may have
 * completed (a one-shot that ran to its clean end: started again only for a new generation); one
 * backing off or failed may be due (its delay elapsed: the reconciler starts it).
 */
type Phase =
  | { state: 'stopped'; completed: boolean }
  | { state: 'backoff' | 'failed'; due: boolean }
  | { state: 'starting' | 'ready' | 'stopping' | 'exited' }

/**
 * One instance's state machine. `transition()` is the only place its state changes, and each
 * change emits an event. The reconciler decides when to start and stop; the instance carries it
 * out and applies the restart policy after an exit (backoff, then `due` for the reconciler).
 */
export class Instance {
  #spec: InstanceSpec
  #phase: Phase = { state: 'stopped', completed: false }
  #reason: string | undefined
  #restarts = 0
  #lastExit: ExitRecord | undefined
  #draining = false
  #activeEpoch: number | undefined
  #cooperative = false
  #usage: Usage | undefined

  /** Its definition: the reconciler redefines it between runs. */
  get spec(): InstanceSpec {
    return this.#spec
  }
  get state(): InstanceState {
    return this.#phase.state
  }
  /** The backoff delay has elapsed: the reconciler should start it again. */
  get due(): boolean {
    return 'due' in this.#phase && this.#phase.due
  }
  /**
   * It ended cleanly and its restart policy does not restart it: it stays stopped until an
   * operator starts it (the reconciler starts it again only for a new generation).
   */
  get completed(): boolean {
    return 'completed' in this.#phase && this.#phase.completed
  }
  /** Why it is failed or backing off, for status. */
  get reason(): string | undefined {
    return this.#reason
  }
  get restarts(): number {
    return this.#restarts
  }
  get lastExit(): ExitRecord | undefined {
    return this.#lastExit
  }
  /** Reported while it drains before a replacement stops it (status, /ready). */
  get draining(): boolean {
    return this.#draining
  }
  /** The reconciler drains it before a replacement stops it, and ends the drain. */
  setDraining(on: boolean): void {
    this.#draining = on
  }
  /**
   * The epoch this instance's process serves as active in: set when it was spawned active or
   * activated (hot standby), undefined while it is a standby or not running.
   */
  get activeEpoch(): number | undefined {
    return this.#activeEpoch
  }
  /**
   * The child said `tandem:cooperative`: its program promises to stop serving as active by
   * itself at its deadline (tandem/child with `cooperative: true`).
   */
  get cooperative(): boolean {
    return this.#cooperative
  }
  /** The latest CPU and RSS sample of its process group. */
  get usage(): Usage | undefined {
    return this.#usage
  }
  /** The Monitor's sample of its process group (undefined: none, or not running). */
  recordUsage(usage: Usage | undefined): void {
    this.#usage = usage
  }

  /** The reconciler activated it (a hot standby told the node is active in `epoch`). */
  markActive(epoch: number): void {
    if (this.#phase.state === 'ready') this.#activeEpoch = epoch
  }

  /** The process a handover replaced still runs (it finishes its requests after its stop signal). */
  get handingOver(): boolean {
    return this.#predecessor !== undefined
  }

  /** Sends a message on the child's IPC channel; false when there is none or no child. */
  send(message: unknown): boolean {
    return this.#run?.child?.send(message) ?? false
  }
  readonly #deps: InstanceDeps
  #spawns = 0
  #failures = 0
  #failureTimes: number[] = []
  #portConflicts = 0
  #stderrTail = new StderrTail(0, 0)
  #startedAt = 0
  #readyAt: number | undefined
  #run: Run | undefined
  /** The run a handover replaced, while its process still runs (see handOver). */
  #predecessor: Run | undefined
  #cancelTimer: Cancel | undefined
  #generation = 0

  constructor(spec: InstanceSpec, deps: InstanceDeps) {
    this.#spec = spec
    this.#deps = deps
  }

  get id(): string {
    return this.#spec.id
  }

  get pid(): number | undefined {
    return this.#run?.child?.pid
  }

  /** The generation of its latest run (the reconciler's restart count for it; see start). */
  get generation(): number {
    return this.#generation
  }

  status(): InstanceStatus {
    return {
      id: this.id,
      component: this.#spec.component,
      index: this.#spec.index,
      port: this.#spec.port,
      user: this.#spec.exec.account?.user ?? supervisorUser(),
      pid: this.pid,
      state: this.#phase.state,
      restarts: this.#restarts,
      uptimeMs:
        this.pid === undefined
          ? undefined
          : Math.round(this.#deps.clock.monotonic() - this.#startedAt),
      lastExit: this.#lastExit,
      reason: this.#reason,
      ...(this.pid !== undefined && this.#usage ? this.#usage : {}),
      ...(this.#draining ? { draining: true } : {}),
    }
  }

  /**
   * Gives a stopped instance a new definition (a rollout): its next start uses it, with a fresh
   * failure history. Refused while it runs: a definition is replaced by stopping the old process.
   */
  redefine(spec: InstanceSpec): void {
    if (
      this.#phase.state !== 'stopped' &&
      this.#phase.state !== 'failed' &&
      this.#phase.state !== 'backoff'
    )
      throw new Error(`${this.id}: cannot redefine in state ${this.#phase.state}`)
    this.#define(spec)
  }

  #define(spec: InstanceSpec): void {
    this.#spec = spec
    this.#failures = 0
    this.#failureTimes = []
    this.#portConflicts = 0
  }

  /** The only place its state changes; `completed` with `stopped` (a one-shot ran to its end). */
  #transition(to: InstanceState, details: Partial<InstanceEvent> = {}, completed = false): void {
    const from = this.#phase.state
    checkTransition(this.id, from, to)
    this.#phase =
      to === 'stopped'
        ? { state: to, completed }
        : to === 'backoff' || to === 'failed'
          ? { state: to, due: false }
          : { state: to }
    // No process, no role: the next one gets its own at spawn.
    if (to !== 'starting' && to !== 'ready' && to !== 'stopping') this.#activeEpoch = undefined
    this.#emit(to, { from, ...details })
  }

  #emit(event: InstanceEvent['event'], details: Partial<InstanceEvent>): void {
    this.#deps.onEvent({
      event,
      id: this.id,
      component: this.#spec.component,
      instance: this.#spec.index,
      port: this.#spec.port,
      childPid: this.pid,
      ...details,
    })
  }

  /**
   * Starts a run of `generation` (default: the current one): from stopped, backoff (when due)
   * or failed. Resolves when the run ends.
   */
  start(generation = this.#generation): Promise<void> {
    // ready -> starting is a handover's move only (it keeps the running process).
    if (this.#phase.state === 'ready') throw new Error(`${this.id}: cannot start in state ready`)
    return this.#begin(generation)
  }

  /**
   * Replaces the process of a ready instance make-before-break: the new process (with `spec`,
   * in `generation`) starts on the same held socket while the old one goes on serving it, and
   * the old one gets its stop signal once the new one is ready, or once the new run ends
   * without becoming ready (as a stop-then-start would have left it). The reconciler uses it
   * only where the old process cannot pass for the new one: a held socket that stays the same
   * and readiness by IPC (an HTTP probe through the shared socket could be answered by the old
   * process). Resolves when the new run ends.
   */
  handOver(spec: InstanceSpec, generation: number): Promise<void> {
    const old = this.#run
    if (this.#phase.state !== 'ready' || !old?.child || this.#predecessor)
      throw new Error(`${this.id}: cannot hand over in state ${this.#phase.state}`)
    old.retiring = true
    this.#predecessor = old
    this.#run = undefined
    this.#define(spec)
    return this.#begin(generation, {
      reason: `handover: pid ${old.child.pid} serves until the new process is ready`,
    })
  }

  #begin(generation: number, details: Partial<InstanceEvent> = {}): Promise<void> {
    this.#generation = generation
    this.#cancelTimer?.()
    this.#cancelTimer = undefined
    this.#usage = undefined
    if (this.#phase.state === 'failed') {
      // An operator restart (or a configured retry) clears the crash-loop history.
      this.#failureTimes = []
      this.#failures = 0
    }
    this.#reason = undefined
    this.#transition('starting', details)
    const run: Run = { spec: this.#spec, abort: new AbortController(), done: Promise.resolve() }
    this.#run = run
    run.done = this.#execute(run).catch((err: unknown) => {
      // A bug, not a child's doing: report it and leave the instance failed rather than crash.
      const reason = `internal error: ${errorMessage(err)}`
      if (run.retiring) {
        if (this.#predecessor === run) this.#predecessor = undefined
        return this.#emit('retired', { childPid: run.child?.pid, reason })
      }
      if (this.#run === run) this.#run = undefined
      const from = this.#phase.state
      // Through the legal moves (a run ends as exited, then failed), never around them.
      if (from === 'starting' || from === 'ready' || from === 'stopping')
        this.#transition('exited', { reason })
      this.#reason = reason
      if (this.#phase.state === 'exited') this.#transition('failed', { reason })
      else this.#emit('failed', { reason })
    })
    return run.done
  }

  async #execute(run: Run): Promise<void> {
    const { spec } = this
    const { sockets } = this.#deps
    let listen: ListenSocket | undefined
    if (spec.socket && spec.port !== undefined && sockets) {
      // Held by tandem: bound at the first start, the same socket at every later one.
      const { port } = spec
      try {
        const fd = await sockets.acquire(spec.id, {
          port,
          host: spec.socket.host,
          backlog: spec.socket.backlog,
        })
        listen = {
          fd,
          name: spec.component,
          stdin: spec.socket.stdin,
          backlog: spec.socket.backlog,
        }
      } catch (err) {
        if (run.abort.signal.aborted) return this.#stopped(run)
        const inUse = hasCode(err, 'EPORTINUSE')
        return this.#ended(run, {
          reason: inUse ? 'port-in-use' : 'spawn-error',
          code: null,
          signal: null,
          killedAfterTimeout: false,
          uptimeMs: 0,
          detail: inUse ? this.#deps.describePortHolder(port) : errorMessage(err),
        })
      }
    } else if (spec.port !== undefined && !(await this.#deps.portFree(spec.port))) {
      if (run.abort.signal.aborted) return this.#stopped(run)
      return this.#ended(run, {
        reason: 'port-in-use',
        code: null,
        signal: null,
        killedAfterTimeout: false,
        uptimeMs: 0,
        detail: this.#deps.describePortHolder(spec.port),
      })
    }
    if (run.abort.signal.aborted) return this.#stopped(run)
    let child: ChildHandle
    const role = this.#deps.role?.(spec) ?? { role: 'active', epoch: 0 }
    this.#activeEpoch = role.role === 'active' ? role.epoch : undefined
    try {
      child = this.#deps.spawn({
        argv: spec.argv,
        cwd: spec.cwd,
        env: {
          ...this.#deps.baseEnv,
          // The account's HOME/USER/LOGNAME/SHELL, env files (read now: a rotated secret needs a
          // restart only), then env; a bad env file throws here: a spawn-error, failed.
          ...instanceEnv(spec),
          TANDEM_ROLE: role.role,
          TANDEM_EPOCH: String(role.epoch),
          // Only a child with an IPC channel can get the messages that renew its deadline.
          ...(role.role === 'active' && role.deadline !== undefined && wantsIpc(spec)
            ? { TANDEM_DEADLINE: String(role.deadline) }
            : {}),
        },
        ipc: wantsIpc(spec),
        ...(listen ? { listen } : {}),
        parentDeathSignal: spec.stop.signal as NodeJS.Signals,
        exec: spec.exec,
      })
    } catch (err) {
      return this.#ended(run, {
        reason: 'spawn-error',
        code: null,
        signal: null,
        killedAfterTimeout: false,
        uptimeMs: 0,
        detail: errorMessage(err),
      })
    }
    run.child = child
    this.#cooperative = false
    child.onMessage((message) => {
      const m = message as { type?: unknown; epoch?: unknown; lapsedMs?: unknown } | null
      if (m?.type === 'tandem:cooperative') this.#cooperative = true
      // Its deadline had lapsed (a lease message came late) and a later one renewed it.
      else if (
        m?.type === 'tandem:reactivated' &&
        typeof m.epoch === 'number' &&
        typeof m.lapsedMs === 'number'
      )
        this.#emit('reactivated', { epoch: m.epoch, lapsedMs: m.lapsedMs })
    })
    // A restart is a process spawned after an earlier one: attempts that found the port held
    // spawned nothing and do not count.
    if (this.#spawns++ > 0) this.#restarts++
    this.#startedAt = this.#deps.clock.monotonic()
    run.startedAt = this.#startedAt
    this.#readyAt = undefined
    this.#stderrTail = new StderrTail(this.#deps.maxLineBytes, STDERR_TAIL_LINES)
    this.#deps.tracked(spec, child.pid)
    this.#emit('spawned', {})
    const lines = [this.#pipeLines(child, 'out'), this.#pipeLines(child, 'err')]

    const exited = child.exited
    let exit: ProcessExit | undefined
    void exited.then((e) => {
      exit = e
      run.abort.abort(new Error('exited'))
    })
    let notReady: string | undefined
    try {
      await waitReady(spec, child, this.#deps.clock, run.abort.signal)
      if (!run.abort.signal.aborted) {
        this.#readyAt = this.#deps.clock.monotonic()
        this.#transition('ready')
        this.#retirePredecessor()
      }
    } catch (err) {
      if (hasCode(err, 'ENOTREADY') && !run.abort.signal.aborted) {
        notReady = errorMessage(err)
        this.#signalStop(run)
      }
    }
    exit = await exited
    // The rest of its group (grandchildren) must go too before the port is reused: the stop
    // under way, or the stop signal now (then SIGKILL after the stop timeout).
    const { killed } = await (run.termination ?? this.#terminate(spec, child.pid))
    this.#deps.untracked(spec, child.pid)
    // Lines still buffered in the pipes belong to this run: wait for them, but never on a pipe
    // a surviving grandchild holds open (the group is reaped above, so that ends quickly).
    await Promise.race([Promise.all(lines), this.#deps.clock.sleep(100)])
    const uptimeMs = Math.round(this.#deps.clock.monotonic() - (run.startedAt ?? 0))
    if (run.retiring) {
      return this.#retired(run, child.pid, {
        reason: run.termination ? 'stopped' : 'exited',
        code: exit.code,
        signal: exit.signal,
        killedAfterTimeout: killed,
        uptimeMs,
      })
    }
    if (this.#phase.state === 'stopping') {
      return this.#stopped(run, {
        reason: 'stopped',
        code: exit.code,
        signal: exit.signal,
        killedAfterTimeout: killed,
        uptimeMs,
      })
    }
    return this.#ended(run, {
      reason:
        run.failure?.reason ??
        (notReady ? 'not-ready' : exit.error ? 'spawn-error' : exit.oomKilled ? 'oom' : 'exited'),
      code: exit.code,
      signal: exit.signal,
      killedAfterTimeout: killed,
      uptimeMs,
      ...(run.failure
        ? { detail: run.failure.detail }
        : notReady
          ? { detail: notReady }
          : exit.error
            ? { detail: exit.error }
            : {}),
    })
  }

  #pipeLines(child: ChildHandle, stream: 'out' | 'err'): Promise<void> {
    const output = this.#deps.pipe(this.#spec, stream, child.pid)
    const tail = stream === 'err' ? this.#stderrTail : undefined
    const clock = this.#deps.clock
    return readPipe(
      stream === 'out' ? child.stdout : child.stderr,
      this.#deps.logFlow,
      (chunk) => {
        // Both copy what they keep: the chunk's memory takes the pipe's next read.
        tail?.push(chunk)
        // One time for the lines of one chunk: they were read at the same moment.
        output.push(chunk, clock.now())
      },
      () => output.end(clock.now()),
    )
  }

  /** Stops the run's process group (terminateGroup), once: later calls join the first. */
  #signalStop(run: Run): void {
    const child = run.child
    if (!child || run.termination) return
    run.termination = this.#terminate(run.spec, child.pid, child.exited)
  }

  #terminate(
    spec: InstanceSpec,
    pgid: number,
    leaderExited?: Promise<unknown>,
  ): Promise<{ killed: boolean }> {
    return terminateGroup(pgid, {
      signal: spec.stop.signal as NodeJS.Signals,
      timeoutMs: spec.stop.timeoutMs,
      clock: this.#deps.clock,
      ops: this.#deps.groups ?? osGroups,
      ...(leaderExited ? { leaderExited } : {}),
    })
  }

  /**
   * SIGKILL to its process group now (a second SIGINT): a stop under way then ends at once,
   * through its usual path (exit, reap, `stopped`).
   */
  killNow(): void {
    for (const pid of [this.pid, this.#predecessor?.child?.pid])
      if (pid !== undefined) (this.#deps.groups ?? osGroups).signal(pid, 'SIGKILL')
  }

  /** The process a handover replaced gets its stop signal (once), if it still runs. */
  #retirePredecessor(): void {
    if (this.#predecessor) this.#signalStop(this.#predecessor)
  }

  /** Resolves once the process a handover replaced has ended (at once when there is none). */
  #predecessorGone(): Promise<void> {
    return this.#predecessor?.done ?? Promise.resolve()
  }

  /** The process a handover replaced has ended (stopped once its successor was ready, or not). */
  #retired(run: Run, pid: number, exit: ExitRecord): void {
    if (this.#predecessor === run) this.#predecessor = undefined
    this.#emit('retired', {
      childPid: pid,
      exit,
      reason: `replaced by a handover; ${describeExit(exit)}`,
    })
  }

  #stopped(run: Run, exit?: ExitRecord): void {
    this.#retirePredecessor()
    if (exit) this.#lastExit = exit
    if (this.#phase.state === 'starting') this.#transition('stopping')
    this.#transition('stopped', exit ? { exit } : {})
    if (this.#run === run) this.#run = undefined
  }

  /** A run ended without a stop being asked for: apply the restart policy. */
  #ended(run: Run, exit: ExitRecord): void {
    this.#retirePredecessor()
    this.#lastExit = exit
    this.#transition('exited', {
      exit,
      stderrTail:
        exit.reason === 'exited' || exit.reason === 'not-ready' ? [...this.#stderrTail] : undefined,
    })
    if (this.#run === run) this.#run = undefined
    const { spec } = this
    const failure = isFailure(exit)
    let looping = false
    if (exit.reason === 'port-in-use') {
      this.#portConflicts++
    } else {
      this.#portConflicts = 0
      if (failure) {
        this.#failures = nextFailureCount(spec.backoff, this.#failures, exit.uptimeMs)
        const r = recordFailure(spec.crashLoop, this.#failureTimes, this.#deps.clock.monotonic())
        this.#failureTimes = r.times
        looping = r.looping
      }
    }
    const what = describeExit(exit)
    if (!shouldRestart(spec.restart, exit)) {
      if (!failure) {
        this.#reason = `${what}; restart policy is "${spec.restart}"`
        return this.#transition('stopped', { reason: this.#reason }, true)
      }
      this.#reason =
        exit.reason === 'spawn-error' ? exit.detail : `${what}; restart policy is "${spec.restart}"`
      return this.#transition('failed', {
        reason: this.#reason,
        exit,
        stderrTail: [...this.#stderrTail],
      })
    }
    if (looping) {
      this.#reason = `crash loop: ${this.#failureTimes.length} failures within ${spec.crashLoop.windowMs} ms, last: ${what}`
      this.#transition('failed', {
        reason: this.#reason,
        cause: 'crashLoop',
        exit,
        stderrTail: [...this.#stderrTail],
      })
      if (spec.crashLoop.retry) this.#schedule(spec.backoff.maxMs)
      return
    }
    const delayMs =
      exit.reason === 'port-in-use'
        ? portRetryDelay(spec.backoff, this.#portConflicts, this.#deps.random())
        : restartDelay(spec.backoff, this.#failures, this.#deps.random())
    this.#reason = what
    this.#transition('backoff', { delayMs, reason: what })
    this.#schedule(delayMs)
  }

  #schedule(delayMs: number): void {
    const due = () => {
      if ('due' in this.#phase) this.#phase.due = true
      this.#deps.wake()
    }
    // An immediate restart does not wait for a timer turn (a millisecond or more in Node).
    if (delayMs <= 0) return due()
    this.#cancelTimer = this.#deps.clock.after(delayMs, () => {
      this.#cancelTimer = undefined
      due()
    })
  }

  /**
   * Stops the instance and resolves once it is `stopped`: stop signal to its process group, then
   * SIGKILL to the group after stop.timeoutMs. Idempotent: a second call joins the first.
   */
  async stop(): Promise<void> {
    this.#cancelTimer?.()
    this.#cancelTimer = undefined
    const run = this.#run
    // A stop ends the process a handover replaced too (its successor's end signals it).
    switch (this.#phase.state) {
      case 'stopped':
        return this.#predecessorGone()
      case 'backoff':
      case 'failed':
        this.#reason = undefined
        this.#transition('stopped', { reason: 'stop requested' })
        return this.#predecessorGone()
      case 'stopping':
        await run?.done
        return this.#predecessorGone()
      case 'starting':
      case 'ready':
        this.#transition('stopping')
        run!.abort.abort(new Error('stop requested'))
        this.#signalStop(run!)
        this.#retirePredecessor()
        await run!.done
        return this.#predecessorGone()
      case 'exited':
        // Transient inside #ended (synchronous): cannot be observed from outside.
        return
    }
  }

  /**
   * Stops a running instance for a reason of its own (memory, liveness), through the same stop
   * signal and escalation as any stop; its end then counts as a failure and the restart policy
   * applies (backoff, crash loop). Ignored unless it is ready.
   */
  fail(reason: 'memory' | 'unhealthy', detail: string): void {
    const run = this.#run
    if (this.#phase.state !== 'ready' || !run || run.failure) return
    run.failure = { reason, detail }
    this.#emit('restart', { reason: `${reason}: ${detail}`, cause: reason })
    this.#signalStop(run)
  }

  /** Milliseconds since it became ready, if it is ready. */
  readyForMs(): number | undefined {
    return this.#phase.state === 'ready' && this.#readyAt !== undefined
      ? this.#deps.clock.monotonic() - this.#readyAt
      : undefined
  }
}

/** `exit code 1`, `signal SIGKILL`, or the detail of a start that failed. */
export const describeExit = (exit: ExitRecord): string => {
  if (
    exit.reason === 'port-in-use' ||
    exit.reason === 'spawn-error' ||
    exit.reason === 'not-ready'
  ) {
    return exit.detail ?? exit.reason
  }
  if (exit.reason === 'oom') {
    return `killed by the kernel's OOM killer (cgroup memory.max) after ${exit.uptimeMs} ms`
  }
  if (exit.reason === 'memory' || exit.reason === 'unhealthy') {
    return `${exit.reason}: ${exit.detail ?? ''}${exit.killedAfterTimeout ? ' (killed after stop timeout)' : ''}`
  }
  const how = exit.signal ? `signal ${exit.signal}` : `exit code ${exit.code}`
  return `${how} after ${exit.uptimeMs} ms${exit.killedAfterTimeout ? ' (killed after stop timeout)' : ''}`
}
