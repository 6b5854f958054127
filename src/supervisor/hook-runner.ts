import { isDeepStrictEqual } from 'node:util'
import type { HookSpec } from '../config/plan.js'
import { errorMessage } from '../errors.js'
import type { CommandResult } from '../process/run-command.js'
import type { TandemEvent } from './event-stream.js'
import type { HookStatus } from '../status.js'

type Log = Record<'info' | 'warn' | 'error', (fields: object, message: string) => void>

interface Hook {
  spec: HookSpec
  index: number
  queue: TandemEvent[]
  running: Promise<void> | undefined
  runningSeq: number | undefined
  ran: number
  failed: number
  dropped: number
  /** Drops since its queue last had room: reported once it has. */
  burst: { count: number; first: number; last: number } | undefined
}

const newHook = (spec: HookSpec, index: number): Hook => ({
  spec,
  index,
  queue: [],
  running: undefined,
  runningSeq: undefined,
  ran: 0,
  failed: 0,
  dropped: 0,
  burst: undefined,
})

/** Whether `hook` runs for `e`: one of its events, of its target if it has one. */
export const hookWants = (hook: HookSpec, e: TandemEvent): boolean =>
  hook.on.includes(e.event) &&
  (hook.target === undefined ||
    (e.component === hook.target.component &&
      (hook.target.index === undefined || e.instance === hook.target.index)))

/** `hook 0 (/usr/local/bin/page)`: how the log names a hook. */
export const hookName = (hook: HookSpec, index: number): string =>
  `hook ${index} (${hook.command[0]})`

/**
 * Runs the config's hooks on the events they name: each hook one run at a time, in event order,
 * on a queue of at most `maxQueued` events; an event that finds it full is dropped, counted, and
 * logged (the first of a burst at once, the count once the queue has room again). A run's end is
 * logged (a failure, a timeout as errors). Nothing a hook does reaches supervision: `listener` only
 * queues, runs are not awaited by anyone but this runner, and a run that throws is logged.
 */
export class HookRunner {
  #hooks: Hook[]
  /** Runs of hooks a reload replaced, still under way: close() waits for them too. */
  readonly #replacedRuns = new Set<Promise<void>>()
  readonly #run: (hook: HookSpec, index: number, e: TandemEvent) => Promise<CommandResult>
  readonly #log: Log
  #closed = false

  constructor(
    hooks: readonly HookSpec[],
    deps: {
      /** Runs the hook's command for one event; resolves when it and its group are gone. */
      run: (hook: HookSpec, index: number, e: TandemEvent) => Promise<CommandResult>
      log: Log
    },
  ) {
    this.#hooks = hooks.map(newHook)
    this.#run = (hook, index, e) => deps.run(hook, index, e)
    this.#log = deps.log
  }

