import type { Cancel, Clock } from '../seams/clock.js'
import { SdNotify, type MessageKind, type NotifyEnv } from './sd-notify.js'
import { statusLine, type InstanceView, type ServicePhase } from './status-line.js'

/** What the notifier reads from the running supervisor. */
export interface NotifierSources {
  /** Every instance, with its state and whether it should run now. */
  instances: () => InstanceView[]
  /** With ha: this node's role as the status line shows it (`active, epoch 3`). */
  role: () => string | undefined
}

/** Where the messages go: systemd-notify (SdNotify), or a test's fake. */
export type NotifySender = Pick<SdNotify, 'send' | 'close'>

/**
 * After the first READY=1, it is sent again this often until the unit's start timeout: a
 * systemd-notify older than systemd 246, run by a non-root tandem, can see its message dropped
 * (see SdNotify), and each repeat is another chance before systemd would time the start out.
 * Every 2 s leaves several chances even when READY=1 comes at the readiness deadline, for one
 * short process each time.
 */
export const READY_REPEAT_MS = 2_000

export interface SystemdNotifierOptions {
  notify: NotifyEnv
  /** The supervisor's pid: MAINPID=, and the pid WATCHDOG_PID must name. */
  pid: number
  clock: Clock
  /** Environment of the systemd-notify helper. */
  env: NodeJS.ProcessEnv
  /**
   * From start() until READY=1 is sent even though some wanted instance is not ready: by then
   * each has had its readiness timeout (serviceTimeouts().readyWithinMs).
   */
  readyWithinMs: number
  /**
   * The unit's TimeoutStartSec in ms (unitTimeouts()), counted from start(): until then READY=1
   * is sent again every READY_REPEAT_MS; later, systemd has either seen one or stopped tandem.
   */
  startTimeoutMs: number
  sources: NotifierSources
  info: (message: string) => void
  warn: (message: string) => void
  /** A problem that will end the service: systemd-notify missing, so no READY=1 can go out. */
  error: (message: string) => void
  /** Default: systemd-notify through SdNotify. */
  sender?: NotifySender
}

/** The supervisor's side of the sd_notify protocol; every method is cheap and never throws. */
export interface SystemdNotifier {
  /**
   * Arms the readiness deadline and the watchdog; call once the first reconcile is scheduled.
   * Does nothing after close() (a shutdown may begin before the start gets this far).
   */
  start(): void
  /** An instance changed state or the role changed: READY=1 the first time all are ready, else STATUS=. */
  update(): void
  /** A config reload begins (STATUS=reloading the config: ...). */
  reloading(): void
  /** The reload has finished, well or not (the usual STATUS= again). */
  reloaded(): void
  /** Shutdown begins (STOPPING=1). */
  stopping(): void
  /** Stops the timers and lets the last messages go out. */
  close(): Promise<void>
}

const NO_NOTIFIER: SystemdNotifier = {
  start: () => {},
  update: () => {},
  reloading: () => {},
  reloaded: () => {},
  stopping: () => {},
  close: () => Promise.resolve(),
}

/**
 * Tells systemd how `tandem start` is doing, when it runs as a Type=notify service
 * (NOTIFY_SOCKET set; otherwise the returned notifier does nothing):
 * - READY=1 once every wanted instance is ready the first time (completed one-shot instances
 *   count as done). With some not ready, once those have given up (failed, or waiting on a
 *   dependency that failed), or after readyWithinMs, when each has had its readiness timeout:
 *   one broken instance must not make systemd time the start out and stop every healthy one
 *   with it. STATUS= and a warning name the instances that are not ready.
 * - STATUS= whenever the line changes (`3/4 ready, 1 starting (not ready: api#1); active, epoch 3`).
 * - A config reload shows only in STATUS= (`reloading the config: ...`, then the usual line):
 *   RELOADING=1 would put the unit in a reload state timed by TimeoutStartSec (systemd >= 253),
 *   and a rollout, which replaces instances one by one, is not bounded by it.
 * - STOPPING=1 when shutdown begins.
 * - WATCHDOG=1 every half of WATCHDOG_USEC from a timer of the event loop: when the loop hangs,
 *   the pings stop and systemd's watchdog ends the supervisor.
 * After the first READY=1 and until STOPPING=1, READY=1 goes with every message: the status
 * lines, a repeat every READY_REPEAT_MS until startTimeoutMs, and the watchdog pings. A
 * systemd-notify older than systemd 246 can lose a message (see SdNotify), and a lost READY=1
 * would time the start out and restart the service for ever; a repeated one changes nothing.
 */
export const startSystemdNotifier = (
  options: SystemdNotifierOptions | undefined,
): SystemdNotifier => (options ? new Notifier(options) : NO_NOTIFIER)

class Notifier implements SystemdNotifier {
  readonly #o: SystemdNotifierOptions
  readonly #sd: NotifySender
  #phase: ServicePhase = 'starting'
  #lastStatus = ''
  #started = false
  #closed = false
  /** Monotonic ms until which READY=1 is repeated. */
  #repeatUntil = 0
  #cancelDeadline: Cancel = () => {}
  #cancelRepeat: Cancel = () => {}
  #cancelWatchdog: Cancel = () => {}

