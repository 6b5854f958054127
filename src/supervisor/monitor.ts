import { DEFAULTS } from '../config/schema.js'
import { errorMessage } from '../errors.js'
import type { SampleGroups, Usage } from '../process/group-usage.js'
import type { Cancel, Clock } from '../seams/clock.js'
import type { Instance } from './instance.js'
import type { MetricHistory } from './metric-history.js'
import { probeOnce } from './readiness.js'

export type { SampleGroups, Usage }

export interface MonitorOptions {
  intervalMs: number
  /**
   * How often to sample once nothing has changed for IDLE_AFTER_MS and no running instance has a
   * `maxMemoryMb` (default: intervalMs): a supervisor runs for months beside idle servers.
   */
  idleIntervalMs?: number
  clock: Clock
  /** All running instances' process groups in one call (groupUsageSampler: one /proc pass). */
  sample: SampleGroups
  probe: typeof probeOnce
  onError(message: string): void
  /** Where each sample pass is kept for the status page's charts (the last hour). */
  history?: MetricHistory
}

/** The first CPU and RSS sample comes this soon after the start (or at intervalMs if sooner). */
export const FIRST_SAMPLE_MS = 1000
/** Samples come every intervalMs until nothing has changed (no instance event) for this long. */
export const IDLE_AFTER_MS = 60_000

/**
 * Watches running instances: samples CPU and RSS every `intervalMs` (shown by status and
 * /metrics), every `idleIntervalMs` once nothing has changed for a minute (unless an instance
 * has a memory limit to enforce), and again within a second of any change; restarts an instance whose RSS stays above its `maxMemoryMb` for
 * DEFAULTS.memorySamples samples in a row (reason `memory`), and probes each instance with a
 * `health` check while it is ready, restarting it after `failures` misses in a row (reason
 * `unhealthy`): a server that hangs without exiting is what exit-based supervision misses.
 * Restarts go through `Instance.fail`: the same stop, then the restart policy.
 */
export class Monitor {
  readonly #instances: () => Iterable<Instance>
  readonly #opts: MonitorOptions
  #cancelSampling: Cancel = () => {}
  /** The health loop of each instance that has a check. */
  readonly #healthLoops = new Map<Instance, Cancel>()
  /** Samples in a row above the memory limit, per `id:pid`. */
  readonly #over = new Map<string, number>()
  /** Health misses in a row, per id, with the pid they were counted for. */
  readonly #misses = new Map<string, { pid: number; count: number }>()
  #stopped = false
  /** Monotonic time of the last instance event (start: the monitor's start). */
  #lastChange = 0
  /** When the next sample is due (monotonic), while one is scheduled. */
  #nextSampleAt: number | undefined

  /** `instances` is read at every pass: a reload adds and removes instances. */
  constructor(instances: () => Iterable<Instance>, options: MonitorOptions) {
    this.#instances = instances
    this.#opts = options
  }

  start(): void {
    this.#lastChange = this.#opts.clock.monotonic()
    // The first sample within a second: status right after a start should show figures.
    this.#armSampling(Math.min(FIRST_SAMPLE_MS, this.#opts.intervalMs))
    this.sync()
  }

