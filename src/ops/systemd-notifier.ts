import type { Cancel, Clock } from '../seams/clock.js'
import { SdNotify, type NotifyEnv } from './sd-notify.js'
import { statusLine, type InstanceView, type ServicePhase } from './status-line.js'

/** What the notifier reads from the running supervisor. */
export interface NotifierSources {
  /** Every instance, with its state and whether it should run now. */
  instances: () => InstanceView[]
  /** With ha: this node's role as the status line shows it (`active, epoch 3`). */
  role: () => string | undefined
}

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
  sources: NotifierSources
  info: (message: string) => void
  warn: (message: string) => void
}

/** The supervisor's side of the sd_notify protocol; every method is cheap and never throws. */
export interface SystemdNotifier {
  /** Arms the readiness deadline and the watchdog; call once the first reconcile is scheduled. */
  start(): void
  /** An instance changed state or the role changed: READY=1 the first time all are ready, else STATUS=. */
  update(): void
  /** A config reload begins (RELOADING=1). */
  reloading(): void
  /** The reload has finished, well or not (READY=1 again). */
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

/** CLOCK_MONOTONIC in microseconds (libuv's hrtime reads it), which RELOADING=1 goes with. */
const monotonicUsec = (): string => String(process.hrtime.bigint() / 1000n)

/**
 * Tells systemd how `tandem start` is doing, when it runs as a Type=notify service
 * (NOTIFY_SOCKET set; otherwise the returned notifier does nothing):
 * - READY=1 once every wanted instance is ready the first time. With some not ready, once
 *   those have given up (failed, or waiting on a dependency that failed), or after
 *   readyWithinMs, when each has had its readiness timeout: one broken instance must not make
 *   systemd time the start out and stop every healthy one with it (a warning says which).
 * - STATUS= whenever the line changes (`3/4 ready, 1 starting; active, epoch 3`).
 * - RELOADING=1 and READY=1 around a config reload; STOPPING=1 when shutdown begins.
 * - WATCHDOG=1 every half of WATCHDOG_USEC from a timer of the event loop: when the loop hangs,
 *   the pings stop and systemd's watchdog ends the supervisor.
 * While running, each STATUS= goes with READY=1 again: systemd older than 246 can drop a
 * message whose sender (a non-root systemd-notify) exited before it was read, and a lost
 * READY=1 would time the start out; a repeated one changes nothing.
 */
export const startSystemdNotifier = (
  options: SystemdNotifierOptions | undefined,
): SystemdNotifier => (options ? new Notifier(options) : NO_NOTIFIER)

class Notifier implements SystemdNotifier {
  readonly #o: SystemdNotifierOptions
  readonly #sd: SdNotify
  #phase: ServicePhase = 'starting'
  #lastStatus = ''
  #cancelDeadline: Cancel = () => {}
  #cancelWatchdog: Cancel = () => {}

  constructor(options: SystemdNotifierOptions) {
    this.#o = options
    this.#sd = new SdNotify({
      socket: options.notify.socket,
      pid: options.pid,
      clock: options.clock,
      env: options.env,
      onProblem: (m) => options.warn(m),
    })
  }

  start(): void {
    const { notify, clock, readyWithinMs } = this.#o
    this.#cancelDeadline = clock.after(readyWithinMs, () => this.#ready('deadline'))
    if (notify.watchdogUsec !== undefined) {
      const everyMs = Math.max(1, Math.floor(notify.watchdogUsec / 2000))
      const ping = () => {
        this.#sd.send({ WATCHDOG: '1' }, 'watchdog')
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

  /** Undefined while some wanted instance may still become ready; else whether all are. */
  #settled(): { allReady: boolean } | undefined {
    const wanted = this.#o.sources.instances().filter((i) => i.wanted)
    if (!wanted.every((i) => i.state === 'ready' || i.gaveUp)) return undefined
    return { allReady: wanted.every((i) => i.state === 'ready') }
  }

  /**
   * The first READY=1: every wanted instance ready; or degraded, when the others have given up
   * or the deadline has passed.
   */
  #ready(why: 'ready' | 'gave up' | 'deadline'): void {
    if (this.#phase !== 'starting') return
    this.#cancelDeadline()
    this.#phase = 'running'
    this.#lastStatus = this.#line()
    this.#sd.send({ READY: '1', STATUS: this.#lastStatus })
    if (why === 'ready') return this.#o.info(`told systemd READY=1: ${this.#lastStatus}`)
    this.#o.warn(
      `told systemd READY=1 with not every instance ready (${
        why === 'deadline'
          ? `after ${this.#o.readyWithinMs} ms, each one's readiness timeout included`
          : 'the others have given up'
      }): ${this.#lastStatus}`,
    )
  }

  update(): void {
    if (this.#phase === 'starting') {
      const settled = this.#settled()
      if (settled) return this.#ready(settled.allReady ? 'ready' : 'gave up')
    }
    const line = this.#line()
    if (line === this.#lastStatus) return
    this.#lastStatus = line
    this.#sd.send(
      this.#phase === 'running' ? { READY: '1', STATUS: line } : { STATUS: line },
      'status',
    )
  }

  reloading(): void {
    // A reload during the start is part of the start: systemd knows it as activating.
    if (this.#phase !== 'running') return
    this.#phase = 'reloading'
    this.#lastStatus = this.#line()
    this.#sd.send({ RELOADING: '1', MONOTONIC_USEC: monotonicUsec(), STATUS: this.#lastStatus })
  }

  reloaded(): void {
    if (this.#phase !== 'reloading') return
    this.#phase = 'running'
    this.#lastStatus = this.#line()
    this.#sd.send({ READY: '1', STATUS: this.#lastStatus })
  }

  stopping(): void {
    if (this.#phase === 'stopping') return
    this.#cancelDeadline()
    this.#phase = 'stopping'
    this.#lastStatus = this.#line()
    this.#sd.send({ STOPPING: '1', STATUS: this.#lastStatus })
  }

  async close(): Promise<void> {
    this.#cancelDeadline()
    this.#cancelWatchdog()
    await this.#sd.close()
  }
}
