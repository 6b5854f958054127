import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { hasParentDeathSignal, SETPRIV } from '../process/spawn-child.js'
import type { SharedFsReply, SharedFsRequest } from './shared-fs-main.js'
import {
  abortError,
  closedError,
  describeOp,
  SharedFsError,
  type SharedFs,
  type SharedFsOp,
} from './shared-fs.js'

/**
 * Most operations outstanding at the I/O process at once. A hung mount holds one of its libuv
 * threads per operation; its pool is made this large, so every operation sent starts at once
 * instead of waiting inside libuv, where a caller that gives up could no longer withdraw it.
 * The lease has two at a time (a renew's heartbeat write and its read of `epoch`, or a poll's
 * read and an owner read in the background); presence, the cluster upgrade requests and a roll
 * slot's lease one or two each: 6 lets none of them wait behind another's slow operation.
 */
export const DEFAULT_MAX_IN_FLIGHT = 6

export interface SharedFsProcessOptions {
  /**
   * Most operations sent to the I/O process and not yet answered (default 6), counting those
   * whose caller stopped waiting: each may hold a thread there. Further calls wait in a FIFO
   * queue in this process, where waiting costs nothing and an abort removes them.
   */
  maxInFlight?: number
  /** Told, in a sentence, when the I/O process exits without being closed, or cannot start. */
  onProblem?: (message: string) => void
}

/** The SharedFs of a separate I/O process, with what a test or `status` may want to see. */
export interface SharedFsProcess extends SharedFs {
  /** The running I/O process; undefined before a restart or after close(). */
  readonly pid: number | undefined
  /** Operations sent and not yet answered, including those whose caller stopped waiting. */
  readonly inFlight: number
  /** Operations waiting in this process for a slot. */
  readonly queued: number
}

const SELF = import.meta.url
// Run from source (tests under tap's TypeScript loader), the I/O process needs that loader too.
const FROM_SOURCE = SELF.endsWith('.ts')
const MAIN = fileURLToPath(
  new URL(FROM_SOURCE ? './shared-fs-main.ts' : './shared-fs-main.js', SELF),
)
const NODE_ARGS = FROM_SOURCE ? process.execArgv : []

/** One call, from the caller's promise to the I/O process's answer. */
interface Call {
  request: SharedFsRequest
  what: string
  resolve: (value: unknown) => void
  reject: (err: Error) => void
  /** False once the caller stopped waiting (answered, aborted, closed): an answer is dropped. */
  waiting: boolean
  /** Removes the abort listener. */
  unlisten: () => void
}

/**
 * Runs the shared directory's I/O in its own small Node process (shared-fs-main.ts), so that a
 * hung NFS or zFS call holds that process's threads, never the supervisor's: the supervisor's
 * log, control socket, health checks and exit go on. The process starts now, and again at the
 * next call after it died; it dies with the supervisor (parent-death signal where setpriv
 * exists, and on its own when the IPC channel closes).
 */