  /** For the event stream: queues `e` for each hook that wants it. Never blocks, never throws. */
  readonly listener = (e: TandemEvent): void => {
    if (this.#closed) return
    for (const h of this.#hooks) if (hookWants(h.spec, e)) this.#offer(h, e)
  }

  status(): HookStatus[] {
    return this.#hooks.map((h) => ({
      index: h.index,
      ...(h.runningSeq !== undefined ? { running: h.runningSeq } : {}),
      queued: h.queue.length,
      ran: h.ran,
      failed: h.failed,
      dropped: h.dropped,
    }))
  }

  /**
   * A reload's hooks from now on. A hook whose definition is the same at the same index goes on
   * as it was (its queue, its run, its counts); any other is new, with counts from 0. A hook
   * that changed or went is given no more events: the events waiting on its queue are not run
   * (logged), a run under way ends as it would (close() still waits for it). Returns what
   * changed, for the log.
   */
  replace(hooks: readonly HookSpec[]): { kept: number; added: number; removed: number } {
    const old = this.#hooks
    this.#hooks = hooks.map((spec, index) => {
      const same = old[index]
      return same && isDeepStrictEqual(same.spec, spec) ? same : newHook(spec, index)
    })
    let removed = 0
    for (const h of old) {
      if (this.#hooks.includes(h)) continue
      removed++
      this.#dropWaiting(h, 'the reload changed or removed this hook')
      if (h.running) {
        const run = h.running
        this.#replacedRuns.add(run)
        void run.finally(() => this.#replacedRuns.delete(run))
      }
    }
    const kept = this.#hooks.filter((h) => old.includes(h)).length
    return { kept, added: this.#hooks.length - kept, removed }
  }

  /**
   * Takes no more events, drops those waiting, and resolves once the runs under way have ended
   * (each is stopped at its timeoutMs at the latest). Idempotent.
   */
  async close(): Promise<void> {
    this.#closed = true
    for (const h of this.#hooks) this.#dropWaiting(h, 'the supervisor is stopping')
    await Promise.all([
      ...this.#hooks.flatMap((h) => (h.running ? [h.running] : [])),
      ...this.#replacedRuns,
    ])
  }

  #dropWaiting(h: Hook, why: string): void {
    if (h.queue.length)
      this.#log.warn(
        { event: 'hook', hook: h.index },
        `${hookName(h.spec, h.index)}: ${h.queue.length} waiting events not run: ${why}`,
      )
    h.queue = []
  }

  #offer(h: Hook, e: TandemEvent): void {
    if (!h.running) {
      // Started once the publisher's call is over: the event came from inside a state change,
      // which must not fork a process or write pid records in its midst.
      h.running = Promise.resolve().then(() => this.#drain(h, e))
      return
    }
    if (h.queue.length < h.spec.maxQueued) {
      h.queue.push(e)
      return
    }
    h.dropped++
    if (h.burst) {
      h.burst.count++
      h.burst.last = e.seq
      return
    }
    h.burst = { count: 1, first: e.seq, last: e.seq }
    this.#log.warn(
      { event: 'hook', hook: h.index, seq: e.seq, dropped: h.dropped },
      `${hookName(h.spec, h.index)}: queue full (${h.spec.maxQueued} events wait): dropped event ${e.seq} (${e.event}${e.id ? ` ${e.id}` : ''}); further drops are counted until it has room`,
    )
  }

  /** Runs `first`, then what waits, one at a time, until the queue is empty. */
  async #drain(h: Hook, first: TandemEvent): Promise<void> {
    for (let e: TandemEvent | undefined = first; e; e = h.queue.shift()) {
      h.runningSeq = e.seq
      await this.#once(h, e)
      h.runningSeq = undefined
      if (h.burst) {
        const { count, first: from, last } = h.burst
        h.burst = undefined
        this.#log.warn(
          { event: 'hook', hook: h.index, dropped: h.dropped },
          `${hookName(h.spec, h.index)}: dropped ${count} events (${from} to ${last}) while its queue was full; ${h.dropped} dropped since the start`,
        )
      }
    }
    h.running = undefined
  }

  async #once(h: Hook, e: TandemEvent): Promise<void> {
    const name = hookName(h.spec, h.index)
    const fields = { event: 'hook', hook: h.index, seq: e.seq, on: e.event }
    const what = `event ${e.seq} (${e.event}${e.id ? ` ${e.id}` : ''})`
    let r: CommandResult
    try {
      r = await this.#run(h.spec, h.index, e)
    } catch (err) {
      h.ran++
      h.failed++
      this.#log.error(fields, `${name} for ${what}: ${errorMessage(err)}`)
      return
    }
    h.ran++
    if (r.spawnError !== undefined) {
      h.failed++
      this.#log.error(fields, `${name} for ${what} could not run: ${r.spawnError}`)
    } else if (r.timedOut) {
      h.failed++
      this.#log.error(
        { ...fields, code: r.code, signal: r.signal },
        `${name} for ${what} still ran after timeoutMs ${h.spec.timeoutMs}: stopped`,
      )
    } else if (r.code !== 0) {
      h.failed++
      this.#log.error(
        { ...fields, code: r.code, signal: r.signal },
        `${name} for ${what} failed: ${r.signal ? `signal ${r.signal}` : `exit code ${r.code}`}`,
      )
    } else {
      this.#log.info(fields, `${name} ran for ${what}`)
    }
  }
}
