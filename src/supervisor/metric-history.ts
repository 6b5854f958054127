import type { Clock } from '../seams/clock.js'

/** The status page draws the last hour of each instance's CPU, memory and restarts. */
export const HISTORY_WINDOW_MS = 3_600_000
/**
 * One point per instance per bucket: 720 points an hour, one per sample at the default
 * `metrics.intervalMs` (5 s). A faster interval merges its samples into the bucket (the highest
 * CPU and RSS, the latest restart count), so the memory kept does not depend on the interval.
 */
export const HISTORY_BUCKET_MS = 5_000

/** One instance's figures at one sample pass. */
export interface MetricSample {
  id: string
  /** Undefined while it runs no process, or before its first reading. */
  cpuPercent?: number | undefined
  rssBytes?: number | undefined
  /** Its restart count (it only grows while the instance exists). */
  restarts: number
}

/**
 * One point of a series: wall time (ms since the epoch) of its latest sample, CPU % and RSS
 * bytes (null: no process then), the restart count at its latest sample and before its bucket
 * (so `restarts - before` restarts happened in it, even when it is the first point, or when the
 * samples before and after a restart were merged into it). An array, as the status page gets
 * it: an hour of ten instances is 7,200 of these in one message.
 */
export type MetricPoint = [
  t: number,
  cpu: number | null,
  rss: number | null,
  restarts: number,
  before: number,
]

export type SampleListener = (t: number, samples: MetricSample[]) => void

/**
 * The recent CPU, memory and restart figures of every instance, for the status page's charts:
 * the monitor records each sample pass; per instance one point per bucket, none older than the
 * window, so it is bounded (720 points per instance with the defaults) however long the
 * supervisor runs and however fast it samples. An instance gone (a reload removed it) keeps its
 * series until its points age out. Listeners get each pass as recorded, synchronously; one that
 * throws is reported through `onListenerError` and the others still get it.
 */
export class MetricHistory {
  readonly windowMs: number
  readonly bucketMs: number
  readonly #clock: Pick<Clock, 'now'>
  readonly #series = new Map<string, MetricPoint[]>()
  readonly #listeners = new Set<SampleListener>()
  readonly #onListenerError: (err: unknown) => void

  constructor(options: {
    clock: Pick<Clock, 'now'>
    windowMs?: number
    bucketMs?: number
    onListenerError?: (err: unknown) => void
  }) {
    this.#clock = options.clock
    this.windowMs = options.windowMs ?? HISTORY_WINDOW_MS
    this.bucketMs = options.bucketMs ?? HISTORY_BUCKET_MS
    for (const [name, v] of [
      ['windowMs', this.windowMs],
      ['bucketMs', this.bucketMs],
    ] as const)
      if (!Number.isInteger(v) || v < 1)
        throw new RangeError(`MetricHistory ${name}: expected a positive integer, got ${v}`)
    if (this.bucketMs > this.windowMs)
      throw new RangeError(
        `MetricHistory bucketMs: expected at most windowMs (${this.windowMs}), got ${this.bucketMs}`,
      )
    this.#onListenerError = options.onListenerError ?? (() => {})
  }

  /** Most points one series holds: the window's buckets, and the one in progress. */
  get maxPoints(): number {
    return Math.ceil(this.windowMs / this.bucketMs) + 1
  }

  /** Records one sample pass at the clock's now. */
  record(samples: MetricSample[]): void {
    const t = this.#clock.now()
    const bucket = Math.floor(t / this.bucketMs)
    for (const s of samples) {
      const cpu = s.cpuPercent ?? null
      const rss = s.rssBytes ?? null
      let series = this.#series.get(s.id)
      if (!series) this.#series.set(s.id, (series = []))
      const last = series[series.length - 1]
      if (last && Math.floor(last[0] / this.bucketMs) === bucket) {
        series[series.length - 1] = [
          t,
          maxOf(last[1], cpu),
          maxOf(last[2], rss),
          s.restarts,
          last[4],
        ]
      } else {
        // A count lower than the last (the instance was replaced by a reload) starts afresh.
        const before = last && last[3] <= s.restarts ? last[3] : s.restarts
        series.push([t, cpu, rss, s.restarts, before])
        if (series.length > this.maxPoints) series.shift()
      }
    }
    this.#prune(t)
    for (const l of [...this.#listeners]) {
      try {
        l(t, samples)
      } catch (err) {
        this.#onListenerError(err)
      }
    }
  }

  /** Every series within the window, oldest point first (copies: the caller may keep them). */
  series(): Record<string, MetricPoint[]> {
    this.#prune(this.#clock.now())
    const out: Record<string, MetricPoint[]> = {}
    for (const [id, points] of this.#series) out[id] = points.map((p) => [...p])
    return out
  }

  /** Calls `listener` with every sample pass recorded from now on; returns the unsubscribe. */
  subscribe(listener: SampleListener): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  #prune(now: number): void {
    const oldest = now - this.windowMs
    for (const [id, points] of this.#series) {
      let drop = 0
      while (drop < points.length && points[drop]![0] < oldest) drop++
      if (drop === points.length) this.#series.delete(id)
      else if (drop > 0) points.splice(0, drop)
    }
  }
}

const maxOf = (a: number | null, b: number | null): number | null =>
  a === null ? b : b === null ? a : Math.max(a, b)
