import { spawn, type ChildProcess } from 'node:child_process'
import { errorMessage } from '../errors.js'
import type { Cancel, Clock } from '../seams/clock.js'

/** What systemd hands a Type=notify service in its environment. */
export interface NotifyEnv {
  /** NOTIFY_SOCKET: the datagram socket (a path, or `@name` in the abstract namespace). */
  socket: string
  /** WATCHDOG_USEC when set for this process (WATCHDOG_PID unset or ours): the watchdog timeout. */
  watchdogUsec: number | undefined
  /**
   * A watchdog meant for another process: WATCHDOG_PID names the service's main process, and
   * that is not tandem when a wrapper (`sh -c`, npx) started it. No one sends WATCHDOG=1 then,
   * and systemd kills the service when WatchdogSec runs out.
   */
  otherWatchdog?: { pid: number; usec: number }
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
  const valid = Number.isInteger(usec) && usec > 0
  if (watchdogPid !== undefined && Number(watchdogPid) !== pid)
    return {
      socket,
      watchdogUsec: undefined,
      ...(valid ? { otherWatchdog: { pid: Number(watchdogPid), usec } } : {}),
    }
  return { socket, watchdogUsec: valid ? usec : undefined }
}

/** How a message is sent: in the ordered queue, merged with others, or in a lane of its own. */
export type MessageKind =
  /** Only the latest matters (STATUS=): replaces a status message still waiting. */
  | 'status'
  /**
   * WATCHDOG=1: in its own lane, beside the queue, so that a slow message in the queue (up to
   * NOTIFY_TIMEOUT_MS) cannot hold a ping back past a short WatchdogSec. At most one is on its
   * way: one sent meanwhile is dropped (the next comes within half of WatchdogSec).
   */
  | 'watchdog'
  /** A change of state (READY=1, STOPPING=1): always sent, in order. */
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
  /**
   * Called at the first failure (`warn`: later ones are the same problem), and when
   * systemd-notify is missing (`error`: nothing can be sent, so systemd will time the start out).
   */
  onProblem: (message: string, level: 'warn' | 'error') => void
  /** The helper program; a test may pass another. */
  program?: string
}

/**
 * Sends sd_notify messages to systemd, each through a `systemd-notify --pid=<pid> VAR=VALUE...`
 * process: Node.js has no Unix datagram sockets, and the helper ships with systemd wherever
 * NOTIFY_SOCKET can be set (no native addon to build). State and status messages go one at a
 * time and in order: each run waits for the previous one to end, and systemd-notify (since
 * systemd 246) ends only once systemd has read its message. Watchdog pings have a lane of their
 * own (MessageKind). An older systemd-notify does not wait, and systemd attributes a message by
 * its sender's pid, which `--pid` makes ours only when tandem runs as root: otherwise a message
 * read after the helper has exited is dropped, which is why the notifier repeats READY=1.
 * Nothing here throws or blocks the caller: a failure is reported once through onProblem, and a
 * missing systemd-notify turns notifications off.
 */
