import { TandemError } from '../errors.js'
import type { Clock } from '../seams/clock.js'
import type { EventStream, TandemEvent } from '../supervisor/event-stream.js'
import { Streamed, type Route } from './server.js'

/**
 * Bytes of events a `tandem events -f` connection may have waiting for its reader (written and
 * not taken: beyond the kernel's socket buffer) before it is cut off: more than the whole ring
 * (1000 events of a few hundred bytes), so that a reader that connects and reads is never cut
 * off by the replay, and little enough to keep per connection.
 */
export const EVENTS_MAX_BUFFERED_BYTES = 1024 * 1024

/** How long a cut-off reader has to read the notice before its connection is closed anyway. */
export const EVENTS_CUTOFF_GRACE_MS = 10_000

/** What `GET /events` takes (a query string, or a JSON body). */
export interface EventsQuery {
  /** Instance targets (`web`, `web#1`, `all`); none: every event, the node's own too. */
  targets: string[]
  /** Only events after this sequence number (default 0: every one kept). */
  since: number
  /** Then the live ones, until the client goes. */
  follow: boolean
}

const bad = (what: string, value: unknown): never => {
  throw new TandemError('EUSAGE', `events: ${what}, got ${JSON.stringify(value)}`)
}

/** Validates a request's fields; EUSAGE naming the field. */
export const parseEventsQuery = (body: Record<string, unknown>): EventsQuery => {
  const { targets = [], since = 0, follow = false } = body
  const list =
    typeof targets === 'string'
      ? targets.split(',').filter((x) => x !== '')
      : Array.isArray(targets) && targets.every((x) => typeof x === 'string')
        ? targets
        : bad('targets expects a list of targets', targets)
  const n = typeof since === 'string' && /^\d+$/.test(since) ? Number(since) : since
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0)
    bad('since expects a sequence number (a whole number, 0 or more)', since)
  const f =
    follow === true || follow === 'true' || follow === '1'
      ? true
      : follow === false || follow === 'false' || follow === '0'
        ? false
        : bad('follow expects true or false', follow)
  return { targets: list, since: n as number, follow: f }
}

/**
 * `GET /events`: the events kept in the stream's ring after `since`, of the targets' instances,
 * as NDJSON lines; with `follow`, then the live ones until the client goes (the last line then
 * is the result `{lastSeq}`) or the supervisor stops (`{lastSeq, stopped: true}`). A reader that does not keep up is never waited for: what it has
 * not taken is counted (the socket's buffer, then Node's), and once more than `maxBufferedBytes`
 * wait, it gets no more events, a last line `{"error": {"code": "ESLOW", ...}}` saying from which
 * sequence number to resume, and its connection is closed `graceMs` later if it has not read
 * that by then. ETARGET (400) before anything streams when a target is unknown.
 */
export const eventsRoute =
  (deps: {
    events: Pick<EventStream, 'recent' | 'subscribe' | 'lastSeq' | 'capacity'>
    /** Resolves targets to instance ids (ETARGET), as the other commands do. */
    resolveTargets(targets: string[]): string[]
    clock: Pick<Clock, 'after'>
    /** A reader was cut off: for the log. */
    onCutOff?(message: string): void
    maxBufferedBytes?: number
    graceMs?: number
  }): Route =>
  (body) => {
    const q = parseEventsQuery(body)
    const ids = q.targets.length ? new Set(deps.resolveTargets(q.targets)) : undefined
    const wanted = (e: TandemEvent) => !ids || (e.id !== undefined && ids.has(e.id))
    const { events } = deps
    const max = deps.maxBufferedBytes ?? EVENTS_MAX_BUFFERED_BYTES
    // A sequence number beyond the last one comes from before a restart of the supervisor
    // (numbers start again at 1): everything kept is new to that reader.
    if (q.since > deps.events.lastSeq) q.since = 0
    return new Streamed(async (emit, connection) => {
      // Asked for events the ring no longer keeps: say which, before the ones it has.
      const oldest = events.recent(q.since)[0]?.seq
      if (q.since > 0 && oldest !== undefined && oldest > q.since + 1)
        emit({
          gap: {
            from: q.since + 1,
            to: oldest - 1,
            message: `events ${q.since + 1} to ${oldest - 1} are no longer kept (the supervisor keeps its last ${events.capacity}); showing from ${oldest}`,
          },
        })
      if (!q.follow) {
        for (const e of events.recent(q.since)) if (wanted(e)) emit(e)
        return { lastSeq: events.lastSeq }
      }
      return await new Promise((resolve, reject) => {
        let last = q.since
        let cut = false
        let off: () => void = () => {}
        const onClose = () => {
          off()
          connection.ending.removeEventListener('abort', onEnding)
          resolve({ lastSeq: last })
        }
        // The supervisor stops: the answer ends with its result, after every event it published.
        const onEnding = () => {
          off()
          connection.closed.removeEventListener('abort', onClose)
          resolve({ lastSeq: last, stopped: true })
        }
        const listener = (e: TandemEvent) => {
          if (cut || !wanted(e)) return
          emit(e)
          last = e.seq
          if (connection.bufferedBytes() <= max) return
          cut = true
          off()
          connection.closed.removeEventListener('abort', onClose)
          connection.ending.removeEventListener('abort', onEnding)
          const message = `events: the reader fell more than ${max} bytes behind and was cut off after event ${e.seq}; resume with --since ${e.seq}`
          deps.onCutOff?.(message)
          const cancel = deps.clock.after(deps.graceMs ?? EVENTS_CUTOFF_GRACE_MS, () =>
            connection.destroy(),
          )
          // Gone before the grace ended: nothing left to destroy.
          connection.closed.addEventListener('abort', cancel, { once: true })
          reject(new TandemError('ESLOW', message))
        }
        off = events.subscribe(listener, q.since)
        // Cut off while the kept events were replayed: the listener was added after that.
        if (cut) return off()
        if (connection.closed.aborted) return onClose()
        if (connection.ending.aborted) return onEnding()
        connection.closed.addEventListener('abort', onClose, { once: true })
        connection.ending.addEventListener('abort', onEnding, { once: true })
      })
    })
  }
