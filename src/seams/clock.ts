import { performance } from 'node:perf_hooks'

/** Cancels a scheduled callback; calling it twice is harmless. */
export type Cancel = () => void

/**
 * Time as an interface, so that policy and state machines can be driven by a fake clock in tests.
 * Production code outside `seams/` takes a Clock instead of calling Date.now() or setTimeout.
 */
export interface Clock {
  /** Wall-clock milliseconds since the epoch (for log records and status, never for intervals). */
  now(): number
  /** Monotonic milliseconds from an arbitrary origin: the only time used to measure intervals. */
  monotonic(): number
  /** Runs `fn` after `ms` milliseconds; returns its cancel. */
  after(ms: number, fn: () => void): Cancel
  /** Resolves after `ms` milliseconds, or rejects with the signal's reason when it aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>
}

/**
 * Milliseconds on the host's monotonic clock (CLOCK_MONOTONIC on Linux): one clock for every
 * process of a host, unlike performance.now() whose origin is each process's start. Deadlines a
 * supervisor hands to its children and its watchdog are absolute times on it, so that a message
 * delivered late cannot extend them.
 */
export const hostMonotonic = (): number => Number(process.hrtime.bigint()) / 1e6

/** The reason an AbortSignal carries, as an Error. */
export const abortReason = (signal: AbortSignal): Error =>
  signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason ?? 'aborted'))

export const systemClock: Clock = {
  now: () => Date.now(),
  monotonic: () => performance.now(),
  after(ms, fn) {
    const t = setTimeout(fn, Math.max(0, ms))
    return () => clearTimeout(t)
  },
  sleep(ms, signal) {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(abortReason(signal))
      const t = setTimeout(
        () => {
          signal?.removeEventListener('abort', onAbort)
          resolve()
        },
        Math.max(0, ms),
      )
      const onAbort = () => {
        clearTimeout(t)
        reject(abortReason(signal!))
      }
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  },
}
