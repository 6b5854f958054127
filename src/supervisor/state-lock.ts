import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import lockfile from 'proper-lockfile'
import { writeFileAtomic } from '../seams/atomic-write.js'
import { TandemError, errorMessage } from '../errors.js'

/**
 * One supervisor per state dir, by proper-lockfile on `<stateDir>/supervisor` (a same-host
 * exclusion, which is what it is good at). The holder's pid is written beside the lock so that
 * a second `tandem start` can name it. `onCompromised` is ours: proper-lockfile's default throws
 * inside a timer and would crash the supervisor and orphan its children.
 */
export const acquireStateLock = async (
  stateDir: string,
  onCompromised: (message: string) => void,
): Promise<() => Promise<void>> => {
  const target = join(stateDir, 'supervisor')
  const pidFile = join(stateDir, 'supervisor.pid')
  let release: () => Promise<void>
  try {
    release = await lockfile.lock(stateDir, {
      lockfilePath: `${target}.lock`,
      realpath: false,
      stale: 10_000,
      update: 2_000,
      onCompromised: (err) =>
        onCompromised(`state dir lock ${target}.lock compromised: ${err.message}`),
    })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ELOCKED') {
      let holder = 'unknown pid'
      try {
        holder = `pid ${readFileSync(pidFile, 'utf8').trim()}`
      } catch {
        // the holder is between taking the lock and writing its pid
      }
      throw new TandemError(
        'ELOCKED',
        `another supervisor (${holder}) is already running for state dir ${stateDir}`,
        { cause: err },
      )
    }
    throw new TandemError('ELOCKED', `cannot lock state dir ${stateDir}: ${errorMessage(err)}`, {
      cause: err,
    })
  }
  writeFileAtomic(pidFile, `${process.pid}\n`)
  let released: Promise<void> | undefined
  return () => (released ??= release().catch(() => undefined))
}