  constructor(options: SystemdNotifierOptions) {
    this.#o = options
    this.#sd =
      options.sender ??
      new SdNotify({
        socket: options.notify.socket,
        pid: options.pid,
        clock: options.clock,
        env: options.env,
        onProblem: (m, level) => (level === 'error' ? options.error(m) : options.warn(m)),
      })
  }

  start(): void {
    if (this.#started || this.#closed) return
    this.#started = true
    const { notify, clock, readyWithinMs, pid } = this.#o
    this.#repeatUntil = clock.monotonic() + this.#o.startTimeoutMs
    this.#cancelDeadline = clock.after(readyWithinMs, () => this.#ready('deadline'))
    if (notify.otherWatchdog)
      this.#o.warn(
        `systemd's watchdog (WATCHDOG_USEC=${notify.otherWatchdog.usec}) is for pid ${notify.otherWatchdog.pid} (WATCHDOG_PID), not tandem's pid ${pid}: tandem sends no WATCHDOG=1, and systemd will kill the service when WatchdogSec runs out; run tandem itself in ExecStart= (not through a wrapper such as sh -c or npx), as \`tandem unit systemd\` does`,
      )
    if (notify.watchdogUsec !== undefined) {
      const everyMs = Math.max(1, Math.floor(notify.watchdogUsec / 2000))
      const ping = () => {
        this.#sd.send({ WATCHDOG: '1', ...this.#readyAgain() }, 'watchdog')
        this.#cancelWatchdog = clock.after(everyMs, ping)
      }
      ping()
      this.#o.info(
        `systemd watchdog: WATCHDOG=1 every ${everyMs} ms (WATCHDOG_USEC=${notify.watchdogUsec})`,
      )
    }
    this.update()
  }

  #line(): string {
    return statusLine(this.#phase, this.#o.sources.instances(), this.#o.sources.role())
  }

  /** READY=1 from the first one on, until stopping (see startSystemdNotifier). */
  #readyAgain(): Record<string, string> {
    return this.#phase === 'running' || this.#phase === 'reloading' ? { READY: '1' } : {}
  }

  /** Moves to `phase` and tells systemd, with the status line as it now reads. */
  #enter(phase: ServicePhase, kind: MessageKind, fields: Record<string, string> = {}): void {
    this.#phase = phase
    this.#send(kind, fields)
  }

  #send(kind: MessageKind, fields: Record<string, string> = {}): void {
    this.#lastStatus = this.#line()
    this.#sd.send({ ...this.#readyAgain(), ...fields, STATUS: this.#lastStatus }, kind)
  }

  /** Undefined while some wanted instance may still become ready; else whether all are. */
  #settled(): { allReady: boolean } | undefined {
    const missing = this.#o.sources
      .instances()
      .filter((i) => i.wanted && !i.completed && i.state !== 'ready')
    if (!missing.every((i) => i.gaveUp)) return undefined
    return { allReady: missing.length === 0 }
  }

  /**
   * The first READY=1: every wanted instance ready; or degraded, when the others have given up
   * or the deadline has passed.
   */
  #ready(why: 'ready' | 'gave up' | 'deadline'): void {
    if (this.#phase !== 'starting') return
    this.#cancelDeadline()
    this.#enter('running', 'state')
    this.#repeatReady()
    if (why === 'ready') return this.#o.info(`told systemd READY=1: ${this.#lastStatus}`)
    this.#o.warn(
      `told systemd READY=1 with not every instance ready (${
        why === 'deadline'
          ? `after ${this.#o.readyWithinMs} ms, each one's readiness timeout included`
          : 'the others have given up'
      }): ${this.#lastStatus}`,
    )
  }

  #repeatReady(): void {
    const { clock } = this.#o
    if (clock.monotonic() + READY_REPEAT_MS > this.#repeatUntil) return
    this.#cancelRepeat = clock.after(READY_REPEAT_MS, () => {
      if (this.#phase !== 'running' && this.#phase !== 'reloading') return
      this.#send('status')
      this.#repeatReady()
    })
  }

  update(): void {
    if (this.#closed) return
    if (this.#phase === 'starting') {
      const settled = this.#settled()
      if (settled) return this.#ready(settled.allReady ? 'ready' : 'gave up')
    }
    if (this.#line() !== this.#lastStatus) this.#send('status')
  }

  reloading(): void {
    // A reload during the start is part of the start: the line says starting.
    if (this.#phase === 'running') this.#enter('reloading', 'status')
  }

  reloaded(): void {
    if (this.#phase === 'reloading') this.#enter('running', 'status')
  }

  stopping(): void {
    if (this.#phase === 'stopping' || this.#closed) return
    this.#cancelDeadline()
    this.#cancelRepeat()
    this.#enter('stopping', 'state', { STOPPING: '1' })
  }

  async close(): Promise<void> {
    this.#closed = true
    this.#cancelDeadline()
    this.#cancelRepeat()
    this.#cancelWatchdog()
    await this.#sd.close()
  }
}
