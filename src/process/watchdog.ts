import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'

/**
 * The supervisor side of the orphan guard: one small helper process that stops every child's
 * process group when the supervisor dies without saying goodbye. The kernel's parent-death
 * signal (setpriv) reaches only direct children; this reaches their grandchildren too, and works
 * where setpriv does not exist.
 */
export interface Watchdog {
  watch(pgid: number, signal: NodeJS.Signals, timeoutMs: number): void
  unwatch(pgid: number): void
  /**
   * The groups serving as active and the supervisor's deadline (absolute ms on
   * `hostMonotonic()`, its own fence time): the watchdog SIGKILLs every listed group still alive
   * at `deadline + marginMs` unless a newer call came first, whether its child cooperates or
   * not (the supervisor froze, or the child ignored its deadline). A deadline already past kills
   * them at once: a call that arrives late cannot extend anything. `lease(0, 0, [])` clears.
   */
  lease(deadline: number, marginMs: number, pgids: readonly number[]): void
  /** Ends the helper without it killing anything (orderly shutdown). Idempotent. */
  close(): Promise<void>
}

/**
 * How long after an active child's deadline the watchdog kills it: a quarter of `takeoverMs -
 * selfFenceMs`. A standby may claim the epoch once the heartbeat has been still for takeoverMs,
 * and the old active fences itself selfFenceMs after its last good renew began: everything the
 * old active's children do must end within that gap, with room left for clock-rate error and
 * the kill itself. The margin only has to cover the delay of the line that carries the next
 * deadline (a supervisor busy for a moment, a slow pipe), so that a child of a node that stays
 * active is not killed; a quarter of the gap leaves three quarters of it unused (250 ms of
 * 1000 with the default timings).
 */
export const watchdogMarginMs = (selfFenceMs: number, takeoverMs: number): number =>
  Math.floor((takeoverMs - selfFenceMs) / 4)

const MAIN = fileURLToPath(new URL('./watchdog-main.js', import.meta.url))

export const startWatchdog = (onError: (message: string) => void): Watchdog => {
  const watched = new Map<number, string>()
  let child: ChildProcess
  let closing: Promise<void> | undefined
  /** The last lease line, for a watchdog started again (its deadline is absolute: still right). */
  let lastLease: string | undefined
  const launch = () => {
    child = spawn(process.execPath, [MAIN], {
      stdio: ['pipe', 'ignore', 'inherit'],
      detached: true,
    })
    child.stdin!.on('error', () => {}) // reported through 'exit' below
    child.once('exit', (code, signal) => {
      if (closing) return
      onError(`orphan watchdog exited (code ${code}, signal ${signal}); starting a new one`)
      launch()
      for (const line of watched.values()) child.stdin!.write(line)
      if (lastLease) child.stdin!.write(lastLease)
    })
    child.unref()
  }
  launch()
  return {
    watch(pgid, signal, timeoutMs) {
      const line = `+${pgid} ${signal} ${timeoutMs}\n`
      watched.set(pgid, line)
      child.stdin!.write(line)
    },
    unwatch(pgid) {
      if (watched.delete(pgid)) child.stdin!.write(`-${pgid}\n`)
    },
    lease(deadline, marginMs, pgids) {
      // Rounded up: the kill may come a fraction of a millisecond late, never early.
      lastLease = `L ${Math.max(0, Math.ceil(deadline))} ${Math.max(0, Math.floor(marginMs))} ${pgids.join(',')}\n`
      child.stdin!.write(lastLease)
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve()
        // Unref'd while it runs (it must not keep the supervisor alive), but waiting for its exit
        // must: otherwise the event loop can run dry first and the process end mid-shutdown.
        child.ref()
        child.once('exit', () => resolve())
        child.stdin!.end('bye\n')
      })
      return closing
    },
  }
}