export const startSharedFsProcess = (
  root: string,
  options: SharedFsProcessOptions = {},
): SharedFsProcess => {
  const maxInFlight = Math.max(1, Math.floor(options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT))
  const onProblem = options.onProblem ?? (() => {})
  /** The running I/O process, and how to give it up (it died, or its channel broke). */
  let child: { proc: ChildProcess; gone: (why: string) => void } | undefined
  let nextId = 1
  let closed = false
  const queue: Call[] = []
  const sent = new Map<number, Call>()

  const finish = (call: Call, settle: () => void) => {
    if (!call.waiting) return
    call.waiting = false
    call.unlisten()
    settle()
  }

  /**
   * Someone awaits an answer: keep the event loop alive for it (a one-shot script would otherwise
   * end with its promise pending). Idle, or with only abandoned operations, the I/O process must
   * not keep this process alive.
   */
  const holdLoop = () => {
    const waited = queue.length > 0 || [...sent.values()].some((c) => c.waiting)
    const proc = child?.proc
    if (!proc) return
    if (waited) {
      proc.ref()
      proc.channel?.ref()
    } else {
      proc.unref()
      proc.channel?.unref()
    }
  }

  const launch = (): NonNullable<typeof child> => {
    const args = [...NODE_ARGS, MAIN, root]
    const [cmd, cmdArgs] = hasParentDeathSignal()
      ? [SETPRIV, ['--pdeathsig', 'KILL', '--', process.execPath, ...args]]
      : [process.execPath, args]
    // Its own thread pool as large as the operations it may be sent, so that one slow operation
    // never waits behind another inside it.
    const proc = spawn(cmd, cmdArgs, {
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      env: { ...process.env, UV_THREADPOOL_SIZE: String(Math.max(4, maxInFlight)) },
    })
    let ended = false
    const gone = (why: string) => {
      if (ended) return
      ended = true
      if (closed || child?.proc !== proc) return
      child = undefined
      // A broken channel with the process still there: do not leave it. Hung in the mount, it may
      // outlive this kill for a while; it must not keep the supervisor from exiting meanwhile.
      proc.kill('SIGKILL')
      proc.unref()
      const lost = [...sent.values()]
      sent.clear()
      for (const call of lost) {
        finish(call, () =>
          call.reject(
            new SharedFsError(
              'EIO',
              `${call.what}: the shared-dir I/O process ${why} before answering`,
            ),
          ),
        )
      }
      onProblem(
        `shared-dir I/O process ${proc.pid ?? '(not started)'} ${why}; ${lost.length} operation(s) failed; the next one starts a new process`,
      )
      pump()
    }
    proc.on('message', (msg: SharedFsReply) => answer(msg))
    proc.once('exit', (code, signal) => gone(`exited (code ${code}, signal ${signal})`))
    proc.once('disconnect', () => gone('exited (its IPC channel closed)'))
    // `on`: a failed kill() emits 'error' again, and an unheard 'error' would crash the supervisor.
    proc.on('error', (err) => gone(`failed: ${err.message}`))
    return { proc, gone }
  }

  const answer = (msg: SharedFsReply) => {
    const call = sent.get(msg.id)
    if (!call) return
    sent.delete(msg.id)
    if (msg.ok) finish(call, () => call.resolve(msg.value))
    else finish(call, () => call.reject(new SharedFsError(msg.code, msg.message)))
    pump()
  }

  /** Sends queued calls while slots are free, starting the I/O process if none runs. */
  const pump = () => {
    while (!closed && queue.length > 0 && sent.size < maxInFlight) {
      const call = queue.shift()!
      const { proc, gone } = (child ??= launch())
      sent.set(call.request.id, call)
      try {
        proc.send(call.request, (err) => err && gone(`could not be sent to (${err.message})`))
      } catch (err) {
        gone(`could not be sent to (${(err as Error).message})`)
      }
    }
    holdLoop()
  }

  const call = <T>(
    op: SharedFsOp,
    paths: readonly string[],
    args: unknown[],
    signal: AbortSignal | undefined,
  ): Promise<T> => {
    const what = describeOp(op, root, paths)
    if (closed) return Promise.reject(closedError(what))
    if (signal?.aborted) return Promise.reject(abortError(what, signal))
    return new Promise<T>((resolve, reject) => {
      const c: Call = {
        request: { id: nextId++, op, args },
        what,
        resolve: resolve as (value: unknown) => void,
        reject,
        waiting: true,
        unlisten: () => {},
      }
      if (signal) {
        const onAbort = () => {
          // Not sent yet: simply withdrawn. Sent: it still holds its slot until answered.
          const i = queue.indexOf(c)
          if (i >= 0) queue.splice(i, 1)
          finish(c, () => reject(abortError(what, signal)))
          holdLoop()
        }
        signal.addEventListener('abort', onAbort, { once: true })
        c.unlisten = () => signal.removeEventListener('abort', onAbort)
      }
      queue.push(c)
      pump()
    })
  }

  child = launch()
  holdLoop()
  return {
    root,
    get pid() {
      return child?.proc.pid
    },
    get inFlight() {
      return sent.size
    },
    get queued() {
      return queue.length
    },
    read: (path, o) => call('read', [path], [path], o?.signal),
    write: (path, data, o) =>
      call('write', [path], [path, data, { exclusive: o?.exclusive === true }], o?.signal),
    overwrite: (path, data, o) => call('overwrite', [path], [path, data], o?.signal),
    mkdir: (path, o) =>
      call('mkdir', [path], [path, { recursive: o?.recursive === true }], o?.signal),
    rename: (from, to, o) => call('rename', [from, to], [from, to], o?.signal),
    readdir: (path, o) => call('readdir', [path], [path], o?.signal),
    stat: (path, o) => call('stat', [path], [path], o?.signal),
    close() {
      if (closed) return
      closed = true
      const waiting = [...queue, ...sent.values()]
      queue.length = 0
      sent.clear()
      for (const c of waiting) finish(c, () => c.reject(closedError(c.what)))
      const proc = child?.proc
      child = undefined
      if (!proc) return
      // SIGKILL, not a goodbye: a process in an uninterruptible NFS or FUSE wait ends only when
      // that wait does, and the supervisor must not wait for it.
      proc.kill('SIGKILL')
      proc.unref()
      proc.channel?.unref()
      try {
        proc.disconnect()
      } catch {
        // already disconnected
      }
    },
  }
}
