import { execFile, execFileSync } from 'node:child_process'
import { closeSync, constants, mkdtempSync, openSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { errorMessage } from '../errors.js'

/** The two ends of a pipe: `read` stays with the supervisor (non-blocking), `write` goes to a child. */
export interface PipeEnds {
  read: number
  write: number
}

/** Where a spawn gets real pipes for a child's stdout and stderr; undefined: none ready now. */
export interface PipeSource {
  take(): PipeEnds | undefined
}

export interface FifoPipesOptions {
  /** How many to keep made ahead (made again, all at once, when half are used). */
  keep?: number
  /** The mkfifo(1) to run (a test gives a missing one). */
  mkfifo?: string
  /** Where the private directory goes (default: the OS's temp directory). */
  parent?: string
  /** Reports a failure to make or open them, once; children then get socketpairs. */
  onProblem?: (message: string) => void
}

const DIR_PREFIX = 'tandem-pipes-'

/**
 * Real pipes for children's stdout and stderr.
 *
 * Node's child_process gives a child a Unix socketpair for 'pipe', and there every write() of the
 * child is a socket buffer of its own, allocated by the child and walked and freed by the reader.
 * In a pipe, small writes share pages: a child that writes a line per write() spends less per
 * line, and so does the supervisor reading it (docs/benchmarks.md, issue 16). Node has no
 * pipe(2), so these are FIFOs, made ahead by mkfifo(1) in a private directory (0700, named after
 * the supervisor's pid), opened at both ends when a child is spawned and unlinked at once: what
 * is left is an anonymous pipe, as a shell makes one. A batch is kept ready, made in the
 * background by one mkfifo, so that a spawn never waits for it. When none is ready, or making or
 * opening them fails, take() returns undefined and the child gets Node's socketpair, as before.
 */
export class FifoPipes implements PipeSource {
  readonly #keep: number
  readonly #mkfifo: string
  readonly #parent: string
  readonly #onProblem: (message: string) => void
  #dir: string | undefined
  #ready: string[] = []
  #made = 0
  #making = false
  #broken = false
  #closed = false

  constructor(options: FifoPipesOptions = {}) {
    this.#keep = Math.max(2, options.keep ?? 16)
    this.#mkfifo = options.mkfifo ?? 'mkfifo'
    this.#parent = options.parent ?? tmpdir()
    this.#onProblem = options.onProblem ?? (() => {})
  }

  /**
   * Makes the first batch now, so that the first children get pipes; and removes the
   * directories of earlier supervisors that were killed before they could.
   */
  start(): this {
    removeStale(this.#parent)
    const names = this.#names()
    if (!names) return this
    try {
      execFileSync(this.#mkfifo, ['-m', '600', ...names], { stdio: 'ignore' })
      this.#ready.push(...names)
    } catch (err) {
      this.#fail(`cannot make pipes with ${this.#mkfifo}: ${errorMessage(err)}`)
    }
    return this
  }

  /** How many are made and not yet taken. */
  get ready(): number {
    return this.#ready.length
  }

  take(): PipeEnds | undefined {
    const path = this.#ready.shift()
    this.#refill()
    if (path === undefined) return undefined
    let read: number | undefined
    try {
      read = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK)
      // Does not block: the FIFO has a reader now.
      return { read, write: openSync(path, constants.O_WRONLY) }
    } catch (err) {
      if (read !== undefined) closeSync(read)
      this.#fail(`cannot open the pipe ${path}: ${errorMessage(err)}`)
      return undefined
    } finally {
      rmSync(path, { force: true })
    }
  }

  /** Removes the directory and what is left in it (pipes already taken are not affected). */
  close(): void {
    this.#closed = true
    this.#ready = []
    if (this.#dir) rmSync(this.#dir, { recursive: true, force: true })
    this.#dir = undefined
  }

  #names(): string[] | undefined {
    if (this.#broken || this.#closed) return undefined
    try {
      this.#dir ??= mkdtempSync(join(this.#parent, `${DIR_PREFIX}${process.pid}-`))
    } catch (err) {
      this.#fail(`cannot make a directory for pipes in ${this.#parent}: ${errorMessage(err)}`)
      return undefined
    }
    const n = this.#keep - this.#ready.length
    return Array.from({ length: n }, () => join(this.#dir!, `p${this.#made++}`))
  }

  #refill(): void {
    if (this.#making || this.#ready.length >= this.#keep / 2) return
    const names = this.#names()
    if (!names) return
    this.#making = true
    execFile(this.#mkfifo, ['-m', '600', ...names], (err) => {
      this.#making = false
      if (this.#closed) return rmNames(names)
      if (err) return this.#fail(`cannot make pipes with ${this.#mkfifo}: ${errorMessage(err)}`)
      this.#ready.push(...names)
    })
  }

  #fail(message: string): void {
    if (this.#broken) return
    this.#broken = true
    this.#onProblem(`${message}; children get socketpairs for their output instead`)
  }
}

const rmNames = (names: string[]): void => {
  for (const n of names) rmSync(n, { force: true })
}

/** Directories of supervisors that no longer run (killed before they removed their own). */
const removeStale = (parent: string): void => {
  let entries: string[]
  try {
    entries = readdirSync(parent)
  } catch {
    return
  }
  for (const name of entries) {
    const m = /^tandem-pipes-(\d+)-/.exec(name)
    if (!m || Number(m[1]) === process.pid || alive(Number(m[1]))) continue
    try {
      rmSync(join(parent, name), { recursive: true, force: true })
    } catch {
      // another user's, or gone already: not ours to insist on
    }
  }
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
