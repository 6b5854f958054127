import { spawn, type ChildProcess } from 'node:child_process'
import { errorMessage } from '../errors.js'
import type { Cancel, Clock } from '../seams/clock.js'

/** What systemd hands a Type=notify service in its environment. */
export interface NotifyEnv {
  /** NOTIFY_SOCKET: the datagram socket (a path, or `@name` in the abstract namespace). */
  socket: string
  /** WATCHDOG_USEC when set for this process (WATCHDOG_PID unset or ours): the watchdog timeout. */
  watchdogUsec: number | undefined
}

const NOTIFY_VARIABLES = ['NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID'] as const

/**
 * Reads the notify variables and removes them from `env`, as sd_notify(3) does with
 * unset_environment: children inherit `env`, and with NotifyAccess=all a child that speaks the
 * protocol (some servers do) could otherwise report READY=1 or a MAINPID for the service.
 * Undefined when NOTIFY_SOCKET is not set (not started by systemd as Type=notify).
 */
export const takeNotifyEnv = (
  env: NodeJS.ProcessEnv = process.env,
  pid = process.pid,
): NotifyEnv | undefined => {
  const socket = env.NOTIFY_SOCKET
  const usec = Number(env.WATCHDOG_USEC)
  const watchdogPid = env.WATCHDOG_PID
  for (const name of NOTIFY_VARIABLES) delete env[name]
  if (!socket) return undefined
  const ours = watchdogPid === undefined || Number(watchdogPid) === pid
  return { socket, watchdogUsec: ours && Number.isInteger(usec) && usec > 0 ? usec : undefined }
}

/** How a message may be merged with others waiting to be sent. */
export type MessageKind =
  /** Only the latest matters (STATUS=): replaces a status message still waiting. */
  | 'status'
  /** WATCHDOG=1: dropped when one is already waiting. */
  | 'watchdog'
  /** A change of state (READY=1, RELOADING=1, STOPPING=1): always sent, in order. */
  | 'state'

interface Message {
  kind: MessageKind
  fields: [string, string][]
}

/**
 * One systemd-notify may take this long: it waits (systemd >= 246) until the manager has read the
 * message, which takes milliseconds, or gives up after 5 s by itself.
 */
export const NOTIFY_TIMEOUT_MS = 10_000
/** At close, messages still waiting get this long to go out (STOPPING=1 among them). */
export const CLOSE_WAIT_MS = 3_000

export interface SdNotifyOptions {
  socket: string
  /** Sent as MAINPID=, and as the sender's pid where systemd-notify may (root). */
  pid: number
  clock: Clock
  /** Environment of the systemd-notify processes (PATH finds it); NOTIFY_SOCKET is added. */
  env: NodeJS.ProcessEnv
  /** Called once, at the first failure: later ones are the same problem. */
  onProblem: (message: string) => void
  /** The helper program; a test may pass another. */
  program?: string
}

/**
 * Sends sd_notify messages to systemd, one at a time and in order, each through a
 * `systemd-notify --pid=<pid> VAR=VALUE...` process: Node.js has no Unix datagram sockets, and
 * the helper ships with systemd wherever NOTIFY_SOCKET can be set (no native addon to build).
 * Each run waits for the previous one to end, and systemd-notify (since systemd 246) ends only
 * once systemd has read its message, so messages arrive in the order sent; older ones attribute
 * a message by the sender's pid, which `--pid` makes ours when tandem runs as root.
 * Nothing here throws or blocks the caller: a failure is reported once through onProblem, and a
 * missing systemd-notify turns notifications off.
 */
export class SdNotify {
  readonly #o: SdNotifyOptions
  readonly #queue: Message[] = []
  #running: ChildProcess | undefined
  #pumping: Promise<void> | undefined
  #off = false
  #warned = false

  constructor(options: SdNotifyOptions) {
    this.#o = options
  }

  /** Queues a message; newlines in values would split it into other variables, so they go. */
  send(fields: Record<string, string>, kind: MessageKind = 'state'): void {
    if (this.#off) return
    const message: Message = {
      kind,
      fields: Object.entries(fields).map(([k, v]) => [k, v.replace(/[\r\n]+/g, ' ')]),
    }
    const last = this.#queue.at(-1)
    if (kind === 'watchdog' && this.#queue.some((m) => m.kind === 'watchdog')) return
    if (kind === 'status' && last?.kind === 'status') this.#queue[this.#queue.length - 1] = message
    else this.#queue.push(message)
    this.#kick()
  }

  /** Starts sending unless already at it; the pump never rejects. */
  #kick(): void {
    if (this.#pumping || this.#off) return
    this.#pumping = this.#pump().finally(() => {
      this.#pumping = undefined
      // A message queued while the pump was finishing.
      if (this.#queue.length) this.#kick()
    })
  }

  /** Lets waiting messages go out (for CLOSE_WAIT_MS at most), then sends nothing more. */
  async close(): Promise<void> {
    const pumping = this.#pumping
    if (pumping) {
      let cancel: Cancel = () => {}
      await Promise.race([
        pumping,
        new Promise<void>((r) => (cancel = this.#o.clock.after(CLOSE_WAIT_MS, r))),
      ])
      cancel()
    }
    this.#off = true
    this.#queue.length = 0
    this.#running?.kill('SIGKILL')
  }

  async #pump(): Promise<void> {
    for (let m = this.#queue.shift(); m && !this.#off; m = this.#queue.shift()) {
      const failure = await this.#run(m)
      if (failure) this.#problem(failure)
    }
  }

  #problem(message: string): void {
    if (this.#warned) return
    this.#warned = true
    this.#o.onProblem(message)
  }

  /** Runs systemd-notify for one message; resolves with what went wrong, if anything. */
  #run(m: Message): Promise<string | undefined> {
    const program = this.#o.program ?? 'systemd-notify'
    const args = [`--pid=${this.#o.pid}`, ...m.fields.map(([k, v]) => `${k}=${v}`)]
    const what = `${program} ${m.fields.map(([k]) => k).join(' ')}`
    return new Promise((resolve) => {
      let stderr = ''
      let child: ChildProcess
      try {
        child = spawn(program, args, {
          env: { ...this.#o.env, NOTIFY_SOCKET: this.#o.socket },
          stdio: ['ignore', 'ignore', 'pipe'],
        })
      } catch (err) {
        return resolve(`${what} could not start: ${errorMessage(err)}`)
      }
      this.#running = child
      const cancel = this.#o.clock.after(NOTIFY_TIMEOUT_MS, () => child.kill('SIGKILL'))
      child.stderr?.on('data', (d: Buffer) => {
        if (stderr.length < 1000) stderr += d.toString()
      })
      const done = (failure: string | undefined) => {
        cancel()
        this.#running = undefined
        resolve(failure)
      }
      child.once('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') {
          // Without the helper every later message fails the same way: stop trying.
          this.#off = true
          this.#queue.length = 0
          return done(
            `${program} not found on PATH (${this.#o.env.PATH ?? ''}): systemd notifications (NOTIFY_SOCKET=${this.#o.socket}) are off; install systemd's systemd-notify or run tandem with Type=exec`,
          )
        }
        done(`${what} failed: ${errorMessage(err)}`)
      })
      child.once('close', (code, signal) => {
        if (code === 0) return done(undefined)
        const why = signal ? `was killed by ${signal}` : `exited with code ${code}`
        done(
          `${what} ${why}${stderr.trim() ? `: ${stderr.trim()}` : ''} (NOTIFY_SOCKET=${this.#o.socket}); systemd may not see tandem's state`,
        )
      })
    })
  }
}
