import { execFile, execFileSync } from 'node:child_process'
import {
  chmodSync,
  closeSync,
  constants,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  rmSync,
  unlinkSync,
} from 'node:fs'
import { join } from 'node:path'
import { errorMessage } from '../errors.js'

/** The two ends of a pipe: `read` stays with the supervisor (non-blocking), `write` goes to a child. */
export interface PipeEnds {
  read: number
  write: number
}

/** Where a spawn gets real pipes for a child's stdout and stderr; undefined: none to be had. */
export interface PipeSource {
  take(): PipeEnds | undefined
}

export interface FifoPipesOptions {
  /**
   * The directory to make them in: the supervisor's own (in its locked stateDir), made 0700 and
   * emptied at start.
   */
  dir: string
  /** How many to keep made ahead (made again, all at once, when half are used). */
  keep?: number
  /** The mkfifo(1) to run (a test gives a missing one). */
  mkfifo?: string
  /** After a failure, how long children get socketpairs before pipes are tried again. */
  retryMs?: number
  /** Reports a failure (once until pipes work again) and the recovery. */
  onProblem?: (message: string) => void
}

/**
 * Real pipes for children's stdout and stderr.
 *
 * Node's child_process gives a child a Unix socketpair for 'pipe', and there every write() of the
 * child is a socket buffer of its own, allocated by the child and walked and freed by the reader.
 * In a pipe, small writes share pages: a child that writes a line per write() spends less per
 * line, and so does the supervisor reading it (docs/benchmarks.md, issue 16); and a child can
 * open /dev/stdout, which a socketpair refuses. Node has no pipe(2), so these are FIFOs, made by
 * mkfifo(1) in the supervisor's own directory, opened at both ends when a child is spawned and
 * unlinked at once: what is left is an anonymous pipe, as a shell makes one. A batch is kept
 * ready, made again in the background by one mkfifo when half is used, so that a spawn seldom
 * waits for it (when none is ready, two are made on the spot). When making or opening them
 * fails, take() returns undefined and the child gets Node's socketpair, as before, for
 * `retryMs`; then pipes are tried again.
 */
export class FifoPipes implements PipeSource {
  readonly #dir: string
  readonly #keep: number
  readonly #mkfifo: string
  readonly #retryMs: number
  readonly #onProblem: (message: string) => void
  #ready: string[] = []
  #made = 0
  #making = false
  /** Set while failing: no attempt before this time (epoch ms). */
  #retryAt: number | undefined
  #closed = false

  constructor(options: FifoPipesOptions) {
    this.#dir = options.dir
    this.#keep = Math.max(2, options.keep ?? 16)
    this.#mkfifo = options.mkfifo ?? 'mkfifo'
    this.#retryMs = options.retryMs ?? 30_000
    this.#onProblem = options.onProblem ?? (() => {})
  }

  /** Empties (or makes) the directory and makes the first batch, so the first children get pipes. */
  start(): this {
    try {
      emptyDir(this.#dir)
    } catch (err) {
      this.#fail(`cannot use ${this.#dir} for pipes: ${errorMessage(err)}`)
      return this
    }
    this.#makeNow(this.#keep)
    return this
  }

  /** How many are made and not yet taken. */
  get ready(): number {
    return this.#ready.length
  }

  take(): PipeEnds | undefined {
    if (this.#closed || !this.#mayTry()) return undefined
    if (this.#ready.length === 0) this.#makeNow(2)
    const path = this.#ready.shift()
    this.#refill()
    if (path === undefined) return undefined
    let read: number | undefined
    try {
      read = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK)
      // Does not block: the FIFO has a reader now.
      const ends = { read, write: openSync(path, constants.O_WRONLY) }
      this.#worked()
      return ends
    } catch (err) {
      if (read !== undefined) closeSync(read)
      // Removed behind our back, or out of fds: the rest of the batch is suspect too.
      this.#ready = []
      this.#fail(`cannot open the pipe ${path}: ${errorMessage(err)}`)
      return undefined
    } finally {
      removeQuietly(path)
    }
  }

  /** Removes what is left in the directory (pipes already taken are not affected). */
  close(): void {
    this.#closed = true
    this.#ready = []
    try {
      emptyDir(this.#dir)
    } catch {
      // Emptied at the next start.
    }
  }

  #mayTry(): boolean {
    return this.#retryAt === undefined || Date.now() >= this.#retryAt
  }

  #names(n: number): string[] {
    return Array.from({ length: n }, () => join(this.#dir, `p${this.#made++}`))
  }

  #makeNow(n: number): void {
    const names = this.#names(n)
    try {
      // Again if it went (or start could not make it): a no-op when it is there.
      mkdirSync(this.#dir, { recursive: true, mode: 0o700 })
      execFileSync(this.#mkfifo, ['-m', '666', ...names], { stdio: 'ignore' })
      this.#ready.push(...names)
    } catch (err) {
      names.forEach(removeQuietly)
      this.#fail(`cannot make pipes with ${this.#mkfifo} in ${this.#dir}: ${errorMessage(err)}`)
    }
  }

  #refill(): void {
    if (this.#making || this.#ready.length >= this.#keep / 2 || !this.#mayTry()) return
    const names = this.#names(this.#keep - this.#ready.length)
    this.#making = true
    // The mode is not the protection (the directory is 0700, and a name is gone before its child
    // runs): 0666 lets a child running as another user reopen its /dev/stdout.
    execFile(this.#mkfifo, ['-m', '666', ...names], (err) => {
      this.#making = false
      if (this.#closed || err) names.forEach(removeQuietly)
      if (this.#closed) return
      if (err) return this.#fail(`cannot make pipes with ${this.#mkfifo}: ${errorMessage(err)}`)
      this.#ready.push(...names)
    })
  }

  #fail(message: string): void {
    const first = this.#retryAt === undefined
    this.#retryAt = Date.now() + this.#retryMs
    if (first)
      this.#onProblem(
        `${message}; children get socketpairs for their output instead, pipes are tried again every ${Math.round(this.#retryMs / 1000)} s`,
      )
  }

  #worked(): void {
    if (this.#retryAt === undefined) return
    this.#retryAt = undefined
    this.#onProblem(`children get pipes for their output again (${this.#dir})`)
  }
}

const removeQuietly = (path: string): void => {
  try {
    rmSync(path, { force: true })
  } catch {
    // gone, or not ours to remove: nothing depends on it
  }
}

/**
 * Makes `dir` (0700) or empties it: only the supervisor that holds the state dir's lock uses it,
 * so what is in it is left by an earlier run of this one (killed before it could remove it).
 * Something that is not a directory there (a symlink) is removed, never followed.
 */
const emptyDir = (dir: string): void => {
  let isDir = false
  try {
    isDir = lstatSync(dir).isDirectory()
    if (!isDir) unlinkSync(dir)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  if (isDir)
    for (const name of readdirSync(dir)) rmSync(join(dir, name), { recursive: true, force: true })
  else mkdirSync(dir, { mode: 0o700 })
  chmodSync(dir, 0o700)
}
