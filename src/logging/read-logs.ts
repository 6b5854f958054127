import { watch, type FSWatcher } from 'node:fs'
import { open, readdir, stat, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { systemClock, type Clock } from '../seams/clock.js'
import { LEVELS } from './child-record.js'

/** The unified log's file in `logs.dir`; rotation renames it to `.1` (newest) ... `.<keep>`. */
export const LOG_FILE = 'tandem.log'

/**
 * How often a follower looks for new lines and for a rotation. fs.watch wakes it sooner where
 * the kernel reports changes; on shared storage (NFS, zFS) only this polling sees them.
 */
export const FOLLOW_POLL_MS = 200

/** Read size: large enough to make reading a 50 MiB rotated file cheap in calls. */
const CHUNK_BYTES = 256 * 1024
const NEWLINE = 0x0a
const EMPTY = Buffer.alloc(0)

/** One record of the unified log, as far as the filters read it. */
export interface LogRecord {
  level?: unknown
  time?: unknown
  component?: unknown
  instance?: unknown
  [field: string]: unknown
}

/** Which records to show; every set field must match. */
export interface LogFilter {
  /**
   * Records of these components (of one instance when `instance` is set). Records without a
   * component (the supervisor's own) are then left out. Empty or absent: every record.
   */
  targets?: { component: string; instance?: number }[]
  /** The lowest pino level shown (a record without a numeric level counts as info). */
  minLevel?: number
  /** Epoch ms: records before it, or without a time, are left out. */
  since?: number
}

export const matches = (record: LogRecord, filter: LogFilter): boolean => {
  const level = typeof record.level === 'number' ? record.level : LEVELS.info
  if (filter.minLevel !== undefined && level < filter.minLevel) return false
  if (filter.since !== undefined && (typeof record.time !== 'number' || record.time < filter.since))
    return false
  const targets = filter.targets ?? []
  return (
    targets.length === 0 ||
    targets.some(
      (t) =>
        record.component === t.component &&
        (t.instance === undefined || record.instance === t.instance),
    )
  )
}

/** A line's record, or undefined when it is not a JSON object (a line cut by a crash). */
export const parseRecord = (line: string): LogRecord | undefined => {
  try {
    const v: unknown = JSON.parse(line)
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as LogRecord) : undefined
  } catch {
    return undefined
  }
}

export interface ReadLogsOptions {
  /** The log directory (`plan.logs.dir`). */
  dir: string
  filter?: LogFilter
  /**
   * Only the last `limit` matching records before following (found reading backwards, so a large
   * log costs no more than the records skipped over). Absent: every matching record, streamed.
   */
  limit?: number
  /** Then wait for new records, across rotations, until `signal` aborts. */
  follow?: boolean
  /** Ends following, and stops a long read early. */
  signal?: AbortSignal
  /** Polling interval while following (FOLLOW_POLL_MS). */
  pollMs?: number
  clock?: Clock
  /** Each matching record, in log order, with its line as written (no newline). */
  onRecord: (line: string, record: LogRecord) => void
  /** Something a reader should know that is not a record (a truncated file). */
  onNotice?: (message: string) => void
}

export interface ReadLogsResult {
  /** Lines that were not JSON objects (cut by a crash, or not ours), skipped. */
  unreadable: number
}

/** A file of the log as listed: its name in the directory and its identity. */
interface Entry {
  name: string
  dev: number
  ino: number
  size: number
}

interface OpenFile extends Entry {
  fh: FileHandle
}

const sameFile = (a: { dev: number; ino: number }, b: { dev: number; ino: number }) =>
  a.dev === b.dev && a.ino === b.ino

const isNotFound = (err: unknown) => (err as NodeJS.ErrnoException).code === 'ENOENT'

/**
 * The log's files, newest first: tandem.log, tandem.log.1, ... Names are tried in the order
 * rotation moves files (each to the next number), so a file moved while we list is seen twice,
 * never missed; seeing one twice means a rotation is under way, and the answer is undefined.
 */
