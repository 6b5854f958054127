import { readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import lockfile from 'proper-lockfile'
import { processAlive } from '../process/process-group.js'
import { processStartTime } from '../process/process-start-time.js'
import { writeFileAtomic } from '../seams/atomic-write.js'
import { TandemError, errorMessage } from '../errors.js'

/** The holder recorded beside the lock: pid and process start time (pid reuse is not it). */
const readHolder = (
  pidFile: string,
): { pid: number; startTime: string | undefined } | undefined => {
  try {
    const [pid, startTime] = readFileSync(pidFile, 'utf8').trim().split(' ')
    return Number(pid) > 0 ? { pid: Number(pid), startTime } : undefined
  } catch {
    return undefined // the holder is between taking the lock and writing its pid
  }
}

/** The recorded holder is gone: its pid is dead, or now another process (other start time). */
const holderGone = (h: { pid: number; startTime: string | undefined }) =>
  !processAlive(h.pid) || (h.startTime !== undefined && processStartTime(h.pid) !== h.startTime)

/**
 * One supervisor per state dir, by proper-lockfile on `<stateDir>/supervisor` (a same-host
 * exclusion, which is what it is good at). The holder's pid and start time are written beside
 * the lock so that a second `tandem start` can name it, and so that a lock left by a supervisor
 * that was killed (SIGKILL: nobody removed it) is taken over at once rather than after
 * proper-lockfile's 10 s staleness: an init system restarting a killed supervisor must not be
 * refused. The takeover runs under a second lock, so that two starts cannot both take over.
 * `onCompromised` is ours: proper-lockfile's default throws inside a timer and would crash the
 * supervisor and orphan its children.
 */
export const acquireStateLock = async (
  stateDir: string,
  onCompromised: (message: string) => void,
): Promise<() => Promise<void>> => {
  const target = join(stateDir, 'supervisor')
  const pidFile = join(stateDir, 'supervisor.pid')
  const lock = () =>
    lockfile.lock(stateDir, {
      lockfilePath: `${target}.lock`,
      realpath: false,
      stale: 10_000,
      update: 2_000,
      onCompromised: (err) =>
        onCompromised(`state dir lock ${target}.lock compromised: ${err.message}`),
    })
  const refused = (err: unknown) => {
    const holder = readHolder(pidFile)
    return new TandemError(
      'ELOCKED',
      `another supervisor (${holder ? `pid ${holder.pid}` : 'unknown pid'}) is already running for state dir ${stateDir}`,
      { cause: err },
    )
  }
  let release: () => Promise<void>
  try {
    release = await lock()
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ELOCKED') {
      throw new TandemError('ELOCKED', `cannot lock state dir ${stateDir}: ${errorMessage(err)}`, {
        cause: err,
      })
    }
    const holder = readHolder(pidFile)
    if (!holder || !holderGone(holder)) throw refused(err)
    // Its holder was killed. Take it over, one starter at a time. proper-lockfile keeps its
    // locks by the path given (not by lockfilePath): this one must have a path of its own, or
    // it would replace the state dir lock's entry, and its release would stop that lock's
    // refresh while its own refresh timer went on and crashed the supervisor (ECOMPROMISED
    // thrown from a timer) once it found the released lock gone.
    let releaseTakeover: () => Promise<void>
    try {
      releaseTakeover = await lockfile.lock(`${target}.takeover`, {
        lockfilePath: `${target}.takeover.lock`,
        realpath: false,
        stale: 10_000,
        // Held for milliseconds; a problem with it is no reason to stop a supervisor.
        onCompromised: () => {},
      })
    } catch {
      throw refused(err)
    }
    try {
      const again = readHolder(pidFile)
      if (!again || !holderGone(again)) throw refused(err)
      rmSync(`${target}.lock`, { recursive: true, force: true })
      release = await lock().catch((e: unknown) => Promise.reject(refused(e)))
      writeFileAtomic(pidFile, `${process.pid} ${processStartTime(process.pid) ?? ''}\n`)
    } finally {
      await releaseTakeover().catch(() => undefined)
    }
  }
  writeFileAtomic(pidFile, `${process.pid} ${processStartTime(process.pid) ?? ''}\n`)
  let released: Promise<void> | undefined
  return () => (released ??= release().catch(() => undefined))
}
