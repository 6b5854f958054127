import type { Clock } from '../seams/clock.js'
import type { InstanceEvent } from './instance.js'

/**
 * The names of the events a supervisor publishes: what hooks subscribe to (`hooks[].on`), what
 * `tandem events` and the status page show. An unknown name in a config is an error.
 */
export const EVENT_NAMES = [
  // An instance's life.
  'spawned',
  'ready',
  'exited',
  'restarting',
  'failed',
  'crashLoop',
  'unhealthy',
  'memory',
  'stopped',
  // Rollouts (upgrade, reload, cluster upgrade).
  'rollout.started',
  'rollout.replaced',
  'rollout.rolledBack',
  'rollout.done',
  'reload',
  // High availability.
  'promoted',
  'fenced',
  'released',
  'switchover',
  // The supervisor itself.
  'log.unwritable',
  'log.recovered',
  'config.rejected',
] as const

export type EventName = (typeof EVENT_NAMES)[number]

export const isEventName = (s: string): s is EventName =>
  (EVENT_NAMES as readonly string[]).includes(s)

/** What a publisher says; the stream adds the sequence number, time and node. */
export interface EventInput {
  event: EventName
  /** One line for a person: what the log says of it. */
  message: string
  /** The instance's fields, for instance events. */
  id?: string
  component?: string
  instance?: number
  port?: number
  childPid?: number
  /** Anything else the event carries (an exit, a reason, an epoch): plain JSON values. */
  [field: string]: unknown
}

/** One published event, as the log, `tandem events`, hooks and the status page get it. */
export interface TandemEvent extends EventInput {
  /** 1, 2, 3, ... for the life of this supervisor: gaps mean nothing was lost to a reader that
   * saw them all; a reader that resumes with `since` gets what it missed while it is in the ring. */
  seq: number
  /** ISO 8601, wall clock. */
  time: string
  /** `node` of the config. */
  node: string
}

export type EventListener = (e: TandemEvent) => void

/**
 * One event stream per supervisor: every state transition and supervisor event, numbered in
 * the order they happened, kept in a bounded ring (the recent past for a reader that connects
 * later) and handed to listeners synchronously. A listener must not block or throw: the
 * consumers (hooks, the control socket, Server-Sent Events) queue what they cannot write at
 * once and cut themselves off when their queue is full, so no reader slows the supervisor.
 */
export class EventStream {
  readonly #node: string
  readonly #clock: Pick<Clock, 'now'>
  readonly #capacity: number
  readonly #ring: TandemEvent[] = []
  readonly #listeners = new Set<EventListener>()
  readonly #onListenerError: (err: unknown) => void
  #seq = 0

  constructor(options: {
    node: string
    clock: Pick<Clock, 'now'>
    /** How many recent events are kept (default 1000). */
    capacity?: number
    /** A listener threw: reported here, and the other listeners still get the event. */
    onListenerError?: (err: unknown) => void
  }) {
    this.#node = options.node
    this.#clock = options.clock
    this.#capacity = options.capacity ?? 1000
    if (!Number.isInteger(this.#capacity) || this.#capacity < 1)
      throw new RangeError(
        `EventStream capacity: expected a positive integer, got ${options.capacity}`,
      )
    this.#onListenerError = options.onListenerError ?? (() => {})
  }

  /** The sequence number of the last event published (0 before the first). */
  get lastSeq(): number {
    return this.#seq
  }

  publish(input: EventInput): TandemEvent {
    const e: TandemEvent = {
      ...input,
      seq: ++this.#seq,
      time: new Date(this.#clock.now()).toISOString(),
      node: this.#node,
    }
    this.#ring.push(e)
    if (this.#ring.length > this.#capacity) this.#ring.shift()
    for (const l of [...this.#listeners]) {
      try {
        l(e)
      } catch (err) {
        this.#onListenerError(err)
      }
    }
    return e
  }

  /** The kept events with a sequence number above `since` (all kept ones by default), oldest first. */
  recent(since = 0): TandemEvent[] {
    const first = this.#ring[0]?.seq ?? 0
    return this.#ring.slice(Math.max(0, since + 1 - first))
  }

  /**
   * Calls `listener` for every event published from now on; with `since`, first for the kept
   * events after it (so a reader that resumes misses nothing still in the ring). Returns the
   * unsubscribe.
   */
  subscribe(listener: EventListener, since?: number): () => void {
    if (since !== undefined) for (const e of this.recent(since)) listener(e)
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }
}

/**
 * An instance's state change as a stream event (undefined for the transitions the stream does
 * not publish: starting, stopping; and for a handover's old process ending: retired). First cut; crash loops, health and memory restarts are told
 * apart by `reason` here and get their own names with the hooks.
 */
export const fromInstanceEvent = (e: InstanceEvent): EventInput | undefined => {
  const name = (
    {
      spawned: 'spawned',
      ready: 'ready',
      exited: 'exited',
      backoff: 'restarting',
      restart: 'restarting',
      failed: 'failed',
      stopped: 'stopped',
      reactivated: undefined,
      // The old process of a handover ended; the instance itself did not change.
      retired: undefined,
      starting: undefined,
      stopping: undefined,
    } as const
  )[e.event]
  if (!name) return undefined
  const { id, component, instance, port, childPid } = e
  const fields = Object.fromEntries(
    Object.entries(e).filter(
      ([k, v]) =>
        v !== undefined &&
        !['event', 'id', 'component', 'instance', 'port', 'childPid', 'stderrTail'].includes(k),
    ),
  )
  return {
    ...fields,
    event: name,
    message: `${id} ${e.event}${e.reason ? `: ${e.reason}` : ''}`,
    id,
    component,
    instance,
    ...(port !== undefined ? { port } : {}),
    ...(childPid !== undefined ? { childPid } : {}),
  }
}
