import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, existsSync } from 'node:fs'
import { getDefaultHighWaterMark, setDefaultHighWaterMark, type Readable } from 'node:stream'
import { TandemError } from '../errors.js'
import { execChain, SETPRIV, type ExecSpec } from './exec-chain.js'
import { resolveCommand } from './resolve-command.js'
import { openPipe } from './pipe-reader.js'
import { signalGroup } from './process-group.js'
import type { PipeEnds, PipeSource } from './fifo-pipes.js'

export { SETPRIV }

/** What to run for one instance. */
export interface SpawnRequest {
  argv: string[]
  cwd: string
  env: NodeJS.ProcessEnv
  /** Open an IPC channel (fd 3, or fd 4 after a listening socket) for readiness and role messages. */
  ipc: boolean
  /** A listening socket to pass the child, systemd's way (see LISTEN_ENV). */
  listen?: ListenSocket
  /** Signal the kernel sends the child if the supervisor dies (Linux parent-death signal). */
  parentDeathSignal: NodeJS.Signals
  /** Account, umask, resource limits (absent: as the supervisor). */
  exec?: ExecSpec
  /** The cgroup.procs file of the cgroup the child joins before its program runs. */
  cgroupProcs?: string
  /** Real pipes for stdout and stderr (fifo-pipes.ts); without, or none ready: socketpairs. */
  pipes?: PipeSource
}

/**
 * A listening socket passed to a child as systemd passes one (sd_listen_fds(3)): fd 3, with
 * LISTEN_FDS=1, LISTEN_PID (the program's own pid, set by the exec chain's shell step) and
 * LISTEN_FDNAMES. An IPC channel then is fd 4 (Node's NODE_CHANNEL_FD says which).
 */
export interface ListenSocket {
  fd: number
  /** LISTEN_FDNAMES: systemd's FileDescriptorName= (the component's name). */
  name: string
  /** Also as fd 0 (stdin), inetd style: Java's System.inheritedChannel() takes it there. */
  stdin: boolean
  /** TANDEM_SOCKET_BACKLOG: a program that calls listen(2) again keeps tandem's backlog. */
  backlog: number
}

/** The variables of systemd's socket activation protocol. */
export const LISTEN_ENV = [
  'LISTEN_FDS',
  'LISTEN_PID',
  'LISTEN_FDNAMES',
  'TANDEM_SOCKET_BACKLOG',
] as const

/**
 * The child's environment: `env` with the socket's LISTEN_FDS and LISTEN_FDNAMES, or without any
 * LISTEN_* at all (a tandem started by systemd's socket activation has its own in its
 * environment: they describe tandem's fds, not the child's).
 */
export const listenEnv = (
  env: NodeJS.ProcessEnv,
  listen: ListenSocket | undefined,
): NodeJS.ProcessEnv => {
  const out = { ...env }
  for (const k of LISTEN_ENV) delete out[k]
  if (listen) {
    out.LISTEN_FDS = '1'
    out.LISTEN_FDNAMES = listen.name
    out.TANDEM_SOCKET_BACKLOG = String(listen.backlog)
  }
  return out
}

/** How a child process ended, as the OS reported it. */
export interface ProcessExit {
  code: number | null
  signal: NodeJS.Signals | null
  /** Set when the OS refused to start the process at all. */
  error?: string
  /** The kernel's OOM killer killed a process of its cgroup (cgroup v2 memory.events). */
  oomKilled?: boolean
}

/** A spawned child: the leader of its own process group (pgid == pid). */
export interface ChildHandle {
  pid: number
  stdout: Readable
  stderr: Readable
  /** Settles once, when the leader exits. */
  exited: Promise<ProcessExit>
  /** Subscribes to IPC messages; returns its undo. */
  onMessage(fn: (msg: unknown) => void): () => void
  /** Sends on the IPC channel; false without one, or once it is closed. */
  send(msg: unknown): boolean
}

export type Spawn = (req: SpawnRequest) => ChildHandle

/**
 * Whether util-linux setpriv can give children a parent-death signal: then a SIGKILLed
 * supervisor takes its direct children with it at once, with no helper process involved.
 */
export const hasParentDeathSignal = (): boolean =>
  process.platform === 'linux' && existsSync(SETPRIV)

