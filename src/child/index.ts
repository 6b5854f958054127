import type { ListenOptions } from 'node:net'
import { hostMonotonic } from '../seams/clock.js'

export type ChildRole = 'active' | 'standby'

/** Options of `tandemChild`. */
export interface TandemChildOptions {
  /**
   * The program promises to stop serving as active by itself at its deadline: it checks
   * `isActive()` before every act that only the active node may do (answer a request, write,
   * send) and refuses otherwise. The helper then tells its supervisor so once
   * (`{"type": "tandem:cooperative"}` on the IPC channel). Default false: the program makes no
   * such promise. Either way, the supervisor's watchdog kills an active child still running
   * past its deadline plus a margin.
   */
  cooperative?: boolean
  /** Where TANDEM_ROLE, TANDEM_EPOCH and TANDEM_DEADLINE are read (default `process.env`). */
  env?: NodeJS.ProcessEnv
}

/** What a child program of a tandem cluster knows of its role (see `tandemChild`). */
export interface TandemChild {
  /** `active` while `isActive()`, else `standby`. */
  readonly role: ChildRole
  /** The epoch it serves (or last served) as active in (0 without ha, or as a standby never active). */
  readonly epoch: number
  /**
   * Active, and its supervisor's deadline is still ahead on the host's monotonic clock. Check
   * it right before each act only the active node may do. A query: it changes nothing.
   */
  isActive(): boolean
  /** Milliseconds left until the deadline (Infinity without one: no ha; 0 when not active). */
  validForMs(): number
  /**
   * Called when it becomes active with the epoch: a hot standby promoted, or a deadline that had
   * lapsed renewed by a lease message for the same epoch (a delayed message while its node stayed
   * active).
   */
  onActivate(fn: (epoch: number) => void): void
  /** Called when it must stop serving as active (its deadline passed), with why. */
  onDeactivate(fn: (why: string) => void): void
  /** Stops listening (lets the process exit). */
  close(): void
}

interface Message {
  type?: unknown
  epoch?: unknown
  deadline?: unknown
}

/** setTimeout's longest delay; a farther deadline is re-armed when this one fires. */
const MAX_TIMER_MS = 0x7fffffff

const deadlineOf = (value: unknown): number => {
  const n = typeof value === 'string' && value !== '' ? Number(value) : value
  return typeof n === 'number' && Number.isFinite(n) ? n : Infinity
}

/**
 * The child side of tandem's hot standby, for programs run by tandem (`import { tandemChild }
 * from 'tandem/child'`). It reads TANDEM_ROLE, TANDEM_EPOCH and TANDEM_DEADLINE, takes
 * activation (`tandem:activate`) and renewals (`tandem:lease`) from the IPC channel, and stops
 * being active at its deadline: a child of a frozen or fenced supervisor stops serving as active
 * before a standby node takes over.
 *
 * A deadline is an absolute time on the host's monotonic clock (the supervisor's own fence
 * time), so a message delivered late cannot extend it. Without a deadline (a node without ha, a
 * supervisor that sends none) or without an IPC channel (nothing could renew it) the child is
 * active without limit.
 *
 * Pass `{ cooperative: true }` only when the program refuses to act as active whenever
 * `isActive()` is false (see TandemChildOptions.cooperative).
 */
