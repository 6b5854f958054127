import type { HaSpec } from '../config/plan.js'
import { TandemError } from '../errors.js'
import type { Clock } from '../seams/clock.js'
import { Lease, type LeaseStore } from './lease.js'

/**
 * Cluster-wide roll locks: `maxUnavailable` slots per component (`roll/<component>/<slot>` in the
 * shared dir or under the etcd prefix), each one a lease of its own (the same protocol as the active node's: claims by mkdir,
 * a renewed heartbeat, takeover only after `takeoverMs` of silence, release by writing
 * `released`). A node restarts an instance of a component that runs everywhere only while it
 * holds one slot, so that across all nodes at most `maxUnavailable` of its instances are down.
 * A node that dies holding a slot blocks nobody for long: its heartbeat stops, and after
 * `takeoverMs` the next node takes the slot. The work done while holding a slot is fenced with
 * it: if the slot's lease lapses meanwhile (storage hung, this process paused), another node may
 * be restarting an instance of the same component, so the step fails with ELEASELOST instead of
 * counting as done (the rollout then stops and rolls back, as for any failed step).
 */
export class RollLocks {
  readonly #ha: HaSpec
  readonly #node: string
  readonly #clock: Clock
  readonly #slotStore: (component: string, slot: number) => Promise<LeaseStore>

  /** `slotStore`: the lease store of one slot, ready to claim (ClusterBackend.slotStore). */
  constructor(
    ha: HaSpec,
    node: string,
    clock: Clock,
    slotStore: (component: string, slot: number) => Promise<LeaseStore>,
  ) {
    this.#ha = ha
    this.#node = node
    this.#clock = clock
    this.#slotStore = slotStore
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
        return new Lease({
          store: await this.#slotStore(component, slot),
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
      let lapsed: string | undefined
      held.once('standby', ({ why }) => (lapsed = why))
      const result = await fn()
      if (lapsed !== undefined || !held.isActive()) {
        throw new TandemError(
          'ELEASELOST',
          `the roll slot of ${component} lapsed while this node held it (${lapsed ?? 'no longer held'}): another node may have restarted an instance of ${component} meanwhile, so this step does not count as done`,
        )
      }
      return result
    } finally {
      if (held) await held.release()
      for (const l of leases) l.stop()
    }
  }
}
