// A TCP proxy inside the test process, in front of one server (an etcd member): a network
// partition a test can make and heal. `cut('refuse')` resets every connection and stops
// listening (new connections are refused, as from a host that is up with nothing to reach);
// `cut('blackhole')` stops forwarding in both directions on every connection, old and new, and
// answers nothing (as a dropped route does: the client learns only from its own timeouts).
import { connect, createServer, type Server, type Socket } from 'node:net'

export type ProxyCut = 'refuse' | 'blackhole'

interface Pair {
  client: Socket
  upstream: Socket | undefined
  /** Data on this pair is dropped from now on (a black hole), until it is closed at the heal. */
  holed: boolean
}

const ignore = () => undefined

export class TcpProxy {
  readonly port: number
  readonly target: { host: string; port: number }
  readonly #server: Server
  readonly #pairs = new Set<Pair>()
  #state: 'open' | ProxyCut = 'open'
  #listening = false

  private constructor(port: number, target: { host: string; port: number }) {
    this.port = port
    this.target = target
    this.#server = createServer((client) => this.#accept(client))
  }

  /** Listens on 127.0.0.1:`port`, forwarding to `target`; closed at teardown. */
  static async start(
    t: { teardown(fn: () => unknown): void },
    port: number,
    target: { host: string; port: number },
  ): Promise<TcpProxy> {
    const p = new TcpProxy(port, target)
    await p.#listen()
    t.teardown(() => p.close())
    return p
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`
  }

  get state(): 'open' | ProxyCut {
    return this.#state
  }

  #listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject)
      this.#server.listen(this.port, '127.0.0.1', () => {
        this.#server.off('error', reject)
        this.#listening = true
        resolve()
      })
    })
  }

  #accept(client: Socket): void {
    client.on('error', ignore)
    const pair: Pair = { client, upstream: undefined, holed: this.#state !== 'open' }
    this.#pairs.add(pair)
    client.once('close', () => {
      pair.upstream?.destroy()
      this.#pairs.delete(pair)
    })
    if (pair.holed) {
      client.on('data', ignore) // read and dropped: the client's writes never block
      return
    }
    const upstream = connect(this.target.port, this.target.host)
    pair.upstream = upstream
    upstream.on('error', ignore)
    upstream.once('close', () => {
      // An upstream that went away (a member killed) ends the client's connection too, unless
      // the pair is in a black hole, where nothing at all reaches the client.
      if (!pair.holed) client.destroy()
    })
    client.on('data', (d: Buffer) => {
      if (!pair.holed) upstream.write(d)
    })
    upstream.on('data', (d: Buffer) => {
      if (!pair.holed) client.write(d)
    })
  }

  /** Cuts the way to the target (see the file's header); `heal()` opens it again. */
  async cut(mode: ProxyCut): Promise<void> {
    this.#state = mode
    if (mode === 'refuse') {
      for (const p of this.#pairs) {
        p.holed = true
        p.upstream?.destroy()
        p.client.resetAndDestroy()
      }
      if (this.#listening) {
        this.#listening = false
        await new Promise<void>((resolve) => this.#server.close(() => resolve()))
      }
      return
    }
    for (const p of this.#pairs) {
      p.holed = true
      p.client.on('data', ignore)
    }
  }

  /** Forwards again. Connections that were cut are closed: whatever was in flight was lost. */
  async heal(): Promise<void> {
    for (const p of this.#pairs) {
      p.upstream?.destroy()
      p.client.destroy()
    }
    this.#state = 'open'
    if (!this.#listening) await this.#listen()
  }

  /** Closes every connection and stops listening (idempotent). */
  async close(): Promise<void> {
    this.#state = 'refuse'
    for (const p of this.#pairs) {
      p.upstream?.destroy()
      p.client.destroy()
    }
    if (!this.#listening) return
    this.#listening = false
    await new Promise<void>((resolve) => this.#server.close(() => resolve()))
  }
}
