import { PassThrough } from 'node:stream'
import type { GroupOps } from '../../src/process/process-group.js'
import type {
  ChildHandle,
  ProcessExit,
  Spawn,
  SpawnRequest,
} from '../../src/process/spawn-child.js'
import type { FakeClock } from './fake-clock.js'

/**
 * A process of the fake OS. What it does is its argv[1]: `ok` says ready (IPC) at once,
 * `slow:<ms>` after ms on the fake clock, `crash` exits with code 1 at once, `never` never says
 * it, `linger:<ms>` says ready at once and takes ms to end after a stop signal (a server
 * finishing its requests). It ends on any stop signal (SIGKILL included), at once.
 */
export class FakeProc {
  alive = true
  readonly signals: string[] = []
  readonly sent: unknown[] = []
  readonly handle: ChildHandle
  readonly #listeners = new Set<(m: unknown) => void>()
  readonly #stdout = new PassThrough()
  readonly #stderr = new PassThrough()
  #exit!: (e: ProcessExit) => void

  constructor(
    readonly pid: number,
    readonly req: SpawnRequest,
  ) {
    const exited = new Promise<ProcessExit>((r) => (this.#exit = r))
    this.handle = {
      pid,
      stdout: this.#stdout,
      stderr: this.#stderr,
      exited,
      onMessage: (fn) => {
        this.#listeners.add(fn)
        return () => this.#listeners.delete(fn)
      },
      send: (m) => {
        if (!this.alive || !req.ipc) return false
        this.sent.push(m)
        return true
      },
    }
  }

  get mode(): string {
    return this.req.argv[1] ?? 'ok'
  }

  ready(): void {
    for (const fn of [...this.#listeners]) fn({ type: 'ready' })
  }

  exit(code: number | null, signal: NodeJS.Signals | null = null): void {
    if (!this.alive) return
    this.alive = false
    this.#stdout.end()
    this.#stderr.end()
    this.#exit({ code, signal })
  }
}

/** Processes, process groups and their signals, on a fake clock: no real process anywhere. */
export class FakeOs {
  readonly procs = new Map<number, FakeProc>()
  #nextPid = 10_000

  constructor(readonly clock: FakeClock) {}

  readonly spawn: Spawn = (req) => {
    const p = new FakeProc(this.#nextPid++, req)
    this.procs.set(p.pid, p)
    const mode = p.mode
    if (mode === 'crash') queueMicrotask(() => p.exit(1))
    else if (mode === 'ok' || mode.startsWith('linger:')) queueMicrotask(() => p.ready())
    else if (mode.startsWith('slow:')) this.clock.after(Number(mode.slice(5)), () => p.ready())
    return p.handle
  }

  readonly groups: GroupOps = {
    signal: (pgid, signal) => {
      const p = this.procs.get(pgid)
      if (!p?.alive) return false
      p.signals.push(signal)
      if (p.mode.startsWith('linger:') && signal !== 'SIGKILL')
        this.clock.after(Number(p.mode.slice(7)), () => p.exit(null, signal))
      else queueMicrotask(() => p.exit(null, signal))
      return true
    },
    alive: (pgid) => this.procs.get(pgid)?.alive ?? false,
  }

  /** The live processes, by their TANDEM_COMPONENT#TANDEM_INSTANCE. */
  live(): Map<string, FakeProc> {
    const m = new Map<string, FakeProc>()
    for (const p of this.procs.values())
      if (p.alive) m.set(`${p.req.env.TANDEM_COMPONENT}#${p.req.env.TANDEM_INSTANCE}`, p)
    return m
  }
}
