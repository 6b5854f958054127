import { randomBytes } from 'node:crypto'
import type { Clock } from '../seams/clock.js'
import { describeExit, type InstanceEvent } from './instance.js'

export {
  EVENT_NAMES,
  isEventName,
  type EventName,
  type EventInput,
  type TandemEvent,
} from '../events.js'
import type { EventInput, EventName, TandemEvent } from '../events.js'

export type EventListener = (e: TandemEvent) => void

/** How many recent events a supervisor keeps for readers that connect later. */
export const EVENT_RING_SIZE = 1000

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
  /**
   * This stream's run (a random id): its sequence numbers begin at 1, as those of the stream of
   * a supervisor that ran before it did. A reader that names the run with the number it resumes
   * after (the status page does) is not mistaken for one of this run.
   */
  readonly run = randomBytes(6).toString('hex')

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
    this.#capacity = options.capacity ?? EVENT_RING_SIZE
    if (!Number.isInteger(this.#capacity) || this.#capacity < 1)
      throw new RangeError(
        `EventStream capacity: expected a positive integer, got ${options.capacity}`,
      )
    this.#onListenerError = options.onListenerError ?? (() => {})
  }

  /** How many recent events are kept. */
  get capacity(): number {
    return this.#capacity
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

/** What the mapping of instance events needs to know besides the event itself. */
export interface InstanceEventContext {
  /** Whether an operator stopped it (`tandem stop`, a stop action): its `stopped` is published. */
  stoppedByOperator(id: string): boolean
}

/**
 * An instance's state change as a stream event: one transition, at most one event (undefined
 * for those the stream does not publish). Named apart by `cause`: a `failed` that the
 * crash-loop window decided is `crashLoop` (not also `failed`); a `restart` of a ready instance
 * is `memory` (over maxMemoryMb) or `unhealthy` (liveness checks failed), or `restarting` when an
 * operator asked; a `backoff` is `restarting` too. `stopped` is published only for a stop an
 * operator asked for; the other stops are told by what caused them (a rollout's events, the
 * node's `fenced` or `released`, the `exited` of a one-shot that completed) or are the
 * supervisor's own shutdown. `starting`, `stopping`, `reactivated` and `retired` (a handover's
 * old process ended) are not published.
 */
export const fromInstanceEvent = (
  e: InstanceEvent,
  context: InstanceEventContext,
): EventInput | undefined => {
  const name = streamName(e, context)
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
    message: instanceMessage(name, e),
    id,
    component,
    instance,
    ...(port !== undefined ? { port } : {}),
    ...(childPid !== undefined ? { childPid } : {}),
  }
}

const streamName = (e: InstanceEvent, context: InstanceEventContext): EventName | undefined => {
  switch (e.event) {
    case 'spawned':
    case 'ready':
    case 'exited':
      return e.event
    case 'backoff':
      return 'restarting'
    case 'restart':
      return e.cause === 'memory' || e.cause === 'unhealthy' ? e.cause : 'restarting'
    case 'failed':
      return e.cause === 'crashLoop' ? 'crashLoop' : 'failed'
    case 'stopped':
      return context.stoppedByOperator(e.id) ? 'stopped' : undefined
    case 'starting':
    case 'stopping':
    case 'reactivated':
    // The old process of a handover ended; the instance itself did not change.
    case 'retired':
      return undefined
  }
}

/** The line a person reads (`tandem events`, the status page): as the log says it. */
const instanceMessage = (name: EventName, e: InstanceEvent): string => {
  const { id, exit } = e
  switch (name) {
    case 'spawned':
      return `${id} spawned (pid ${e.childPid})`
    case 'exited':
      return exit && exit.reason !== 'exited'
        ? `${id} did not start: ${describeExit(exit)}`
        : `${id} exited: ${exit ? describeExit(exit) : (e.reason ?? '')}`
    case 'restarting':
      return e.event === 'backoff'
        ? `${id} restarting in ${e.delayMs} ms${e.reason ? ` (${e.reason})` : ''}`
        : `${id} restarting: ${e.reason ?? ''}`
    case 'memory':
    case 'unhealthy':
      return `${id} restarting: ${e.reason ?? name}`
    case 'crashLoop':
    case 'failed':
      return `${id} failed: ${e.reason ?? ''}`
    case 'stopped':
      return `${id} stopped by operator`
    default:
      return `${id} ${name}`
  }
}
