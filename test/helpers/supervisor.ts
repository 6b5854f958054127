import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { connect } from 'node:net'
import { join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

export const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)))
export const BIN = join(ROOT, 'bin/tandem.js')
export const FIXTURE = join(ROOT, 'test/fixtures/server.js')

/** Generous limits: the machine is shared and slow at times; tests wait for conditions, not time. */
export const WAIT_MS = 30_000

export interface LogRecord {
  event?: string
  msg: string
  level: number
  component?: string
  instance?: number
  childPid?: number
  [k: string]: unknown
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** What is left of T once it is known to be truthy. */
export type Truthy<T> = Exclude<T, false | 0 | '' | null | undefined>

/** Polls `check` until it returns a truthy value; fails with `what` after `ms`. */
export const waitUntil = async <T>(
  what: string,
  check: () => T | Promise<T>,
  ms = WAIT_MS,
): Promise<Truthy<T>> => {
  const deadline = Date.now() + ms
  for (;;) {
    const v = await check()
    if (v) return v as Truthy<T>
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await sleep(25)
  }
}

/** A process counts as alive while it exists and is not a zombie (an unreaped orphan). */
export { processAlive as alive } from '../../src/process/process-group.js'

/** True when something accepts TCP connections on 127.0.0.1:port. */
export const accepting = (port: number): Promise<boolean> =>
  new Promise((res) => {
    const s = connect({ port, host: '127.0.0.1' })
    s.once('connect', () => {
      s.destroy()
      res(true)
    })
    s.once('error', () => res(false))
  })

/** A fixture component: `node test/fixtures/server.js` with PORT templated. */
export const fixture = (extra: Record<string, unknown> = {}, env: Record<string, string> = {}) => ({
  command: [process.execPath, FIXTURE],
  env: { PORT: '{port}', ...env },
  stop: { signal: 'SIGTERM', timeoutMs: 2000 },
  ...extra,
})

/** A `tandem start` process under test, with its log records as they arrive. */
export class Supervisor {
  readonly proc: ChildProcess
  readonly records: LogRecord[] = []
  readonly stderr: string[] = []
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  /** Resolves once it has exited and every line of its output has been read. */
  readonly ended: Promise<void>
  #ended = false

  /** `env` is added to this process's environment for the supervisor. */
  constructor(
    readonly configFile: string,
    env: NodeJS.ProcessEnv = {},
  ) {
    this.proc = spawn(process.execPath, [BIN, 'start', '-c', configFile], {
      detached: true,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    createInterface({ input: this.proc.stdout! }).on('line', (l) => {
      try {
        this.records.push(JSON.parse(l) as LogRecord)
      } catch {
        this.records.push({ msg: l, level: 0 })
      }
    })
    createInterface({ input: this.proc.stderr! }).on('line', (l) => this.stderr.push(l))
    this.exited = new Promise((r) => this.proc.once('exit', (code, signal) => r({ code, signal })))
    this.ended = new Promise((r) =>
      this.proc.once('close', () => {
        this.#ended = true
        r()
      }),
    )
  }

  get pid(): number {
    return this.proc.pid!
  }

  /** Waits for a log record matching `pred` (searching those already seen too). */
  waitLog(what: string, pred: (r: LogRecord) => boolean, ms = WAIT_MS): Promise<LogRecord> {
    return waitUntil(
      what,
      () => {
        const found = this.records.find(pred)
        // Only once its output is read to the end: lines can still be in the pipe at its exit.
        if (!found && this.#ended)
          throw new Error(`supervisor exited (code ${this.proc.exitCode}) before: ${what}`)
        return found
      },
      ms,
    ).catch((err: Error) => {
      const tail = this.records.slice(-15).map((r) => `  ${r.msg}`)
      throw new Error(
        `${err.message}\nlast log lines:\n${tail.join('\n')}\nstderr:\n${this.stderr.join('\n')}`,
      )
    })
  }

  /** Counts matching records. */
  count(pred: (r: LogRecord) => boolean): number {
    return this.records.filter(pred).length
  }

  /** Kills the supervisor's process group and every child it recorded: for t.teardown. */
  kill(): void {
    for (const r of this.records) if (r.childPid) killGroup(r.childPid)
    killGroup(this.pid)
  }
}

export const killGroup = (pgid: number) => {
  try {
    process.kill(-pgid, 'SIGKILL')
  } catch {
    // gone
  }
}

/**
 * A fresh directory under the system temp dir, removed at teardown. Not t.testdir(): its long
 * paths would push the control socket past the Unix socket path limit.
 */
export const tempDir = (t: { teardown(fn: () => void): void }): string => {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** Writes a config into `dir` and returns its path. */
export const writeConfig = (
  dir: string,
  components: Record<string, unknown>,
  extra: Record<string, unknown> = {},
): string => {
  const file = join(dir, 'tandem.json')
  writeFileSync(file, JSON.stringify({ stateDir: 'state', components, ...extra }, null, 1))
  return file
}

/** Runs the CLI to completion: exit code and output. */
export const cli = (
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number | null; out: string; err: string }> =>
  new Promise((res) => {
    const p = spawn(process.execPath, [BIN, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    let err = ''
    p.stdout.on('data', (d) => (out += d))
    p.stderr.on('data', (d) => (err += d))
    p.once('close', (code) => res({ code, out, err }))
  })

export const status = async (config: string) => {
  const r = await cli(['status', '--json', '-c', config])
  if (r.code !== 0) throw new Error(`status failed: ${r.err}`)
  return JSON.parse(r.out) as {
    node: string
    role: string
    instances: {
      id: string
      state: string
      pid?: number
      port?: number
      restarts: number
      reason?: string
      lastExit?: Record<string, unknown>
      uptimeMs?: number
      stoppedByOperator: boolean
    }[]
  }
}
