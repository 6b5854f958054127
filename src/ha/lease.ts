import { createHash, randomBytes } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { errorMessage, hasCode } from '../errors.js'
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
 * them trusted to be quick (a hard NFS mount can hang one for minutes) or to answer with content
 * as fresh as the moment it returns (a late reply carries what was read when it was served).
 */
export interface LeaseStore {
  /**
   * Claims `epoch` with its owner inside (made apart, then renamed onto `claims/<epoch>`: atomic,
   * fails when the epoch exists): 'won', or 'lost'. A failure whose reply may have been lost is
   * resolved by reading the claim's owner: ours (same nonce) is 'won'.
   */
  claim(epoch: number, owner: ClaimOwner): Promise<'won' | 'lost'>
  /**
   * Rewrites `<dir>/epoch`, the file every node opens to learn the highest claim: a file that
   * always exists, so that no decision rests on looking up a name that may not exist yet (a
   * negative lookup cache answers "no such file" for a minute after another host created it).
   */
  publishEpoch(epoch: number): Promise<void>
  /** What `<dir>/epoch` says (0: no claim yet), read by opening it. */
  readEpoch(): Promise<number>
  /**
   * The highest claim this node can find: `readEpoch()`, any higher claim this store learned of
   * (a lost claim), and lookups of the names above (an optimisation only: a stale lookup is
   * resolved by the next claim failing).
   */
  highestClaim(): Promise<number>
  /** The owner of a claim, undefined if it has none (a claim made before owners went inside). */
  readOwner(epoch: number): Promise<ClaimOwner | undefined>
  /** `hb/<epoch>` as written, undefined when there is none. */
  readHeartbeat(epoch: number): Promise<string | undefined>
  /** Writes `hb/<epoch>` and closes it. */
  writeHeartbeat(hb: Heartbeat): Promise<void>
  /**
   * Why this node may not claim now (the cluster's `config.json` missing or unreadable: an
   * unmounted share looks like an empty directory), or undefined when it may.
   */
  cannotClaim(): Promise<string | undefined>
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

/**
 * One read of the highest claim's heartbeat, timed on the reader's own monotonic clock: `issued`
 * just before the call, `done` when it returned. Its content is as old as `issued` at best (a
 * reply can come late) and as young as `done` at worst.
 */
export interface HeartbeatRead {
  epoch: number
  raw: string | undefined
  issued: number
  done: number
}

/** What a standby remembers of the heartbeat it watches. */
export interface Watched {
  epoch: number
  raw: string | undefined
  /** `done` of the first read that showed `raw`: it was there by then. */
  firstDone: number
  /** `issued` of the latest read that showed `raw`: it was still there after that. */
  lastIssued: number
}

/** How long `w`'s content is known to have stood unchanged (ms; 0 when not known at all). */
export const quietMs = (w: Watched): number => Math.max(0, w.lastIssued - w.firstDone)

/**
 * A standby's decision after a read of the highest claim's heartbeat (pure): claim the next
 * epoch, or wait. Liveness is change: content X counts as unchanged for `issued(latest read
 * showing X) - done(first read that showed X)`, so a slow read, a late reply or a standby that
 * stalled between reading and deciding adds nothing to it; only `takeoverMs` of that, or a valid
 * `released` heartbeat written by the claim's owner, lets it claim. No time written by another
 * node is read. Content that is not a heartbeat is not evidence of anything: it only counts by
 * not changing. `owner` is the claim's owner if known (only a `released` needs it).
 */
export const standbyDecision = (
  read: HeartbeatRead,
  owner: ClaimOwner | undefined,
  prev: Watched | undefined,
  timings: HaTimings,
): { watched: Watched; claim: boolean; why: string } => {
  const fresh = {
    epoch: read.epoch,
    raw: read.raw,
    firstDone: read.done,
    lastIssued: read.issued,
  }
  if (read.epoch === 0) return { watched: fresh, claim: true, why: 'no claim yet' }
  const changed = !prev || prev.epoch !== read.epoch || prev.raw !== read.raw
  const watched = changed ? fresh : { ...prev, lastIssued: Math.max(prev.lastIssued, read.issued) }
  if (read.raw !== undefined) {
    const parsed = parseHeartbeat(read.raw, read.epoch)
    if (
      'hb' in parsed &&
      parsed.hb.state === 'released' &&
      owner !== undefined &&
      parsed.hb.node === owner.node
    ) {
      return { watched, claim: true, why: `epoch ${read.epoch} released by ${parsed.hb.node}` }
    }
  }
  const quiet = quietMs(watched)
  if (quiet >= timings.takeoverMs) {
    return {
      watched,
      claim: true,
      why: `heartbeat of epoch ${read.epoch} unchanged for ${Math.round(quiet)} ms`,
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
  /**
   * A good renew: this node may act as active for `validMs` more (its fence time); the moment to
   * tell children and the watchdog their new deadline.
   */
  renewed: [{ epoch: number; validMs: number }]
  /** This node stopped being active (fenced, released) and is a standby again. */
  standby: [{ epoch: number; why: string }]
  /** Something an operator must know; the lease goes on. */
  problem: [string]
}

/**
 * The fence timer's period: short enough that a fence is acted on within a few percent of
 * selfFenceMs, long enough to cost nothing. Its lateness is also how a pause of this process is
 * told apart from slow storage in the fence message.
 */
export const fenceCheckMs = (selfFenceMs: number): number =>
  Math.max(10, Math.min(50, selfFenceMs / 10))

/** A fence timer that ran this much later than its period means this process did not run. */
const PAUSE_EVIDENCE_MS = 200

/** The wall clock ahead of the monotonic one by this much since a renew: a step (or suspension). */
const CLOCK_STEP_EVIDENCE_MS = 100

/**
 * One node's part in the lease on shared storage (../shared/DESIGN.md, hot standby). As a
 * standby it reads the highest claim's heartbeat every `pollMs`, timing each read, and claims the
 * next epoch as `standbyDecision` says; as the active it renews every `renewMs` (heartbeat, then
 * `<dir>/epoch` read back) and fences itself, by a timer that never waits for I/O and
 * synchronously in `isActive()`, when its last good renew started `selfFenceMs` ago or a higher
 * epoch is published. A fenced epoch is never resumed: the node is a standby again and may only
 * claim a new one, and gives the other standbys a head start of takeoverMs for it (a node that
 * had to fence itself is the worse candidate: its clock stepped, it paused, or its storage failed).
 *
 * Why two actives cannot overlap: a standby claims only after the heartbeat stood unchanged
 * over [D, I] with I - D >= takeoverMs, so no heartbeat write landed in between. A renew counts
 * as good only if the node is still active when it completes, i.e. it completed, and so its
 * write landed, less than selfFenceMs after the previous good renew started; and a renew's write
 * starts only while the node is active. So the old active's last good renew wrote before D,
 * started before D, and its validity ended before D + selfFenceMs < I: the new active starts
 * after that, with takeoverMs - selfFenceMs to spare for clock rates and the children's margin.
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
  /** The owner of each claim read so far: a claim's owner never changes. */
  #owners = new Map<number, ClaimOwner>()
  /** The epochs whose owner is being read. */
  #ownerReads = new Set<number>()
  /**
   * After a release or a fence, this node does not claim the epoch after `#yieldedEpoch` before
   * this (monotonic): another standby takes it (a claim by someone else ends the hold-off).
   */
  #holdOffUntil = 0
  #yieldedEpoch = 0
  /** The epoch whose heartbeat the last poll read as not a heartbeat (0: it was fine). */
  #lastReadBad = 0
  #stopped = false
  /** The renew in flight (one at most), with its start (monotonic). */
  readonly #renewing = new Map<Promise<void>, number>()
  /** Why the last renew failed, if it did (cleared by a good one). */
  #renewError: string | undefined
  /** The fence timer's last run (monotonic) and the largest gap between runs since a renew. */
  #lastCheck = 0
  #longestGap = 0
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
    const every = fenceCheckMs(this.#timings.selfFenceMs)
    this.#lastCheck = this.#clock.monotonic()
    this.#loop(every, () => {
      const now = this.#clock.monotonic()
      this.#longestGap = Math.max(this.#longestGap, now - this.#lastCheck - every)
      this.#lastCheck = now
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
   * before anything visible (answering /leader, activating a child, writing a heartbeat). Fences
   * when it fails.
   */
  isActive(): boolean {
    if (this.#role !== 'active') return false
    const now = { monotonic: this.#clock.monotonic(), wall: this.#clock.now() }
    if (holderValid(this.#lastGood, now, this.#timings.selfFenceMs)) return true
    this.#fence(this.#lapseReason(now))
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

  /** The active node's heartbeat as this standby last saw it, for status. */
  observed(): { epoch: number; quietMs: number } | undefined {
    const w = this.#watched
    if (!w || w.epoch === 0) return undefined
    return { epoch: w.epoch, quietMs: Math.round(quietMs(w)) }
  }

  /**
   * Planned handover: this node stops being active (the 'standby' event), waits for `quiesce`
   * (its active-only children stopped or deactivated), then writes `released` into its heartbeat,
   * so that a standby claims the next epoch within pollMs and never overlaps with it. It does
   * not claim again for takeoverMs, unless someone else claims first. False if it was not active.
   * It never waits on the storage for longer than takeoverMs: by then a standby claims anyway,
   * and a node whose mount hangs must still be able to shut down.
   */
  async release(quiesce: () => Promise<void> = () => Promise.resolve()): Promise<boolean> {
    if (!this.isActive()) return false
    const epoch = this.#epoch
    this.#holdOffUntil = this.#clock.monotonic() + this.#timings.takeoverMs
    this.#yieldedEpoch = epoch
    this.#toStandby('released (switchover)')
    await quiesce()
    const give = this.#clock.monotonic() + this.#timings.takeoverMs
    // A renew already under way must not land after `released` and overwrite it.
    const renewing = Promise.all(this.#renewing.keys())
    if (!(await this.#within(renewing, give - this.#clock.monotonic()))) {
      this.#problem(`a renew of hb/${epoch} still hangs: writing released beside it`)
    }
    const writing = this.#store.writeHeartbeat(this.#heartbeat(epoch, this.#seq + 1, 'released'))
    try {
      if (!(await this.#within(writing, give - this.#clock.monotonic()))) {
        this.#problem(
          `writing released into hb/${epoch} did not finish within takeoverMs: a standby takes over after takeoverMs instead`,
        )
      }
    } catch (err) {
      this.#problem(`writing released into hb/${epoch} failed: ${errorMessage(err)}`)
    }
    return true
  }

  /** Holds an epoch (a method, so that TypeScript does not narrow it across awaits). */
  #holding(): boolean {
    return this.#role === 'active'
  }

  /** Whether `p` settled within `ms` (its rejection is rethrown); never waits longer. */
  async #within(p: Promise<unknown>, ms: number): Promise<boolean> {
    let cancel: Cancel = () => {}
    const late = new Promise<false>((resolve) => {
      cancel = this.#clock.after(Math.max(0, ms), () => resolve(false))
    })
    try {
      return await Promise.race([p.then(() => true as const), late])
    } finally {
      cancel()
    }
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

  /**
   * Reads a claim's owner once (it never changes), in the background from the first sight of
   * its epoch: a slow owner read must not delay a poll, and by the time the owner releases, it
   * is known. Until it is, a `released` is not believed and the quiet time rules.
   */
  #learnOwner(epoch: number): void {
    if (epoch === 0 || this.#owners.has(epoch) || this.#ownerReads.has(epoch)) return
    this.#ownerReads.add(epoch)
    this.#store
      .readOwner(epoch)
      .then((owner) => {
        if (owner) this.#owners.set(epoch, owner)
      })
      .catch(() => undefined) // read again at the next poll
      .finally(() => this.#ownerReads.delete(epoch))
  }

  /** A standby's turn: read, decide, maybe claim. The active renews instead. */
  async #poll(): Promise<void> {
    if (this.#holding()) return
    const epoch = await this.#store.highestClaim()
    const issued = this.#clock.monotonic()
    const read = epoch > 0 ? await this.#store.readHeartbeat(epoch) : undefined
    const done = this.#clock.monotonic()
    if (this.#stopped || this.#holding()) return
    // An empty read is no content: a heartbeat file just created by its owner whose first
    // write has not landed (nothing there yet, as if missing), or a write caught between
    // truncate and write by a writer that truncates (what was there before). Neither is a
    // change or a problem, so a file left empty by a writer that died still lets the wait run out.
    const prev = this.#watched
    const raw = read !== '' ? read : prev?.epoch === epoch ? prev.raw : undefined
    // Bad content is reported when two reads in a row are bad: a first read (after a start or
    // a release) can catch a write in the middle, with nothing earlier to stand in for it; but
    // content that is never a heartbeat and changes at every write (another version's format,
    // a foreign writer) must be reported too: its changes keep the standby from taking over.
    const parsed = raw === undefined ? undefined : parseHeartbeat(raw, epoch)
    const bad = parsed !== undefined && 'problem' in parsed
    const badTwice = bad && this.#lastReadBad === epoch
    this.#lastReadBad = bad ? epoch : 0
    // The owner matters only to believe a `released`; it is read once per epoch, in the
    // background, and neither its read nor its absence feeds the quiet time.
    this.#learnOwner(epoch)
    const owner = this.#owners.get(epoch)
    const d = standbyDecision({ epoch, raw, issued, done }, owner, this.#watched, this.#timings)
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
    }
    if (!d.claim) return
    if (epoch === this.#yieldedEpoch && this.#clock.monotonic() < this.#holdOffUntil) return
    const why = await this.#store.cannotClaim()
    if (why !== undefined) {
      this.#problem(`not claiming epoch ${epoch + 1}: ${why}`)
      return
    }
    if (this.#stopped || this.#holding()) return
    await this.#claim(epoch + 1, d.why)
  }

  async #claim(epoch: number, why: string): Promise<void> {
    const start = { monotonic: this.#clock.monotonic(), wall: this.#clock.now() }
    const result = await this.#store.claim(epoch, this.#owner)
    if (result === 'lost' || this.#stopped) return
    this.#owners.set(epoch, this.#owner)
    // Published before acting, so that an old active that is still renewing reads it next time.
    try {
      await this.#store.publishEpoch(epoch)
    } catch (err) {
      this.#problem(
        `publishing epoch ${epoch} failed (retried at each renew): ${errorMessage(err)}`,
      )
    }
    if (this.#stopped) return
    this.#role = 'active'
    this.#epoch = epoch
    this.#seq = 0
    // The claim counts as the first renew, from the moment it began.
    this.#lastGood = start
    this.#renewError = undefined
    this.#longestGap = 0
    this.#reported.clear()
    if (!this.isActive()) return
    this.emit('active', { epoch, why })
    this.emit('renewed', { epoch, validMs: this.validForMs() })
    void this.#renewLoop(epoch)
  }

  /** Still the active node of `epoch`: checked (and fenced) before and after each renew. */
  #activeIn(epoch: number): boolean {
    return !this.#stopped && this.isActive() && this.#epoch === epoch
  }

  /**
   * Renews while active in `epoch`: one at a time, the next one renewMs after the start of the
   * previous, or at once when that took longer. One at a time on purpose: shared storage
   * serializes writes to one file (the NFS client, FUSE, zFS), so a renew started while another
   * is still writing would only queue behind it with an older start, and slow writes would
   * fence sooner. So writes of up to selfFenceMs in all over two renews fence nothing: one of
   * 650 ms does not, nor a run of 450 ms ones.
   */
  async #renewLoop(epoch: number): Promise<void> {
    while (this.#activeIn(epoch)) {
      const start = { monotonic: this.#clock.monotonic(), wall: this.#clock.now() }
      const renew = this.#renew(epoch, start)
      this.#renewing.set(renew, start.monotonic)
      await renew
      this.#renewing.delete(renew)
      const elapsed = this.#clock.monotonic() - start.monotonic
      if (elapsed < this.#timings.renewMs) {
        await this.#clock.sleep(this.#timings.renewMs - elapsed)
      }
    }
  }

  /**
   * One renew: the heartbeat written and `epoch` read, side by side (the read is a check, not
   * an order: it needs no wait for the write); good only if still active when both are done.
   */
  async #renew(epoch: number, start: { monotonic: number; wall: number }): Promise<void> {
    try {
      const [, published] = await Promise.all([
        this.#store.writeHeartbeat(this.#heartbeat(epoch, ++this.#seq, 'active')),
        this.#store.readEpoch(),
      ])
      // Good only if still active now: it completed, so its write landed, within selfFenceMs
      // of the previous good renew's start (the argument in the class comment).
      if (!this.#activeIn(epoch)) return
      if (published > epoch) {
        return this.#fence(`epoch ${published} was claimed by another node (read in epoch)`)
      }
      this.#lastGood = start
      this.#renewError = undefined
      this.#longestGap = 0
      this.emit('renewed', { epoch, validMs: this.validForMs() })
      if (published < epoch) {
        // A publish that failed, or an older winner's write that landed late: say it again.
        await this.#store.publishEpoch(epoch)
      }
    } catch (err) {
      if (this.#stopped) return
      this.#renewError = errorMessage(err)
      // The store says the claim itself is gone (etcd expired its lease): no later renew can
      // bring it back, so there is nothing to wait for.
      if (hasCode(err, 'ELEASELOST') && this.#activeIn(epoch)) {
        return this.#fence(`storage: ${this.#renewError}`)
      }
      this.#problem(`renewing hb/${epoch} failed: ${this.#renewError}`)
    }
  }

  /** Why the last good renew is too old: a clock step, a pause of this process, or the storage. */
  #lapseReason(now: { monotonic: number; wall: number }): string {
    const mono = Math.round(now.monotonic - this.#lastGood.monotonic)
    const wall = Math.round(now.wall - this.#lastGood.wall)
    const base = `last good renew started ${mono} ms ago (selfFenceMs ${this.#timings.selfFenceMs})`
    // The two clocks tick apart by a millisecond or so (Date.now() is whole ms): only a larger
    // lead of the wall clock is a step or a suspension; else the fence came by monotonic time.
    if (wall - mono >= CLOCK_STEP_EVIDENCE_MS) {
      return `the wall clock moved ${wall} ms while the monotonic clock moved ${mono} ms since the last good renew (a clock step, or a suspended host): ${base}`
    }
    const gap = Math.max(
      this.#longestGap,
      now.monotonic - this.#lastCheck - fenceCheckMs(this.#timings.selfFenceMs),
    )
    if (gap >= PAUSE_EVIDENCE_MS) {
      return `this process did not run for ${Math.round(gap)} ms (SIGSTOP, a VM pause, a blocked event loop): ${base}`
    }
    if (this.#renewing.size > 0) {
      const oldest = Math.min(...this.#renewing.values())
      return `storage: a renew has waited ${Math.round(now.monotonic - oldest)} ms for the lease's storage: ${base}`
    }
    if (this.#renewError !== undefined)
      return `storage: renewing failed (${this.#renewError}): ${base}`
    return base
  }

  /**
   * A standby that saw the heartbeat stop claims takeoverMs after the last renew; this node, which
   * starts watching afresh, could claim takeoverMs after now. Holding off for twice that lets a
   * healthy standby win even when its polls run late (a loaded host); with no other standby this
   * node takes the epoch back after 2 x takeoverMs.
   */
  #fence(why: string): void {
    if (this.#role !== 'active') return
    this.#holdOffUntil = this.#clock.monotonic() + 2 * this.#timings.takeoverMs
    this.#yieldedEpoch = this.#epoch
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
    // After stop(), what is still in flight fails as the shared dir's access closes: not news.
    if (this.#stopped || this.#reported.has(message)) return
    this.#reported.add(message)
    this.emit('problem', message)
  }
}
