import { createHash, randomBytes } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { errorMessage } from '../errors.js'
import type { Cancel, Clock } from '../seams/clock.js'

/** The protocol's timings (../shared/DESIGN.md, hot standby); every node must use the same. */
export interface HaTimings {
  /** The active writes its heartbeat this often. */
  renewMs: number
  /** The active fences itself when its last good renew started longer ago than this. */
  selfFenceMs: number
  /** A standby claims the next epoch after the heartbeat has not changed for this long. */
  takeoverMs: number
  /** A standby reads the heartbeat this often. */
  pollMs: number
}

/** Who made a claim: read back after an EEXIST to tell a lost reply from a lost race. */
export interface ClaimOwner {
  node: string
  pid: number
  nonce: string
}

/** `hb/<epoch>`: written only by the epoch's owner. */
export interface Heartbeat {
  epoch: number
  seq: number
  state: 'active' | 'released'
  node: string
  cfgHash: string
}

/**
 * The shared directory as the lease sees it: each operation one file operation there, none of
 * them trusted to be quick (a hard NFS mount can hang one for minutes).
 */
export interface LeaseStore {
  /**
   * Claims `epoch` (mkdir `claims/<epoch>`, then its `owner`): 'won', or 'lost' when it existed.
   * An EEXIST is resolved by reading `owner`: ours (same nonce) after a lost reply is 'won'.
   */
  claim(epoch: number, owner: ClaimOwner): Promise<'won' | 'lost'>
  /** The highest claimed epoch (0: none yet). */
  highestClaim(): Promise<number>
  /** The owner of a claim, undefined if it has none (yet). */
  readOwner(epoch: number): Promise<ClaimOwner | undefined>
  /** `hb/<epoch>` as written, undefined when there is none. */
  readHeartbeat(epoch: number): Promise<string | undefined>
  /** Writes `hb/<epoch>` and closes it. */
  writeHeartbeat(hb: Heartbeat): Promise<void>
}

/** A hash of what every node must agree on; carried in each heartbeat. */
export const timingsHash = (cluster: string, t: HaTimings): string =>
  createHash('sha256')
    .update(JSON.stringify([cluster, t.renewMs, t.selfFenceMs, t.takeoverMs, t.pollMs]))
    .digest('hex')
    .slice(0, 16)

/** A heartbeat's text parsed and checked, or why it is not one. */
export const parseHeartbeat = (
  raw: string,
  epoch: number,
): { hb: Heartbeat } | { problem: string } => {
  let v: unknown
  try {
    v = JSON.parse(raw)
  } catch {
    return { problem: `not JSON: ${JSON.stringify(raw.slice(0, 80))}` }
  }
  const hb = v as Partial<Heartbeat> | null
  if (
    typeof hb !== 'object' ||
    hb === null ||
    typeof hb.epoch !== 'number' ||
    typeof hb.seq !== 'number' ||
    (hb.state !== 'active' && hb.state !== 'released') ||
    typeof hb.node !== 'string' ||
    typeof hb.cfgHash !== 'string'
  ) {
    return { problem: `not a heartbeat: ${JSON.stringify(raw.slice(0, 80))}` }
  }
  if (hb.epoch !== epoch) return { problem: `epoch ${hb.epoch} in the file of epoch ${epoch}` }
  return { hb: hb as Heartbeat }
}

/** What a standby remembers of the heartbeat it watches. */
export interface Watched {
  epoch: number
  raw: string | undefined
  /** Own monotonic time when `raw` (or `epoch`) was first seen. */
  since: number
}

/**
 * A standby's decision after reading the highest claim and its heartbeat at monotonic `now`
 * (pure): claim the next epoch, or wait. Liveness is change: only content unchanged for
 * `takeoverMs` on this node's own monotonic clock, or a valid `released` heartbeat written by the
 * claim's owner, lets it claim. No time written by another node is read. Content that is not a
 * heartbeat is not evidence of anything: it only counts by not changing.
 */
