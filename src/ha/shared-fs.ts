import { constants } from 'node:fs'
import { mkdir, open, readdir, readFile, rename, stat } from 'node:fs/promises'
import { join } from 'node:path'

/** Options every SharedFs operation takes last. */
export interface SharedFsCallOptions {
  /**
   * Stops waiting: the call rejects at once with code EABORTED (the signal's reason as `cause`).
   * The operation itself may still complete on the shared directory; only its answer is lost.
   */
  signal?: AbortSignal
}

/**
 * The one seam every access to the shared directory goes through. On NFS or zFS an operation can
 * take seconds or hang for ever, so the supervisor runs these in their own process
 * (shared-fs-process.ts); one-shot CLI commands and unit tests use `localSharedFs`.
 *
 * Paths are relative to the shared directory's root (`hb/3`). A rejection carries the fs error's
 * `code` (ENOENT where not mapped to undefined, EEXIST, ENOTEMPTY, EIO, ENOSPC, EACCES...), or
 * one of ours (EABORTED, ECLOSED, and EIO when the I/O process exited), and a message naming the
 * operation and the full path.
 */
export interface SharedFs {
  readonly root: string
  /** The file's content (utf8); undefined when it does not exist (ENOENT). */
  read(path: string, options?: SharedFsCallOptions): Promise<string | undefined>
  /** open(O_WRONLY|O_CREAT|O_TRUNC, or O_EXCL with exclusive), write, fsync, close. */
  write(
    path: string,
    data: string,
    options?: { exclusive?: boolean } & SharedFsCallOptions,
  ): Promise<void>
  /**
   * Writes `data` at offset 0 WITHOUT truncating (fixed-width records, so a reader never sees
   * an empty file), creating the file if missing; fsync, close.
   */
  overwrite(path: string, data: string, options?: SharedFsCallOptions): Promise<void>
  mkdir(path: string, options?: { recursive?: boolean } & SharedFsCallOptions): Promise<void>
  rename(from: string, to: string, options?: SharedFsCallOptions): Promise<void>
  readdir(path: string, options?: SharedFsCallOptions): Promise<string[]>
  /** undefined when missing. */
  stat(
    path: string,
    options?: SharedFsCallOptions,
  ): Promise<{ isDirectory: boolean; mode: number } | undefined>
  /** Ends it; operations still waiting reject with code ECLOSED. Idempotent. */
  close(): void
}

/** The operations of SharedFs by name: what the I/O process is asked to run. */
export type SharedFsOp = Exclude<keyof SharedFs, 'root' | 'close'>

/** An error of the shared directory: the fs code (or ours) and the operation and path it hit. */
export class SharedFsError extends Error {
  readonly code: string
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
    this.name = 'SharedFsError'
  }
}

/** `read /mnt/shared/hb/3`: the words every message of an operation starts with. */
export const describeOp = (op: SharedFsOp, root: string, paths: readonly string[]): string =>
  `shared-dir ${op} ${paths.map((p) => join(root, p)).join(' -> ')}`

const codeOf = (err: unknown): string => {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' ? code : 'EIO'
}

/** The error a call rejects with when its SharedFs was closed before it was answered. */
export const closedError = (what: string): SharedFsError =>
  new SharedFsError('ECLOSED', `${what}: the shared-dir access was closed before the answer came`)

/** The error an aborted call rejects with. */
export const abortError = (what: string, signal: AbortSignal): SharedFsError => {
  const reason: unknown = signal.reason
  const why = reason instanceof Error ? reason.message : String(reason)
  return new SharedFsError('EABORTED', `${what}: caller stopped waiting (${why})`, {
    cause: reason,
  })
}

/**
 * Runs `work` unless `signal` is already aborted, and stops waiting for it when it aborts: the
 * work may go on (a thread in open() cannot be called back), its result is then dropped.
 */
