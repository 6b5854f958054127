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
   * The groups serving as active and how long the lease still holds (ms): if no new call comes
   * within that, the watchdog kills them (the supervisor froze). An empty list: none.
   */
  lease(validMs: number, pgids: readonly number[]): void
  /** Ends the helper without it killing anything (orderly shutdown). Idempotent. */
  close(): Promise<void>
}

const MAIN = fileURLToPath(new URL('./watchdog-main.js', import.meta.url))

export const startWatchdog = (onError: (message: string) => void): Watchdog => {
  const watched = new Map<number, string>()
  let child: ChildProcess
  let closing: Promise<void> | undefined
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
    lease(validMs, pgids) {
      child.stdin!.write(`L ${Math.max(0, Math.floor(validMs))} ${pgids.join(',')}\n`)
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