export class SdNotify {
  readonly #o: SdNotifyOptions
  readonly #queue: Message[] = []
  readonly #running = new Set<ChildProcess>()
  #pumping: Promise<void> | undefined
  #pinging: Promise<void> | undefined
  #closing: Promise<void> | undefined
  #off = false
  #warned = false
  #missing = false
  /** Set once close() kills what is still running: their failures are not news. */
  #killed = false

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
    if (kind === 'watchdog') return this.#ping(message)
    const last = this.#queue.at(-1)
    if (kind === 'status' && last?.kind === 'status') this.#queue[this.#queue.length - 1] = message
    else this.#queue.push(message)
    this.#kick()
  }

  /** Sends a ping unless one is on its way; never rejects. */
  #ping(m: Message): void {
    if (this.#pinging) return
    this.#pinging = this.#deliver(m).finally(() => (this.#pinging = undefined))
  }

  /** Starts sending the queue unless already at it; the pump never rejects. */
  #kick(): void {
    if (this.#pumping || this.#off) return
    this.#pumping = this.#pump().finally(() => {
      this.#pumping = undefined
      // A message queued while the pump was finishing.
      if (this.#queue.length) this.#kick()
    })
  }

  /**
   * Lets the messages waiting and the ping on its way go out (for CLOSE_WAIT_MS at most), then
   * sends nothing more. Idempotent.
   */
  close(): Promise<void> {
    return (this.#closing ??= this.#close())
  }

  async #close(): Promise<void> {
    const sending = [this.#pumping, this.#pinging].filter((p) => p !== undefined)
    if (sending.length) {
      let cancel: Cancel = () => {}
      await Promise.race([
        Promise.all(sending),
        new Promise<void>((r) => (cancel = this.#o.clock.after(CLOSE_WAIT_MS, r))),
      ])
      cancel()
    }
    this.#off = true
    this.#killed = true
    this.#queue.length = 0
    for (const child of this.#running) child.kill('SIGKILL')
  }

  async #pump(): Promise<void> {
    for (let m = this.#queue.shift(); m && !this.#off; m = this.#queue.shift())
      await this.#deliver(m)
  }

  async #deliver(m: Message): Promise<void> {
    const problem = await this.#run(m)
    if (this.#killed) return
    if (problem?.level === 'error') this.#o.onProblem(problem.message, 'error')
    else if (problem && !this.#warned) {
      this.#warned = true
      this.#o.onProblem(problem.message, 'warn')
    }
  }

  /** Runs systemd-notify for one message; resolves with what went wrong, if anything. */
  #run(m: Message): Promise<{ message: string; level: 'warn' | 'error' } | undefined> {
    const program = this.#o.program ?? 'systemd-notify'
    const args = [`--pid=${this.#o.pid}`, ...m.fields.map(([k, v]) => `${k}=${v}`)]
    const what = `${program} ${m.fields.map(([k]) => k).join(' ')}`
    const warn = (message: string) => ({ message, level: 'warn' as const })
    return new Promise((resolve) => {
      let stderr = ''
      let child: ChildProcess
      try {
        child = spawn(program, args, {
          env: { ...this.#o.env, NOTIFY_SOCKET: this.#o.socket },
          stdio: ['ignore', 'ignore', 'pipe'],
        })
      } catch (err) {
        return resolve(warn(`${what} could not start: ${errorMessage(err)}`))
      }
      this.#running.add(child)
      const cancel = this.#o.clock.after(NOTIFY_TIMEOUT_MS, () => child.kill('SIGKILL'))
      child.stderr?.on('data', (d: Buffer) => {
        if (stderr.length < 1000) stderr += d.toString()
      })
      let settled = false
      const done = (problem: { message: string; level: 'warn' | 'error' } | undefined) => {
        if (settled) return
        settled = true
        cancel()
        this.#running.delete(child)
        resolve(problem)
      }
      child.once('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') {
          // Without the helper every later message fails the same way: stop trying, and say
          // so once (the watchdog lane may have tried at the same time).
          this.#off = true
          this.#queue.length = 0
          if (this.#missing) return done(undefined)
          this.#missing = true
          return done({
            level: 'error',
            message: `${program} not found on PATH (${this.#o.env.PATH ?? ''}): tandem cannot tell systemd (NOTIFY_SOCKET=${this.#o.socket}) that it is ready, so under Type=notify systemd will time the start out (TimeoutStartSec) and stop the service; install systemd's systemd-notify, put its directory on the unit's PATH, or run tandem with Type=exec`,
          })
        }
        done(warn(`${what} failed: ${errorMessage(err)}`))
      })
      child.once('close', (code, signal) => {
        if (code === 0) return done(undefined)
        const why = signal ? `was killed by ${signal}` : `exited with code ${code}`
        done(
          warn(
            `${what} ${why}${stderr.trim() ? `: ${stderr.trim()}` : ''} (NOTIFY_SOCKET=${this.#o.socket}); systemd may not see tandem's state`,
          ),
        )
      })
    })
  }
}
