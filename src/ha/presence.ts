import { join } from 'node:path'
import { errorMessage } from '../errors.js'
import type { Cancel, Clock } from '../seams/clock.js'
import type { ClusterKv } from './cluster-kv.js'
import type { Peer, PresenceRecord } from '../status.js'

/** How often each node rewrites its presence file, and reads the others'. */
export const PRESENCE_MS = 500

/**
 * Who is in the cluster, for `status` and `tandem upgrade --cluster`: every node rewrites its own
 * `nodes/<node>` every PRESENCE_MS with a growing `seq` (and never touches another's); each one
 * reads the others' and notes when each last changed on its own monotonic clock. Informational
 * only: leadership is the lease's business, never decided from this.
 */
export class Presence {
  readonly #fs: ClusterKv
  readonly #self: () => Omit<PresenceRecord, 'seq'>
  readonly #clock: Clock
  readonly #onError: (m: string) => void
  readonly #seen = new Map<string, { raw: string; record: PresenceRecord; since: number }>()
  #seq = 0
  #cancel: Cancel = () => {}
  #stopped = false
  #lastError = ''

  constructor(
    fs: ClusterKv,
    self: () => Omit<PresenceRecord, 'seq'>,
    clock: Clock,
    onError: (m: string) => void,
  ) {
    this.#fs = fs
    this.#self = self
    this.#clock = clock
    this.#onError = onError
  }

  start(): void {
    const tick = () => {
      void this.#tick().finally(() => {
        if (!this.#stopped) this.#cancel = this.#clock.after(PRESENCE_MS, tick)
      })
    }
    tick()
  }

  stop(): void {
    this.#stopped = true
    this.#cancel()
  }

  /** The other nodes seen, with the age of their last change. */
  peers(): Peer[] {
    const now = this.#clock.monotonic()
    const me = this.#self().node
    return [...this.#seen.values()]
      .filter((p) => p.record.node !== me)
      .map((p) => ({ ...p.record, lastChangeAgoMs: Math.round(now - p.since) }))
      .sort((a, b) => a.node.localeCompare(b.node))
  }

  async #tick(): Promise<void> {
    try {
      await this.#fs.mkdir('nodes', { recursive: true })
      const record: PresenceRecord = { ...this.#self(), seq: ++this.#seq }
      await this.#fs.write(join('nodes', record.node), JSON.stringify(record) + '\n')
      for (const name of await this.#fs.readdir('nodes')) {
        const raw = await this.#fs.read(join('nodes', name)).catch(() => undefined)
        if (raw === undefined) continue
        const prev = this.#seen.get(name)
        if (prev?.raw === raw) continue
        try {
          const r = JSON.parse(raw) as PresenceRecord
          if (typeof r.node === 'string' && typeof r.seq === 'number')
            this.#seen.set(name, { raw, record: r, since: this.#clock.monotonic() })
        } catch {
          // a write in progress (in place): read again next time
        }
      }
      this.#lastError = ''
    } catch (err) {
      if (this.#stopped) return // the shared dir's access closed under it: not news
      const message = `presence in ${join(this.#fs.root, 'nodes')}: ${errorMessage(err)}`
      if (message !== this.#lastError) this.#onError(message)
      this.#lastError = message
    }
  }
}
