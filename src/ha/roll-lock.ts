import { join } from 'node:path'
import type { HaSpec } from '../config/plan.js'
import type { Clock } from '../seams/clock.js'
import { FsLeaseStore } from './fs-store.js'
import { Lease } from './lease.js'

/**
 * Cluster-wide roll locks: `maxUnavailable` slots per component in `<sharedDir>/roll/<component>/
 * <slot>`, each one a lease of its own (the same protocol as the active node's: claims by mkdir,
 * a renewed heartbeat, takeover only after `takeoverMs` of silence, release by writing
 * `released`). A node restarts an instance of a component that runs everywhere only while it
 * holds one slot, so that across all nodes at most `maxUnavailable` of its instances are down.
 * A node that dies holding a slot blocks nobody for long: its heartbeat stops, and after
 * `takeoverMs` the next node takes the slot.
 */
export class RollLocks {
  readonly #ha: HaSpec
  readonly #node: string
  readonly #clock: Clock

  constructor(ha: HaSpec, node: string, clock: Clock) {
    this.#ha = ha
    this.#node = node
    this.#clock = clock
  }

  /** Runs `fn` while holding one of the component's `slots` roll slots; `waiting` if it must wait. */
  async hold<T>(
    component: string,
    slots: number,
    fn: () => Promise<T>,
    waiting: (message: string) => void = () => {},
  ): Promise<T> {
    const leases = await Promise.all(
      Array.from({ length: slots }, async (_, slot) => {
        const store = new FsLeaseStore(join(this.#ha.sharedDir, 'roll', component, String(slot)))
        await store.init()
        return new Lease({
          store,
          clock: this.#clock,
          timings: this.#ha,
          cluster: `${this.#ha.name}/roll/${component}`,
          node: this.#node,
        })
      }),
    )
    let held: Lease | undefined
    try {
      held = await new Promise<Lease>((resolve) => {
        const timer = this.#clock.after(this.#ha.pollMs * 3, () =>
          waiting(`waiting for a roll slot of ${component} (another node is restarting one)`),
        )
        for (const l of leases) {
          l.once('active', () => {
            timer()
            resolve(l)
          })
          l.start()
        }
      })
      // One slot is enough: give back any other won meanwhile, and stop competing.
      for (const l of leases) if (l !== held) void l.release().finally(() => l.stop())
      return await fn()
    } finally {
      if (held) await held.release()
      for (const l of leases) l.stop()
    }
  }
}