const abortable = <T>(
  what: string,
  signal: AbortSignal | undefined,
  work: () => Promise<T>,
): Promise<T> => {
  if (!signal) return work()
  if (signal.aborted) return Promise.reject(abortError(what, signal))
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortError(what, signal))
    signal.addEventListener('abort', onAbort, { once: true })
    work().then(
      (v) => {
        signal.removeEventListener('abort', onAbort)
        resolve(v)
      },
      (err: Error) => {
        signal.removeEventListener('abort', onAbort)
        reject(err)
      },
    )
  })
}

/** Writes all of `data` at `position` on an open file (a write may be short on NFS). */
const writeAll = async (
  file: Awaited<ReturnType<typeof open>>,
  data: string,
  position: number,
): Promise<void> => {
  const buf = Buffer.from(data, 'utf8')
  let done = 0
  while (done < buf.length) {
    const { bytesWritten } = await file.write(buf, done, buf.length - done, position + done)
    done += bytesWritten
  }
}

const writeFlags = (exclusive: boolean) =>
  constants.O_WRONLY | constants.O_CREAT | (exclusive ? constants.O_EXCL : constants.O_TRUNC)

/**
 * node:fs/promises on the shared directory, in this process: for one-shot CLI commands, unit
 * tests, and the I/O process itself. A hung mount holds this process's libuv threads, so the
 * long-running supervisor uses `startSharedFsProcess` instead.
 */
export const localSharedFs = (root: string): SharedFs => {
  let closed = false
  /** How to reject each call still waiting, with the words naming it, for close(). */
  const waiting = new Map<(err: Error) => void, string>()
  const run = <T>(
    op: SharedFsOp,
    paths: readonly string[],
    signal: AbortSignal | undefined,
    work: (...full: string[]) => Promise<T>,
  ): Promise<T> => {
    const what = describeOp(op, root, paths)
    if (closed) return Promise.reject(closedError(what))
    return new Promise<T>((resolve, reject) => {
      waiting.set(reject, what)
      const settle = (finish: () => void) => {
        waiting.delete(reject)
        finish()
      }
      void abortable(what, signal, () =>
        work(...paths.map((p) => join(root, p))).catch((err: unknown) => {
          throw new SharedFsError(
            codeOf(err),
            `${what} failed: ${err instanceof Error ? err.message : String(err)}`,
            { cause: err },
          )
        }),
      ).then(
        (v) => settle(() => resolve(v)),
        (err: Error) => settle(() => reject(err)),
      )
    })
  }
  const ifExists = async <T>(work: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await work()
    } catch (err) {
      if (codeOf(err) === 'ENOENT') return undefined
      throw err
    }
  }
  const writeAt = async (full: string, data: string, flags: number): Promise<void> => {
    const file = await open(full, flags, 0o666)
    try {
      await writeAll(file, data, 0)
      await file.sync()
    } finally {
      await file.close()
    }
  }
  return {
    root,
    read: (path, o) => run('read', [path], o?.signal, (f) => ifExists(() => readFile(f, 'utf8'))),
    write: (path, data, o) =>
      run('write', [path], o?.signal, (f) => writeAt(f, data, writeFlags(o?.exclusive === true))),
    overwrite: (path, data, o) =>
      run('overwrite', [path], o?.signal, (f) =>
        writeAt(f, data, constants.O_WRONLY | constants.O_CREAT),
      ),
    mkdir: (path, o) =>
      run('mkdir', [path], o?.signal, async (f) => {
        await mkdir(f, { recursive: o?.recursive === true })
      }),
    rename: (from, to, o) => run('rename', [from, to], o?.signal, (f, t) => rename(f, t)),
    readdir: (path, o) => run('readdir', [path], o?.signal, (f) => readdir(f)),
    stat: (path, o) =>
      run('stat', [path], o?.signal, (f) =>
        ifExists(async () => {
          const s = await stat(f)
          return { isDirectory: s.isDirectory(), mode: s.mode }
        }),
      ),
    close() {
      closed = true
      for (const [reject, what] of waiting) reject(closedError(what))
      waiting.clear()
    },
  }
}
