import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { writeFileAtomic } from '../seams/atomic-write.js'
import type { Clock } from '../seams/clock.js'
import { terminateGroup } from './process-group.js'
import { processStartTime } from './process-start-time.js'

/** What the supervisor remembers of a live child, so that a successor can find leftovers. */
export interface PidRecord {
  id: string
  pid: number
  /** processStartTime(pid) at spawn: tells our child from an unrelated process that reused the pid. */
  startTime: string
  port: number | undefined
  stopSignal: NodeJS.Signals
  stopTimeoutMs: number
}

/**
 * The pid records file in a state dir, rewritten atomically on every spawn and exit. By pid: an
 * instance can have two processes for a moment (a handover: the old one serves until the new
 * one is ready).
 */
export class PidRecords {
  readonly file: string
  readonly #records = new Map<number, PidRecord>()
  #leftovers: PidRecord[]
  constructor(stateDir: string) {
    this.file = join(stateDir, 'pids.json')
    // Read before this supervisor writes anything: a hook or an early action may spawn (and
    // record) before the leftovers are terminated, and must not wipe them off the file.
    this.#leftovers = this.read()
  }

  /**
   * What a previous supervisor left in the file, as it was when this one was made. Kept in the
   * file, beside this supervisor's own records, until forgetLeftovers().
   */
  get leftovers(): PidRecord[] {
    return [...this.#leftovers]
  }

  /** The leftovers have been dealt with (terminated, or found gone). */
  forgetLeftovers(): void {
    if (!this.#leftovers.length) return
    this.#leftovers = []
    this.#write()
  }

  /** Records left by a previous supervisor; an unreadable file counts as none (and is replaced). */
  read(): PidRecord[] {
    try {
      const value: unknown = JSON.parse(readFileSync(this.file, 'utf8'))
      return Array.isArray(value)
        ? (value as PidRecord[]).filter((r) => Number.isInteger(r?.pid) && r.pid > 0)
        : []
    } catch {
      return []
    }
  }

  add(record: PidRecord): void {
    this.#records.set(record.pid, record)
    this.#write()
  }

  remove(pid: number): void {
    if (this.#records.delete(pid)) this.#write()
  }

  #write(): void {
    const left = this.#leftovers.filter((r) => !this.#records.has(r.pid))
    writeFileAtomic(this.file, JSON.stringify([...left, ...this.#records.values()], null, 1))
  }
}

/**
 * Terminates the children a previous supervisor left running (it was SIGKILLed and they
 * survived): each recorded pid whose start time still matches gets its stop signal on its
 * process group, then SIGKILL after its stop timeout. A pid now used by another process is left
 * alone. Resolves when every leftover group is gone, before any port is bound.
 */
export const terminateLeftovers = async (
  records: PidRecord[],
  clock: Clock,
): Promise<PidRecord[]> => {
  const ours = records.filter((r) => processStartTime(r.pid) === r.startTime)
  await Promise.all(
    ours.map((r) =>
      terminateGroup(r.pid, { signal: r.stopSignal, timeoutMs: r.stopTimeoutMs, clock }),
    ),
  )
  return ours
}