export const standbyDecision = (
  seen: { epoch: number; raw: string | undefined; owner: ClaimOwner | undefined },
  prev: Watched | undefined,
  now: number,
  timings: HaTimings,
): { watched: Watched; claim: boolean; why: string } => {
  if (seen.epoch === 0) {
    return { watched: { epoch: 0, raw: undefined, since: now }, claim: true, why: 'no claim yet' }
  }
  const changed = !prev || prev.epoch !== seen.epoch || prev.raw !== seen.raw
  const watched = changed ? { epoch: seen.epoch, raw: seen.raw, since: now } : prev
  if (seen.raw !== undefined) {
    const parsed = parseHeartbeat(seen.raw, seen.epoch)
    if (
      'hb' in parsed &&
      parsed.hb.state === 'released' &&
      seen.owner !== undefined &&
      parsed.hb.node === seen.owner.node
    ) {
      return { watched, claim: true, why: `epoch ${seen.epoch} released by ${parsed.hb.node}` }
    }
  }
  const quiet = now - watched.since
  if (quiet >= timings.takeoverMs) {
    return {
      watched,
      claim: true,
      why: `heartbeat of epoch ${seen.epoch} unchanged for ${Math.round(quiet)} ms`,
    }
  }
  return { watched, claim: false, why: '' }
}

/**
 * Whether the holder of an epoch may still act as active (pure): its last good renew started
 * less than `selfFenceMs` ago, elapsed time being the larger of monotonic and wall-clock time,
 * so that a host that was suspended (monotonic time stopped) wakes up fenced.
 */
export const holderValid = (
  lastGood: { monotonic: number; wall: number },
  now: { monotonic: number; wall: number },
  selfFenceMs: number,
): boolean => Math.max(now.monotonic - lastGood.monotonic, now.wall - lastGood.wall) < selfFenceMs

export type Role = 'standby' | 'active'

export interface LeaseEvents {
  /** This node became active for `epoch`. */
  active: [{ epoch: number; why: string }]
  /** This node stopped being active (fenced, released) and is a standby again. */
  standby: [{ epoch: number; why: string }]
  /** Something an operator must know; the lease goes on. */
  problem: [string]
}

/**
 * One node's part in the lease on shared storage (../shared/DESIGN.md, hot standby). As a
 * standby it watches the highest claim's heartbeat every `pollMs` and claims the next epoch as
 * `standbyDecision` says; as the active it renews every `renewMs` and fences itself, by a timer
 * that never waits for I/O and synchronously in `isActive()`, when its last good renew started
 * `selfFenceMs` ago or a higher claim appears. A fenced epoch is never resumed: the node is a
 * standby again and may only claim a new one.
 */
export class Lease extends EventEmitter<LeaseEvents> {
  readonly #store: LeaseStore
  readonly #clock: Clock
  readonly #timings: HaTimings
  readonly #node: string
  readonly #cfgHash: string
  readonly #owner: ClaimOwner
  #role: Role = 'standby'
  #epoch = 0
  #seq = 0
  #lastGood = { monotonic: 0, wall: 0 }
  #watched: Watched | undefined
  /** After a release, do not claim again before this (monotonic) unless someone else claims. */
  #holdOffUntil = 0
  #releasedEpoch = 0
  /** The epoch whose heartbeat the last poll read as not a heartbeat (0: it was fine). */
  #lastReadBad = 0
  #stopped = false
  /** The heartbeat write of the renew in progress, if any. */
  #renewing: Promise<void> = Promise.resolve()
  #cancels: Cancel[] = []
  #reported = new Set<string>()