export const tandemChild = (options: TandemChildOptions = {}): TandemChild => {
  const env = options.env ?? process.env
  const ipc = typeof process.send === 'function'
  let assigned: ChildRole = env.TANDEM_ROLE === 'standby' ? 'standby' : 'active'
  let epoch = Number(env.TANDEM_EPOCH ?? 0) || 0
  let deadline = ipc && assigned === 'active' ? deadlineOf(env.TANDEM_DEADLINE) : Infinity
  /** onActivate was called (or it started active) and onDeactivate not since. */
  let serving = assigned === 'active'
  const activated: ((epoch: number) => void)[] = []
  const deactivated: ((why: string) => void)[] = []
  let timer: NodeJS.Timeout | undefined

  const isActive = () => assigned === 'active' && hostMonotonic() < deadline

  const arm = () => {
    clearTimeout(timer)
    timer = undefined
    if (!serving || deadline === Infinity) return
    // Node's timers run on a clock of whole milliseconds: one may fire a little early, so the
    // callback checks the deadline again and re-arms.
    timer = setTimeout(
      () => {
        if (isActive()) return arm()
        serving = false
        const why = `the supervisor did not renew its lease in time (the deadline of epoch ${epoch} passed)`
        for (const fn of deactivated) fn(why)
      },
      Math.min(MAX_TIMER_MS, Math.max(0, deadline - hostMonotonic())),
    )
    timer.unref()
  }

  /** Becomes active (again) if the deadline is ahead; false if it was already serving. */
  const start = (): boolean => {
    if (serving || !isActive()) return false
    serving = true
    for (const fn of activated) fn(epoch)
    return true
  }

  const onMessage = (m: Message) => {
    if (typeof m !== 'object' || m === null || typeof m.epoch !== 'number') return
    // Epochs only grow: a message for an older one is a late one.
    if (m.epoch < epoch) return
    if (m.type === 'tandem:activate') {
      const renewal = assigned === 'active' && m.epoch === epoch
      assigned = 'active'
      epoch = m.epoch
      deadline = deadlineOf(m.deadline)
      // A new activation calls onActivate again, with its epoch; one whose deadline is already
      // past leaves the timer to deactivate a child that was serving.
      if (!renewal && isActive()) serving = false
      start()
      arm()
    } else if (m.type === 'tandem:lease') {
      if (assigned !== 'active' || m.epoch !== epoch || typeof m.deadline !== 'number') return
      const lapsedSince = deadline
      deadline = m.deadline
      // Its node stayed active (this deadline is still ahead) but the message before came too
      // late: the supervisor logs how long this child stopped serving.
      if (start())
        process.send?.({
          type: 'tandem:reactivated',
          epoch,
          lapsedMs: Math.max(0, Math.round(hostMonotonic() - lapsedSince)),
        })
      arm()
    }
  }

  if (ipc) {
    process.on('message', onMessage)
    if (options.cooperative) process.send!({ type: 'tandem:cooperative' })
  }
  // Started active with a deadline already past: deactivates at once (after the program has
  // registered its callbacks, this being a timer).
  arm()

  return {
    get role() {
      return isActive() ? 'active' : 'standby'
    },
    get epoch() {
      return epoch
    },
    isActive,
    validForMs() {
      return isActive() ? deadline - hostMonotonic() : 0
    },
    onActivate(fn) {
      activated.push(fn)
    },
    onDeactivate(fn) {
      deactivated.push(fn)
    },
    close() {
      clearTimeout(timer)
      if (ipc) process.off('message', onMessage)
    },
  }
}

/** The fd of the first socket passed systemd's way (SD_LISTEN_FDS_START). */
export const LISTEN_FDS_START = 3

/** The socket tandem holds for this instance: its fd, and the backlog tandem listens with. */
export interface InheritedSocket {
  fd: number
  /** From TANDEM_SOCKET_BACKLOG (absent: Node's default, 511). */
  backlog: number | undefined
}

/**
 * The listening socket tandem holds for this instance (its component's `socket`): fd 3 when
 * LISTEN_FDS says a socket was passed to this very process (LISTEN_PID is its pid, as
 * sd_listen_fds(3) checks), else undefined (run without a held socket: bind the port yourself).
 * A query: it leaves LISTEN_* in the environment (a process this one starts sees a LISTEN_PID
 * that is not its own, and ignores it).
 */
export const inheritedSocket = (
  env: NodeJS.ProcessEnv = process.env,
): InheritedSocket | undefined => {
  if (!(Number(env.LISTEN_FDS) >= 1 && Number(env.LISTEN_PID) === process.pid)) return undefined
  const backlog = Number(env.TANDEM_SOCKET_BACKLOG)
  return { fd: LISTEN_FDS_START, backlog: backlog > 0 ? backlog : undefined }
}

/** What `listenInherited` listens with: a net.Server, http.Server or https.Server. */
interface Listener {
  listen(handle: { fd: number }, backlog?: number, callback?: () => void): unknown
  listen(options: ListenOptions, callback?: () => void): unknown
}

/**
 * The one line for a Node server: it serves the socket tandem holds for it, and `fallback`
 * (its own port) when run without one:
 *
 * ```js
 * import { listenInherited } from 'tandem/child'
 * listenInherited(server, { port: Number(process.env.PORT) }, () => console.log('serving'))
 * ```
 *
 * Node calls listen(2) again on the fd: the backlog is passed along so it stays the one tandem
 * was configured with (Node 20 ignores a backlog given inside the options object of an fd).
 */
export const listenInherited = <S extends Listener>(
  server: S,
  fallback: ListenOptions,
  onListening?: () => void,
): S => {
  const held = inheritedSocket()
  if (held) server.listen({ fd: held.fd }, held.backlog, onListening)
  else server.listen(fallback, onListening)
  return server
}