  /**
   * Something changed (an instance started, exited, was replaced): back to sampling every
   * intervalMs, the next sample within a second if the idle rate had put it further away.
   */
  changed(): void {
    if (this.#stopped) return
    const now = this.#opts.clock.monotonic()
    this.#lastChange = now
    const soon = Math.min(FIRST_SAMPLE_MS, this.#opts.intervalMs)
    if (this.#nextSampleAt !== undefined && this.#nextSampleAt - now > soon) {
      this.#cancelSampling()
      this.#armSampling(soon)
    }
  }

  /** The delay before the sample after this one. */
  #sampleDelay(): number {
    const { intervalMs, idleIntervalMs = intervalMs } = this.#opts
    const quiet = this.#opts.clock.monotonic() - this.#lastChange >= IDLE_AFTER_MS
    if (!quiet) return intervalMs
    for (const inst of this.#instances())
      if (inst.spec.maxMemoryMb !== undefined && inst.pid !== undefined) return intervalMs
    return idleIntervalMs
  }

  #armSampling(delayMs: number): void {
    this.#nextSampleAt = this.#opts.clock.monotonic() + delayMs
    const cancel = this.#opts.clock.after(delayMs, () => {
      this.#nextSampleAt = undefined
      this.#sample()
        .catch((err: unknown) => this.#opts.onError(`monitor: ${errorMessage(err)}`))
        .finally(() => {
          if (!this.#stopped && this.#cancelSampling === cancelThis)
            this.#armSampling(this.#sampleDelay())
        })
    })
    const cancelThis = () => {
      this.#nextSampleAt = undefined
      cancel()
    }
    this.#cancelSampling = cancelThis
  }

  /** Starts health loops for instances that have a check, ends those of instances gone. */
  sync(): void {
    if (this.#stopped) return
    const now = new Set(this.#instances())
    for (const [inst, cancel] of this.#healthLoops) {
      if (now.has(inst) && inst.spec.health) continue
      cancel()
      this.#healthLoops.delete(inst)
    }
    for (const inst of now) {
      if (!inst.spec.health || this.#healthLoops.has(inst)) continue
      this.#healthLoops.set(
        inst,
        this.#every(
          () => inst.spec.health?.intervalMs ?? 1000,
          () => this.#check(inst),
        ),
      )
    }
  }

  stop(): void {
    this.#stopped = true
    this.#cancelSampling()
    this.#healthLoops.forEach((c) => c())
  }

  /** Runs `fn` every `ms()`, the next run scheduled when the previous one has finished. */
  #every(ms: () => number, fn: () => Promise<void>): Cancel {
    let cancel: Cancel = () => {}
    let ended = false
    const arm = () => {
      cancel = this.#opts.clock.after(ms(), () => {
        fn()
          .catch((err: unknown) => this.#opts.onError(`monitor: ${errorMessage(err)}`))
          .finally(() => {
            if (!this.#stopped && !ended) arm()
          })
      })
    }
    arm()
    return () => {
      ended = true
      cancel()
    }
  }

  async #sample(): Promise<void> {
    const instances = [...this.#instances()]
    // Each instance with the pid it had when the pass began: it may restart during the read.
    const running = instances.map((i) => [i, i.pid] as const)
    const pids = running.flatMap(([, pid]) => (pid === undefined ? [] : [pid]))
    const usages = pids.length > 0 ? await this.#opts.sample(pids) : new Map<number, Usage>()
    for (const [inst, pid] of running)
      this.#record(inst, pid, pid === undefined ? undefined : usages.get(pid))
    this.#opts.history?.record(
      running.map(([inst, pid]) => {
        // A process that restarted during the read has no figures of its own yet.
        const usage = pid !== undefined && inst.pid === pid ? usages.get(pid) : undefined
        return { id: inst.id, ...usage, restarts: inst.restarts }
      }),
    )
    // Forget counters of processes that are gone.
    const live = new Set(instances.map((i) => `${i.id}:${i.pid}`))
    for (const key of this.#over.keys()) if (!live.has(key)) this.#over.delete(key)
  }

  /** Keeps an instance's sample for status, and restarts it after too many above its limit. */
  #record(inst: Instance, pid: number | undefined, usage: Usage | undefined): void {
    if (pid === undefined) {
      inst.recordUsage(undefined)
      return
    }
    if (inst.pid !== pid) return // restarted while the table was read
    inst.recordUsage(usage)
    const limitMb = inst.spec.maxMemoryMb
    if (!usage || limitMb === undefined) return
    const key = `${inst.id}:${pid}`
    const over = usage.rssBytes > limitMb * 1024 * 1024 ? (this.#over.get(key) ?? 0) + 1 : 0
    this.#over.set(key, over)
    if (over >= DEFAULTS.memorySamples) {
      this.#over.delete(key)
      inst.fail(
        'memory',
        `RSS ${Math.round(usage.rssBytes / 1048576)} MB above maxMemoryMb ${limitMb} in ${over} samples ${this.#opts.intervalMs} ms apart`,
      )
    }
  }

  async #check(inst: Instance): Promise<void> {
    const health = inst.spec.health
    if (!health) return this.sync() // redefined without a check: its loop ends
    const pid = inst.pid
    if (inst.state !== 'ready' || pid === undefined || inst.spec.port === undefined) {
      this.#misses.delete(inst.id)
      return
    }
    try {
      await this.#opts.probe(health, inst.spec.host, inst.spec.port, health.timeoutMs)
      this.#misses.delete(inst.id)
    } catch (err) {
      if (inst.pid !== pid || inst.state !== 'ready') return
      const prev = this.#misses.get(inst.id)
      const count = prev?.pid === pid ? prev.count + 1 : 1
      this.#misses.set(inst.id, { pid, count })
      if (count >= health.failures) {
        this.#misses.delete(inst.id)
        inst.fail(
          'unhealthy',
          `${health.type} health check failed ${count} times in a row, last: ${errorMessage(err)}`,
        )
      }
    }
  }
}
