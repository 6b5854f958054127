import { abortReason, type Cancel, type Clock } from '../../src/seams/clock.js'

interface Timer {
  at: number
  seq: number
  fn: () => void
}

/** A turn of the event loop: lets promise chains and I/O callbacks run. */
export const tick = () => new Promise<void>((r) => setImmediate(r))

/**
 * A Clock that moves only when the test says so. Timers and sleeps fire in time order during
 * `advance`, each followed by a turn of the event loop so that what they start can run.
 */
export class FakeClock implements Clock {
  #now = 1_000_000
  #seq = 0
  #timers: Timer[] = []

  now(): number {
    return 1_700_000_000_000 + this.#now
  }

  monotonic(): number {
    return this.#now
  }

  after(ms: number, fn: () => void): Cancel {
    const timer = { at: this.#now + Math.max(0, ms), seq: this.#seq++, fn }
    this.#timers.push(timer)
    return () => {
      this.#timers = this.#timers.filter((t) => t !== timer)
    }
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(abortReason(signal))
      const onAbort = () => {
        cancel()
        reject(abortReason(signal!))
      }
      const cancel = this.after(ms, () => {
        signal?.removeEventListener('abort', onAbort)
        resolve()
      })
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }

  /** Milliseconds until the next pending timer, or undefined when none is pending. */
  nextIn(): number | undefined {
    const next = this.#earliest()
    return next && next.at - this.#now
  }

  /** Moves time forward by `ms`, firing every timer that falls due on the way, in order. */
  async advance(ms: number): Promise<void> {
    const end = this.#now + ms
    for (;;) {
      const next = this.#earliest()
      if (!next || next.at > end) break
      this.#timers = this.#timers.filter((t) => t !== next)
      this.#now = next.at
      next.fn()
      await tick()
    }
    this.#now = end
    await tick()
  }

  #earliest(): Timer | undefined {
    return this.#timers.reduce<Timer | undefined>(
      (a, t) => (!a || t.at < a.at || (t.at === a.at && t.seq < a.seq) ? t : a),
      undefined,
    )
  }
}