  constructor(options: {
    store: LeaseStore
    clock: Clock
    timings: HaTimings
    cluster: string
    node: string
    pid?: number
  }) {
    super()
    this.#store = options.store
    this.#clock = options.clock
    this.#timings = options.timings
    this.#node = options.node
    this.#cfgHash = timingsHash(options.cluster, options.timings)
    this.#owner = {
      node: options.node,
      pid: options.pid ?? process.pid,
      nonce: randomBytes(8).toString('hex'),
    }
  }

  get role(): Role {
    return this.#role
  }

  /** The epoch this node holds or, as a standby, the highest one it has seen. */
  get epoch(): number {
    return this.#epoch || this.#watched?.epoch || 0
  }

  get cfgHash(): string {
    return this.#cfgHash
  }

  start(): void {
    this.#loop(this.#timings.pollMs, () => this.#poll(), 0)
    // The fence timer: synchronous, never waits for the store.
    this.#loop(Math.max(10, Math.min(50, this.#timings.selfFenceMs / 10)), () => {
      this.isActive()
      return Promise.resolve()
    })
  }

  stop(): void {
    this.#stopped = true
    for (const c of this.#cancels) c()
  }

  /**
   * True only while this node holds an epoch and its last good renew is recent enough; checked
   * before anything visible (answering /leader, activating a child). Fences when it fails.
   */
  isActive(): boolean {
    if (this.#role !== 'active') return false
    const now = { monotonic: this.#clock.monotonic(), wall: this.#clock.now() }
    if (holderValid(this.#lastGood, now, this.#timings.selfFenceMs)) return true
    const ago = Math.round(now.monotonic - this.#lastGood.monotonic)
    this.#fence(`last good renew started ${ago} ms ago (selfFenceMs ${this.#timings.selfFenceMs})`)
    return false
  }

  /** How much longer this node may act as active without a good renew (0 when it may not). */
  validForMs(): number {
    if (!this.isActive()) return 0
    const elapsed = Math.max(
      this.#clock.monotonic() - this.#lastGood.monotonic,
      this.#clock.now() - this.#lastGood.wall,
    )
    return Math.max(0, Math.floor(this.#timings.selfFenceMs - elapsed))
  }

  /** The active node's heartbeat as this standby last saw it change, for status. */
  observed(): { epoch: number; quietMs: number } | undefined {
    const w = this.#watched
    if (!w || w.epoch === 0) return undefined
    return { epoch: w.epoch, quietMs: Math.round(this.#clock.monotonic() - w.since) }
  }

  /**
   * Planned handover: this node stops being active (the 'standby' event), waits for `quiesce`
   * (its active-only children stopped or deactivated), then writes `released` into its heartbeat,
   * so that a standby claims the next epoch within pollMs and never overlaps with it. It does
   * not claim again for takeoverMs, unless someone else claims first. False if it was not active.
   */
  async release(quiesce: () => Promise<void> = () => Promise.resolve()): Promise<boolean> {
    if (!this.isActive()) return false
    const epoch = this.#epoch
    this.#holdOffUntil = this.#clock.monotonic() + this.#timings.takeoverMs
    this.#releasedEpoch = epoch
    this.#toStandby('released (switchover)')
    await quiesce()
    // A renew already under way must not land after `released` and overwrite it.
    await this.#renewing
    try {
      await this.#store.writeHeartbeat(this.#heartbeat(epoch, this.#seq + 1, 'released'))
    } catch (err) {
      this.#problem(`writing released into hb/${epoch} failed: ${errorMessage(err)}`)
    }
    return true
  }

  /** Holds an epoch (a method, so that TypeScript does not narrow it across awaits). */
  #holding(): boolean {
    return this.#role === 'active'
  }

  #heartbeat(epoch: number, seq: number, state: Heartbeat['state']): Heartbeat {
    return { epoch, seq, state, node: this.#node, cfgHash: this.#cfgHash }
  }

  /** Runs `fn` every `ms` (the first time after `first`), never two at once. */
  #loop(ms: number, fn: () => Promise<void>, first = ms): void {
    const arm = (delay: number) => {
      const cancel = this.#clock.after(delay, () => {
        this.#cancels = this.#cancels.filter((c) => c !== cancel)
        void fn()
          .catch((err: unknown) => this.#problem(errorMessage(err)))
          .finally(() => {
            if (!this.#stopped) arm(ms)
          })
      })
      this.#cancels.push(cancel)
    }
    arm(first)
  }

  /** A standby's turn: read, decide, maybe claim. The active renews instead. */
  async #poll(): Promise<void> {
    if (this.#holding()) return
    const epoch = await this.#store.highestClaim()
    const [read, owner] =
      epoch > 0
        ? await Promise.all([this.#store.readHeartbeat(epoch), this.#store.readOwner(epoch)])
        : [undefined, undefined]
    // The heartbeat is rewritten in place: an empty read is a write caught in the middle, not
    // content. It counts as what was there before (neither a change nor a problem), so that a
    // file left empty by a writer that died still lets the wait run out.
    const prev = this.#watched
    const raw = read === '' && prev?.epoch === epoch ? prev.raw : read
    // Bad content is reported when two reads in a row are bad: a first read (after a start or
    // a release) can catch a write in the middle, with nothing earlier to stand in for it; but
    // content that is never a heartbeat and changes at every write (another version's format,
    // a foreign writer) must be reported too: its changes keep the standby from taking over.
    const parsed = raw === undefined ? undefined : parseHeartbeat(raw, epoch)
    const bad = parsed !== undefined && 'problem' in parsed
    const badTwice = bad && this.#lastReadBad === epoch
    this.#lastReadBad = bad ? epoch : 0
    if (this.#stopped || this.#holding()) return
    const d = standbyDecision(
      { epoch, raw, owner },
      this.#watched,
      this.#clock.monotonic(),
      this.#timings,
    )
    this.#watched = d.watched
    if (parsed !== undefined) {
      if ('problem' in parsed) {
        if (badTwice)
          this.#problem(
            `hb/${epoch} is not a valid heartbeat (${parsed.problem}); waiting for it to change`,
          )
      } else if (parsed.hb.cfgHash !== this.#cfgHash) {
        this.#problem(
          `node ${parsed.hb.node} runs the cluster with other timings or another cluster name (hash ${parsed.hb.cfgHash}, ours ${this.#cfgHash}): not competing`,
        )
        return
      }
    } else if (epoch > 0 && !owner) {
      this.#problem(
        `claim ${epoch} has no owner yet (its claimant may have died right after claiming)`,
      )
    }
    if (!d.claim) return
    if (epoch === this.#releasedEpoch && this.#clock.monotonic() < this.#holdOffUntil) return
    await this.#claim(epoch + 1, d.why)
  }

  async #claim(epoch: number, why: string): Promise<void> {
    const start = { monotonic: this.#clock.monotonic(), wall: this.#clock.now() }
    const result = await this.#store.claim(epoch, this.#owner)
    if (result === 'lost' || this.#stopped) return
    this.#role = 'active'
    this.#epoch = epoch
    this.#seq = 0
    // The claim counts as the first renew, from the moment it began.
    this.#lastGood = start
    this.#reported.clear()
    if (!this.isActive()) return
    this.emit('active', { epoch, why })
    void this.#renewLoop(epoch)
  }

  async #renewLoop(epoch: number): Promise<void> {
    while (!this.#stopped && this.#role === 'active' && this.#epoch === epoch) {
      const start = { monotonic: this.#clock.monotonic(), wall: this.#clock.now() }
      try {
        const writing = this.#store.writeHeartbeat(this.#heartbeat(epoch, ++this.#seq, 'active'))
        this.#renewing = writing.catch(() => undefined)
        await writing
        const higher = await this.#store.highestClaim()
        if (this.#role !== 'active' || this.#epoch !== epoch) return
        if (higher > epoch) return this.#fence(`a higher claim appeared: epoch ${higher}`)
        this.#lastGood = start
      } catch (err) {
        this.#problem(`renewing hb/${epoch} failed: ${errorMessage(err)}`)
      }
      const elapsed = this.#clock.monotonic() - start.monotonic
      await this.#clock.sleep(Math.max(0, this.#timings.renewMs - elapsed))
    }
  }

  #fence(why: string): void {
    this.#toStandby(`fenced: ${why}`)
  }

  #toStandby(why: string): void {
    if (this.#role !== 'active') return
    const epoch = this.#epoch
    this.#role = 'standby'
    this.#epoch = 0
    this.#watched = undefined
    this.emit('standby', { epoch, why })
  }

  /** Reports each distinct problem once per role change: a poll every 100 ms must not flood. */
  #problem(message: string): void {
    if (this.#reported.has(message)) return
    this.#reported.add(message)
    this.emit('problem', message)
  }
}