/**
 * Spawns one instance in its own process group, without a shell. Throws ESPAWN (naming the
 * program, with ENOENT or EACCES) when the program cannot be executed; nothing is spawned then.
 */
export const spawnChild: Spawn = (req) => {
  const [program, ...args] = req.argv
  if (!existsSync(req.cwd)) {
    throw new TandemError(
      'ESPAWN',
      `cannot start ${program}: working directory ${req.cwd} does not exist (ENOENT)`,
    )
  }
  const file = resolveCommand(program!, req.cwd, req.env.PATH)
  const [cmd, ...cmdArgs] = execChain(
    req.exec,
    {
      parentDeathSignal: hasParentDeathSignal() ? req.parentDeathSignal : undefined,
      cgroupProcs: req.cgroupProcs,
      listenPid: req.listen !== undefined,
    },
    file,
    args,
  )
  const { listen } = req
  const pipes = takePipes(req.pipes)
  let child: ChildProcess
  // Our ends of the child's stdout and stderr buffer nothing beyond one read (high-water mark
  // 0, for the streams made here, synchronously; the default is restored at once): Node stops
  // reading a pipe while its stream holds more than that, so a reader that pauses
  // (logging/read-pipe.ts) leaves the lines in the pipe and then takes them in one read, rather
  // than the event loop reading them one at a time, a system call and a wake-up each.
  const highWaterMark = getDefaultHighWaterMark(false)
  setDefaultHighWaterMark(false, 0)
  try {
    child = spawn(cmd!, cmdArgs, {
      cwd: req.cwd,
      env: listenEnv(req.env, listen),
      detached: true,
      stdio: [
        listen?.stdin ? listen.fd : 'ignore',
        pipes ? pipes.out.write : 'pipe',
        pipes ? pipes.err.write : 'pipe',
        ...(listen ? [listen.fd] : []),
        ...(req.ipc ? ['ipc' as const] : []),
      ],
    })
  } catch (err) {
    if (pipes) for (const fd of [pipes.out.read, pipes.err.read]) closeSync(fd)
    throw new TandemError('ESPAWN', `cannot spawn ${file}: ${(err as Error).message}`, {
      cause: err,
    })
  } finally {
    setDefaultHighWaterMark(false, highWaterMark)
    // The child has its own copies (or never ran: then our read ends see the end at once).
    if (pipes) for (const fd of [pipes.out.write, pipes.err.write]) closeSync(fd)
  }
  let stdout: Readable
  let stderr: Readable
  if (!pipes) {
    stdout = child.stdout!
    stderr = child.stderr!
  } else {
    let opened: Readable[] = []
    try {
      opened = [openPipe(pipes.out.read)]
      opened.push(openPipe(pipes.err.read))
    } catch (err) {
      // Not expected of a valid fd; the child must not run on unread pipes, untracked.
      opened.forEach((s) => s.destroy())
      for (const fd of [pipes.out.read, pipes.err.read].slice(opened.length)) closeSync(fd)
      if (child.pid !== undefined) signalGroup(child.pid, 'SIGKILL')
      throw new TandemError(
        'ESPAWN',
        `cannot read the output of ${file}: ${(err as Error).message}`,
        {
          cause: err,
        },
      )
    }
    ;[stdout, stderr] = opened as [Readable, Readable]
  }
  const exited = new Promise<ProcessExit>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }))
    // An async spawn failure (a race with our checks, EAGAIN): the process never ran.
    child.once('error', (err) => {
      if (child.pid === undefined) resolve({ code: null, signal: null, error: err.message })
    })
  })
  return {
    pid: child.pid ?? -1,
    stdout,
    stderr,
    exited,
    onMessage(fn) {
      child.on('message', fn)
      return () => child.off('message', fn)
    },
    send(msg) {
      if (!child.connected) return false
      try {
        return child.send(msg as never, (err) => err && undefined)
      } catch {
        return false
      }
    },
  }
}

/** Two pipes (stdout, stderr) from `source`, or none: a child gets both or neither. */
const takePipes = (
  source: PipeSource | undefined,
): { out: PipeEnds; err: PipeEnds } | undefined => {
  const out = source?.take()
  if (!out) return undefined
  const err = source!.take()
  if (err) return { out, err }
  closeSync(out.read)
  closeSync(out.write)
  return undefined
}
