import { mkdir, open, readdir, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { ClaimOwner, Heartbeat, LeaseStore } from './lease.js'

const isCode = (err: unknown, code: string) => (err as { code?: unknown }).code === code

/** Writes `data` into `file` in place and closes it (close-to-open: NFS readers then see it). */
const writeClosed = async (file: string, data: string, flag = 'w'): Promise<void> => {
  const fh = await open(file, flag, 0o644)
  try {
    await fh.writeFile(data)
    await fh.sync()
  } finally {
    await fh.close()
  }
}

const readOrUndefined = async (file: string): Promise<string | undefined> => {
  try {
    return await readFile(file, 'utf8')
  } catch (err) {
    if (isCode(err, 'ENOENT')) return undefined
    throw err
  }
}

/**
 * The lease's files in a shared directory (NFS, zFS, or local for one host):
 * `claims/<epoch>/` (mkdir is the claim; never removed), `claims/<epoch>/owner`, `hb/<epoch>`.
 * Every read opens the file (close-to-open consistency on NFS); new claims are found by looking
 * up `claims/<n+1>` by name, upwards from the highest seen, rather than by listing the
 * directory, whose attributes NFS caches for up to a minute. Nothing here deletes anything.
 */
export class FsLeaseStore implements LeaseStore {
  readonly #claims: string
  readonly #hb: string
  /** The highest claim seen so far: lookups go upwards from it. */
  #highest = -1

  constructor(readonly dir: string) {
    this.#claims = join(dir, 'claims')
    this.#hb = join(dir, 'hb')
  }

  /** Creates `claims/` and `hb/` if missing (harmless when another node races). */
  async init(): Promise<void> {
    await mkdir(this.#claims, { recursive: true })
    await mkdir(this.#hb, { recursive: true })
  }

  async claim(epoch: number, owner: ClaimOwner): Promise<'won' | 'lost'> {
    const dir = join(this.#claims, String(epoch))
    try {
      await mkdir(dir)
    } catch (err) {
      if (!isCode(err, 'EEXIST')) throw err
      // It exists, whatever a (cached) lookup said: look upwards from it from now on.
      this.#highest = Math.max(this.#highest, epoch)
      // Ours if a reply to our own mkdir was lost (NFS retransmits): the owner file says so.
      const found = await this.readOwner(epoch)
      return found?.nonce === owner.nonce ? 'won' : 'lost'
    }
    this.#highest = Math.max(this.#highest, epoch)
    await writeClosed(join(dir, 'owner'), JSON.stringify(owner) + '\n', 'wx')
    return 'won'
  }

  async highestClaim(): Promise<number> {
    if (this.#highest < 0) {
      // Once, at the start: the listing, then lookups by name from there.
      const names = await readdir(this.#claims)
      this.#highest = Math.max(0, ...names.filter((n) => /^[1-9]\d*$/.test(n)).map(Number))
    }
    for (;;) {
      try {
        await stat(join(this.#claims, String(this.#highest + 1)))
        this.#highest++
      } catch (err) {
        if (isCode(err, 'ENOENT')) return this.#highest
        throw err
      }
    }
  }

  async readOwner(epoch: number): Promise<ClaimOwner | undefined> {
    const raw = await readOrUndefined(join(this.#claims, String(epoch), 'owner'))
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
    return readOrUndefined(join(this.#hb, String(epoch)))
  }

  writeHeartbeat(hb: Heartbeat): Promise<void> {
    return writeClosed(join(this.#hb, String(hb.epoch)), JSON.stringify(hb) + '\n')
  }
}