const listFiles = async (dir: string): Promise<Entry[] | undefined> => {
  let names: string[]
  try {
    names = await readdir(dir)
  } catch (err) {
    if (isNotFound(err)) return []
    throw err
  }
  const highest = names.reduce((max, n) => {
    const m = /^tandem\.log\.([1-9]\d*)$/.exec(n)
    return m ? Math.max(max, Number(m[1])) : max
  }, 0)
  const entries: Entry[] = []
  // One past the highest: the oldest may move up while we list.
  for (let n = 0; n <= highest + 1; n++) {
    const name = n === 0 ? LOG_FILE : `${LOG_FILE}.${n}`
    try {
      const s = await stat(join(dir, name))
      if (entries.some((e) => sameFile(e, s))) return undefined
      entries.push({ name, dev: s.dev, ino: s.ino, size: s.size })
    } catch (err) {
      if (!isNotFound(err)) throw err
    }
  }
  return entries
}

/** A listing that two reads in a row agree on, or undefined while rotations go on. */
const stableList = async (dir: string): Promise<Entry[] | undefined> => {
  let previous = await listFiles(dir)
  for (let attempt = 0; attempt < 5; attempt++) {
    const current = await listFiles(dir)
    if (
      previous &&
      current &&
      previous.length === current.length &&
      previous.every((e, i) => e.name === current[i]!.name && sameFile(e, current[i]!))
    )
      return current
    previous = current
  }
  return undefined
}

/** Opens a listed file, or undefined when its name now holds another one (rotated meanwhile). */
const openEntry = async (dir: string, e: Entry): Promise<OpenFile | undefined> => {
  let fh: FileHandle
  try {
    fh = await open(join(dir, e.name), 'r')
  } catch (err) {
    if (isNotFound(err)) return undefined
    throw err
  }
  const s = await fh.stat()
  if (!sameFile(e, s)) {
    await fh.close()
    return undefined
  }
  return { ...e, size: s.size, fh }
}

/** Every file of the log opened at one moment, newest first: later renames do not matter. */
const openAll = async (dir: string): Promise<OpenFile[]> => {
  for (let attempt = 0; attempt < 20; attempt++) {
    const entries = await listFiles(dir)
    if (!entries) continue
    const files: OpenFile[] = []
    for (const e of entries) {
      const f = await openEntry(dir, e)
      if (!f) break
      files.push(f)
    }
    if (files.length === entries.length) return files
    await Promise.all(files.map((f) => f.fh.close()))
  }
  throw new Error(`the log files in ${dir} keep rotating while they are opened; try again`)
}

const readFully = async (fh: FileHandle, buf: Buffer, length: number, position: number) => {
  let done = 0
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, position + done)
    if (bytesRead === 0) break
    done += bytesRead
  }
  return done
}

/** The lines of bytes [0, end) of a file, last first; empty lines are left out. */
async function* linesBackward(fh: FileHandle, end: number): AsyncGenerator<string> {
  let pos = end
  // The start of a line whose beginning lies in an earlier chunk.
  let carry = EMPTY
  while (pos > 0) {
    const size = Math.min(CHUNK_BYTES, pos)
    pos -= size
    const chunk = Buffer.allocUnsafe(size)
    const got = await readFully(fh, chunk, size, pos)
    // A file cut shorter under us (truncated): read no garbage.
    const data = carry.length
      ? Buffer.concat([chunk.subarray(0, got), carry])
      : chunk.subarray(0, got)
    let stop = data.length
    for (let nl = data.lastIndexOf(NEWLINE); nl !== -1;) {
      if (stop > nl + 1) yield data.toString('utf8', nl + 1, stop)
      stop = nl
      nl = nl > 0 ? data.lastIndexOf(NEWLINE, nl - 1) : -1
    }
    carry = data.subarray(0, stop)
  }
  if (carry.length) yield carry.toString('utf8')
}

/** Where the last complete line of bytes [0, size) ends: an unfinished line is left to follow. */
const completeEnd = async (fh: FileHandle, size: number): Promise<number> => {
  const buf = Buffer.allocUnsafe(Math.min(CHUNK_BYTES, Math.max(size, 1)))
  for (let pos = size; pos > 0;) {
    const n = Math.min(buf.length, pos)
    pos -= n
    const got = await readFully(fh, buf, n, pos)
    const nl = buf.subarray(0, got).lastIndexOf(NEWLINE)
    if (nl !== -1) return pos + nl + 1
  }
  return 0
}

/** Reads a file forwards in complete lines from a position, keeping an unfinished last line. */
class LineCursor {
  #carry = EMPTY
  readonly #buf = Buffer.allocUnsafe(CHUNK_BYTES)

  constructor(
    readonly fh: FileHandle,
    public pos: number,
  ) {}

