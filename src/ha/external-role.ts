import { EventEmitter } from 'node:events'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Cancel, Clock } from '../seams/clock.js'
import type { HaTimings, LeaseEvents, Role } from './lease.js'
import type { NodeRole } from './node-role.js'

/** Where the last epoch this node was promoted in is kept, in the state dir. */
export const EXTERNAL_EPOCH_FILE = 'external-epoch'

/**
 * The role of a node whose cluster manager decides (`ha.backend: {type: "external"}`, Pacemaker
 * through `tandem ocf`): standby until `promote()`, active until `release()` (demote). The
 * manager guarantees one active node, fencing (STONITH) one that does not stop; tandem only
 * follows. Each promotion takes the next epoch of this node (kept in the state dir, so a restart
 * never reuses one): children and logs tell one active term from the next.
 *
 * While active it "renews" itself every renewMs, from a timer of this process: the children's
 * and the watchdog's deadline is selfFenceMs after the last run of that timer, so that when this
 * process freezes, the watchdog kills the active children, as with a lease. Awake, it stays
 * active: only the manager demotes (its monitor sees the freeze and acts).
 */
export class ExternalRole extends EventEmitter<LeaseEvents> implements NodeRole {
  readonly #clock: Clock
  readonly #timings: HaTimings
  readonly #epochFile: string
  #role: Role = 'standby'
  #epoch: number
  #cancel: Cancel = () => {}
  #stopped = false

  constructor(options: { clock: Clock; timings: HaTimings; stateDir: string }) {
    super()
    this.#clock = options.clock
    this.#timings = options.timings
    this.#epochFile = join(options.stateDir, EXTERNAL_EPOCH_FILE)
    this.#epoch = this.#readEpoch()
  }

  get role(): Role {
    return this.#role
  }

  get epoch(): number {
    return this.#epoch
  }

  start(): void {}

  stop(): void {
    this.#stopped = true
    this.#cancel()
  }

  isActive(): boolean {
    return this.#role === 'active'
  }

  /**
   * Active: selfFenceMs from now, since this process runs now (the timer may just not have come
   * round yet after a freeze); standby: 0.
   */
  validForMs(): number {
    if (!this.isActive()) return 0
    return this.#timings.selfFenceMs
  }

  observed(): undefined {
    return undefined
  }

  /** `promote`: active in a new epoch (the same one when already active). */
  promote(why = 'promoted by the cluster manager'): number {
    if (this.isActive() || this.#stopped) return this.#epoch
    const epoch = this.#readEpoch() + 1
    // Written before acting: a crash right after must not reuse this epoch.
    writeFileSync(this.#epochFile, `${epoch}\n`)
    this.#epoch = epoch
    this.#role = 'active'
    this.emit('active', { epoch, why })
    this.#tick()
    return epoch
  }

  /** `demote`: standby; `quiesce` (stopping the active children) is awaited. False if not active. */
  async release(quiesce: () => Promise<void> = () => Promise.resolve()): Promise<boolean> {
    if (!this.isActive()) return false
    this.#role = 'standby'
    this.#cancel()
    this.emit('standby', { epoch: this.#epoch, why: 'released (demoted by the cluster manager)' })
    await quiesce()
    return true
  }

  #tick(): void {
    if (!this.isActive() || this.#stopped) return
    this.emit('renewed', { epoch: this.#epoch, validMs: this.#timings.selfFenceMs })
    this.#cancel = this.#clock.after(this.#timings.renewMs, () => this.#tick())
  }

  #readEpoch(): number {
    try {
      const n = Number(readFileSync(this.#epochFile, 'utf8').trim())
      return Number.isSafeInteger(n) && n > 0 ? n : 0
    } catch {
      return 0
    }
  }
}
