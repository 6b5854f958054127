import { spawn } from 'node:child_process'
import net from 'node:net'
import { constants } from 'node:os'
import { getSystemErrorName } from 'node:util'
import { TandemError } from '../errors.js'

/** The listening socket an instance wants tandem to hold (its port and component's `socket`). */
export interface SocketSpec {
  port: number
  /** Address to bind; undefined: every address (:: dual stack, or 0.0.0.0 without IPv6). */
  host: string | undefined
  backlog: number
}

/** The native TCP handle Node's net module binds with (`net._createServerHandle`). */
interface TcpHandle {
  fd: number
  close(): void
  getsockname(out: { port?: number }): number
}

/**
 * Node's own bind (the one cluster workers use): a TCP socket bound with SO_REUSEADDR, not yet
 * listening, with no libuv watcher on it. Returns a negative errno when the bind fails.
 */
type CreateServerHandle = (
  address: string,
  port: number,
  addressType: 4 | 6,
  fd: undefined,
  flags: number,
) => TcpHandle | number
const createServerHandle = (net as unknown as { _createServerHandle: CreateServerHandle })
  ._createServerHandle

/**
 * Run by a one-shot helper that has the bound socket as fd 3: listen(2) on it with the backlog
 * ($1), then exit. Node reports the listen's outcome ('listening' or 'error', with EADDRINUSE when
 * a stranger listens on an address that overlaps: Linux lets both bind, only listen fails) on the
 * next tick, before its event loop could poll, so the helper never accepts a connection. The
 * listening state belongs to the socket, not to the process, so it outlives the helper; and
 * tandem, which never called listen on its own handle, never polls or accepts on it: every
 * connection is left to the instance's process.
 */
const LISTEN_SCRIPT =
  "require('net').createServer()" +
  ".on('error', (e) => { process.stderr.write(String(e.code || e.message)); process.exit(3) })" +
  ".on('listening', () => process.exit(0))" +
  '.listen({ fd: 3 }, Number(process.argv[1]))'

interface Held {
  spec: SocketSpec
  handle: TcpHandle
  /** Settles once listen(2) is done (or failed: then the entry is gone). */
  listening: Promise<void>
  closed: boolean
}

const sameSpec = (a: SocketSpec, b: SocketSpec): boolean =>
  a.port === b.port && a.host === b.host && a.backlog === b.backlog

const where = (spec: SocketSpec, host: string): string =>
  `${host.includes(':') ? `[${host}]` : host}:${spec.port}`

/**
 * The listening sockets tandem holds for instances with `socket` (systemd-style socket
 * activation), by instance id. A socket is bound and made to listen the first time its instance
 * starts, passed to every process of it (fd 3), and closed only when the instance no longer
 * wants it (it left the plan, was stopped by an operator, failed, or the supervisor shuts
 * down): connections that arrive while the instance restarts wait in the kernel's backlog.
 */
export class HeldSockets {
  readonly #held = new Map<string, Held>()

  /**
   * The fd of the instance's listening socket, bound now if it is not held yet (or held with
   * another port, address or backlog: that one is closed first). Throws EPORTINUSE when the
   * address is taken, ESPAWN for any other failure to bind or listen, naming the address.
   */
  async acquire(id: string, spec: SocketSpec): Promise<number> {
    const held = this.#held.get(id)
    if (held && sameSpec(held.spec, spec)) {
      await held.listening
      return held.handle.fd
    }
    if (held) this.release(id)
    const { handle, host } = bind(id, spec)
    const entry: Held = { spec, handle, listening: Promise.resolve(), closed: false }
    entry.listening = listen(handle.fd, spec.backlog).then(
      () => {
        if (entry.closed) throw new TandemError('ESPAWN', `${id}: its socket was released`)
      },
      (err: Error & { errno?: string }) => {
        this.#close(id, entry)
        throw new TandemError(
          err.errno === 'EADDRINUSE' ? 'EPORTINUSE' : 'ESPAWN',
          `${id}: cannot listen on ${where(spec, host)}: ${err.message}`,
          { cause: err },
        )
      },
    )
    this.#held.set(id, entry)
    await entry.listening
    return handle.fd
  }

  /** The fd held for the instance, if any (a query). */
  fdOf(id: string): number | undefined {
    return this.#held.get(id)?.handle.fd
  }

  /** Closes the instance's socket: new connections are refused again. Idempotent. */
  release(id: string): void {
    const held = this.#held.get(id)
    if (held) this.#close(id, held)
  }

  /** Releases every socket whose instance `keep` does not name. */
  releaseUnless(keep: (id: string) => boolean): void {
    for (const id of [...this.#held.keys()]) if (!keep(id)) this.release(id)
  }

  /** Closes them all (shutdown). */
  close(): void {
    for (const id of [...this.#held.keys()]) this.release(id)
  }

  #close(id: string, held: Held): void {
    if (held.closed) return
    held.closed = true
    held.handle.close()
    if (this.#held.get(id) === held) this.#held.delete(id)
  }
}

const bind = (id: string, spec: SocketSpec): { handle: TcpHandle; host: string } => {
  const attempt = (host: string): TcpHandle | number =>
    createServerHandle(host, spec.port, host.includes(':') ? 6 : 4, undefined, 0)
  let host = spec.host ?? '::'
  let result = attempt(host)
  // A host without IPv6 cannot bind '::' at all: every IPv4 address then.
  if (
    spec.host === undefined &&
    typeof result === 'number' &&
    ['EAFNOSUPPORT', 'EADDRNOTAVAIL'].includes(getSystemErrorName(result))
  ) {
    host = '0.0.0.0'
    result = attempt(host)
  }
  // libuv keeps a bind's EADDRINUSE for the listen that follows (which, done by the helper on an
  // unbound socket, would pick a random port): an unbound socket here is that error.
  if (typeof result !== 'number') {
    const name: { port?: number } = {}
    if (result.getsockname(name) !== 0 || name.port !== spec.port) {
      result.close()
      result = -constants.errno.EADDRINUSE
    }
  }
  if (typeof result === 'number') {
    const code = getSystemErrorName(result)
    throw new TandemError(
      code === 'EADDRINUSE' ? 'EPORTINUSE' : 'ESPAWN',
      `${id}: cannot bind ${where(spec, host)}: ${code}`,
    )
  }
  return { handle: result, host }
}

/** listen(2) on `fd` with `backlog`, done by a one-shot helper (see LISTEN_SCRIPT). */
const listen = (fd: number, backlog: number): Promise<void> =>
  new Promise((resolve, reject) => {
    const helper = spawn(process.execPath, ['-e', LISTEN_SCRIPT, String(backlog)], {
      stdio: ['ignore', 'ignore', 'pipe', fd],
    })
    let stderr = ''
    helper.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s))
    helper.once('error', reject)
    helper.once('close', (code, signal) => {
      if (code === 0) return resolve()
      const errno = /^E[A-Z]+$/.test(stderr.trim()) ? stderr.trim() : undefined
      reject(
        Object.assign(
          new Error(errno ?? `the listen helper ended with ${signal ?? `exit code ${code}`}`),
          { errno },
        ),
      )
    })
  })
