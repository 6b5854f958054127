import { join } from 'node:path'
import type { ClaimOwner, Heartbeat, LeaseStore } from './lease.js'
import type { SharedFs } from './shared-fs.js'

/**
 * Heartbeats and the epoch file are rewritten in place at a fixed width, without truncating: a
 * reader then never sees an empty file, only the old bytes or the new ones.
 */
const HEARTBEAT_WIDTH = 256
const EPOCH_WIDTH = 20

/** `text` and spaces up to `width` (or the next multiple of it: the length only ever grows). */
const padded = (text: string, width: number) =>
  text.padEnd(Math.ceil((text.length + 1) / width) * width - 1, ' ') + '\n'

/**
 * The lease's files in a shared directory (NFS, zFS, or local for one host), under `prefix`:
 * - `claims/<epoch>/owner`: a claim, made as `tmp/<nonce>-<epoch>/owner` and renamed onto
 *   `claims/<epoch>` (atomic; fails when the epoch exists), so that no claim is ever without its
 *   owner, and a reply lost to a retransmission is resolved by reading the owner;
 * - `epoch`: the highest claim, rewritten by each winner: a file that always exists, read by
 *   opening it (close-to-open), never by looking up a name that may not exist yet;
 * - `hb/<epoch>`: the epoch owner's heartbeat.
 * Every operation goes through `SharedFs` (on a running supervisor: its own I/O process, so a
 * hung mount holds none of the supervisor's threads). Nothing here deletes anything.
 */
export class FsLeaseStore implements LeaseStore {
  readonly #fs: SharedFs
  readonly #prefix: string
  /** The highest claim known so far: lookups go upwards from it. */
  #highest = 0
  /** Numbers this store's attempts, so that no two share a temporary directory. */
  #attempts = 0

  /** `prefix`: the lease's directory inside the shared dir ('' for the cluster's own). */
  constructor(fs: SharedFs, prefix = '') {
    this.#fs = fs
    this.#prefix = prefix
  }

  #path(...parts: string[]): string {
    return join(this.#prefix, ...parts)
  }

  /** Creates `claims/`, `hb/` and `tmp/` if missing (harmless when another node races). */
  async init(): Promise<void> {
    for (const d of ['claims', 'hb', 'tmp'])
      await this.#fs.mkdir(this.#path(d), { recursive: true })
  }

  async claim(epoch: number, owner: ClaimOwner): Promise<'won' | 'lost'> {
    const tmp = this.#path('tmp', `${owner.nonce}-${epoch}-${++this.#attempts}`)
    await this.#fs.mkdir(tmp)
    await this.#fs.write(join(tmp, 'owner'), JSON.stringify(owner) + '\n', { exclusive: true })
    try {
      await this.#fs.rename(tmp, this.#path('claims', String(epoch)))
    } catch (err) {
      // EEXIST/ENOTEMPTY: someone holds it. But a rename whose reply was lost and retransmitted
      // fails too (ENOENT: our tmp is gone, it is the claim now): the owner inside says whose.
      const found = await this.readOwner(epoch).catch(() => undefined)
      if (found === undefined) throw err
      this.#highest = Math.max(this.#highest, epoch)
      return found.nonce === owner.nonce ? 'won' : 'lost'
    }
    this.#highest = Math.max(this.#highest, epoch)
    return 'won'
  }

  publishEpoch(epoch: number): Promise<void> {
    return this.#fs.overwrite(this.#path('epoch'), padded(String(epoch), EPOCH_WIDTH))
  }

  async readEpoch(): Promise<number> {
    const raw = await this.#fs.read(this.#path('epoch'))
    if (raw === undefined || raw.trim() === '') return 0
    const n = Number(raw.trim())
    if (!Number.isSafeInteger(n) || n < 0) {
      throw Object.assign(
        new Error(
          `${join(this.#fs.root, this.#path('epoch'))} should hold the highest claimed epoch, a whole number; it holds ${JSON.stringify(raw.slice(0, 40))}`,
        ),
        { code: 'EBADEPOCH' },
      )
    }
    return n
  }

  async highestClaim(): Promise<number> {
    this.#highest = Math.max(this.#highest, await this.readEpoch())
    // A claim whose winner died before publishing it: found by name, upwards. A lookup answered
    // from a negative cache misses it; then our claim of it fails and teaches us the same.
    for (;;) {
      const next = await this.#fs.stat(this.#path('claims', String(this.#highest + 1)))
      if (!next) return this.#highest
      this.#highest++
    }
  }

  async readOwner(epoch: number): Promise<ClaimOwner | undefined> {
    const raw = await this.#fs.read(this.#path('claims', String(epoch), 'owner'))
    if (raw === undefined) return undefined
    try {
      const o = JSON.parse(raw) as Partial<ClaimOwner>
      if (typeof o.node === 'string' && typeof o.nonce === 'string' && typeof o.pid === 'number')
        return o as ClaimOwner
    } catch {
      // not an owner file: no owner
    }
    return undefined
  }

  readHeartbeat(epoch: number): Promise<string | undefined> {
    return this.#fs.read(this.#path('hb', String(epoch)))
  }

  writeHeartbeat(hb: Heartbeat): Promise<void> {
    return this.#fs.overwrite(
      this.#path('hb', String(hb.epoch)),
      padded(JSON.stringify(hb), HEARTBEAT_WIDTH),
    )
  }

  async cannotClaim(): Promise<string | undefined> {
    const file = join(this.#fs.root, 'config.json')
    let raw: string | undefined
    try {
      raw = await this.#fs.read('config.json')
    } catch (err) {
      return `${file} cannot be read (${(err as Error).message})`
    }
    if (raw === undefined) {
      return `${file} is missing: the shared storage is not mounted on this node (an unmounted mount point looks like an empty directory), or the cluster was never initialized (tandem cluster init)`
    }
    try {
      const v = JSON.parse(raw) as unknown
      if (typeof v === 'object' && v !== null && !Array.isArray(v)) return undefined
    } catch {
      // reported below
    }
    return `${file} is not the cluster's configuration (${JSON.stringify(raw.slice(0, 60))})`
  }
}