  /** Every complete line from `pos` to `end` (default: the end of the file as it is now). */
  async read(
    onLine: (line: string) => void,
    end = Number.POSITIVE_INFINITY,
    signal?: AbortSignal,
  ): Promise<void> {
    while (this.pos < end && !signal?.aborted) {
      const want = Math.min(this.#buf.length, end - this.pos)
      const { bytesRead } = await this.fh.read(this.#buf, 0, want, this.pos)
      if (bytesRead === 0) return
      this.pos += bytesRead
      const data = this.#buf.subarray(0, bytesRead)
      let start = 0
      for (let nl = data.indexOf(NEWLINE); nl !== -1; nl = data.indexOf(NEWLINE, start)) {
        const piece = data.subarray(start, nl)
        const line = this.#carry.length ? Buffer.concat([this.#carry, piece]) : piece
        this.#carry = EMPTY
        if (line.length) onLine(line.toString('utf8'))
        start = nl + 1
      }
      // Copied: the buffer is reused by the next read.
      if (start < data.length) this.#carry = Buffer.concat([this.#carry, data.subarray(start)])
    }
  }

  /** The unfinished last line, taken: at the end of a rotated file it will not be finished. */
  takeRest(): string | undefined {
    const rest = this.#carry
    this.#carry = EMPTY
    return rest.length ? rest.toString('utf8') : undefined
  }

  /** Starts again at the beginning (the file was truncated). */
  rewind(): void {
    this.pos = 0
    this.#carry = EMPTY
  }
}

/** The newest record's time in bytes [0, end) of a file, if any line there has one. */
const lastTime = async (fh: FileHandle, end: number): Promise<number | undefined> => {
  for await (const line of linesBackward(fh, end)) {
    const time = parseRecord(line)?.time
    if (typeof time === 'number') return time
  }
  return undefined
}

/** Resolves after `ms`, at once on `wake()` (a change seen by fs.watch), or on abort. */
const napper = (clock: Clock) => {
  let wakeUp: (() => void) | undefined
  let woken = false
  return {
    wake(): void {
      woken = true
      wakeUp?.()
    },
    nap(ms: number, signal?: AbortSignal): Promise<void> {
      if (woken || signal?.aborted) {
        woken = false
        return Promise.resolve()
      }
      return new Promise((resolve) => {
        const done = () => {
          cancel()
          signal?.removeEventListener('abort', done)
          wakeUp = undefined
          woken = false
          resolve()
        }
        const cancel = clock.after(ms, done)
        wakeUp = done
        signal?.addEventListener('abort', done, { once: true })
      })
    },
  }
}

/**
 * The file that follows `current` in the log, opened, once the reader may move on to it: a
 * rotated file at once (the writer is past it), the live tandem.log once it holds data (until
 * then a writer not yet reopened after an external logrotate may still append to `current`).
 * When `current` is gone (deleted by rotation while we were behind), the oldest file kept.
 */
const successor = async (dir: string, current: Entry): Promise<OpenFile | undefined> => {
  try {
    if (sameFile(await stat(join(dir, LOG_FILE)), current)) return undefined
  } catch (err) {
    if (!isNotFound(err)) throw err
  }
  const files = await stableList(dir)
  if (!files) return undefined
  const i = files.findIndex((e) => sameFile(e, current))
  const next = i === -1 ? files.at(-1) : i > 0 ? files[i - 1] : undefined
  if (!next || (next.name === LOG_FILE && next.size === 0)) return undefined
  return openEntry(dir, next)
}

/**
 * Reads the unified log in `dir`: the matching records of every file (rotated ones included),
 * or the last `limit` of them, then with `follow` the new ones as they are written, across
 * rotations, none missed or repeated, until `signal` aborts. Throws ENOENT when there is no log.
 */
export const readLogs = async (options: ReadLogsOptions): Promise<ReadLogsResult> => {
  const { dir, filter = {}, limit, follow = false, signal, onRecord } = options
  const clock = options.clock ?? systemClock
  const result: ReadLogsResult = { unreadable: 0 }
  const take = (line: string) => {
    const record = parseRecord(line)
    if (!record) result.unreadable++
    else if (matches(record, filter)) onRecord(line, record)
  }

  const files = await openAll(dir) // newest first
  if (files.length === 0)
    throw Object.assign(new Error(`no log at ${join(dir, LOG_FILE)} yet`), { code: 'ENOENT' })
  // Following starts in the newest file with data: an empty new tandem.log may not be written
  // to yet (see successor).
  const start = files[0]!.size === 0 && files.length > 1 ? files[1]! : files[0]!
  // The files open now: closed at the end, whatever happens.
  const openFiles = new Set(files)
  try {
    // Where reading stops: the live file (and the one followed) at its last complete line.
    const ends = await Promise.all(
      files.map(async (f) =>
        f.name === LOG_FILE || (follow && f === start) ? completeEnd(f.fh, f.size) : f.size,
      ),
    )
    if (limit === undefined) await readForward(files, ends, filter, take, signal)
    else if (limit > 0) {
      const found = await readBackward(files, ends, filter, limit, result, signal)
      for (let i = found.length - 1; i >= 0; i--) onRecord(found[i]!.line, found[i]!.record)
    }
    if (follow && !signal?.aborted) {
      for (const f of files)
        if (f !== start) {
          openFiles.delete(f)
          await f.fh.close()
        }
      await followFrom(dir, start, ends[files.indexOf(start)]!, openFiles, take, options, clock)
    }
    return result
  } finally {
    await Promise.all([...openFiles].map((f) => f.fh.close()))
  }
}

/** Every matching record, oldest file first; files wholly before `since` are not read. */
const readForward = async (
  files: OpenFile[],
  ends: number[],
  filter: LogFilter,
  take: (line: string) => void,
  signal: AbortSignal | undefined,
) => {
  for (let i = files.length - 1; i >= 0 && !signal?.aborted; i--) {
    const f = files[i]!
    if (filter.since !== undefined && i > 0) {
      const t = await lastTime(f.fh, ends[i]!)
      if (t !== undefined && t < filter.since) continue
    }
    const cursor = new LineCursor(f.fh, 0)
    await cursor.read(take, ends[i], signal)
    const rest = cursor.takeRest()
    if (rest !== undefined) take(rest)
  }
}

/**
 * The last `limit` matching records, newest first, reading files from their ends. Older files
 * are not read once a file held a record before `since`: files are in time order.
 */
const readBackward = async (
  files: OpenFile[],
  ends: number[],
  filter: LogFilter,
  limit: number,
  result: ReadLogsResult,
  signal: AbortSignal | undefined,
): Promise<{ line: string; record: LogRecord }[]> => {
  const found: { line: string; record: LogRecord }[] = []
  for (let i = 0; i < files.length; i++) {
    let beforeSince = false
    for await (const line of linesBackward(files[i]!.fh, ends[i]!)) {
      if (signal?.aborted) return found
      const record = parseRecord(line)
      if (!record) {
        result.unreadable++
        continue
      }
      if (
        filter.since !== undefined &&
        typeof record.time === 'number' &&
        record.time < filter.since
      )
        beforeSince = true
      if (!matches(record, filter)) continue
      found.push({ line, record })
      if (found.length >= limit) return found
    }
    if (beforeSince) break
  }
  return found
}

/**
 * Follows the log from a position in one of its files. `openFiles` holds the file being read: the
 * caller closes it (and this replaces it at each rotation).
 */
const followFrom = async (
  dir: string,
  first: OpenFile,
  position: number,
  openFiles: Set<OpenFile>,
  take: (line: string) => void,
  options: ReadLogsOptions,
  clock: Clock,
): Promise<void> => {
  const { signal, pollMs = FOLLOW_POLL_MS, onNotice } = options
  const sleeper = napper(clock)
  let watcher: FSWatcher | undefined
  try {
    watcher = watch(dir, { persistent: false }, () => sleeper.wake())
    watcher.on('error', () => {
      // Polling goes on: the watcher only makes it quicker.
    })
  } catch {
    // No fs.watch here (some network filesystems): polling alone.
  }
  let current = first
  let cursor = new LineCursor(current.fh, position)
  try {
    while (!signal?.aborted) {
      await cursor.read(take)
      const { size } = await current.fh.stat()
      if (size < cursor.pos) {
        onNotice?.(`${join(dir, current.name)} was truncated; reading it again from its start`)
        cursor.rewind()
        continue
      }
      const next = await successor(dir, current)
      if (next) {
        openFiles.add(next)
        // The writer has moved on to `next`: whatever it wrote here is on disk by now.
        await cursor.read(take)
        const rest = cursor.takeRest()
        if (rest !== undefined) take(rest)
        openFiles.delete(current)
        await current.fh.close()
        current = next
        cursor = new LineCursor(current.fh, 0)
        continue
      }
      await sleeper.nap(pollMs, signal)
    }
  } finally {
    watcher?.close()
  }
}
