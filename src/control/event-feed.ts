import type { IncomingMessage, ServerResponse } from 'node:http'
import { errorMessage } from '../errors.js'
import type { Cancel, Clock } from '../seams/clock.js'
import type { EventStream, TandemEvent } from '../supervisor/event-stream.js'
import type { MetricHistory, MetricSample } from '../supervisor/metric-history.js'

/** A status snapshot follows an event within this: a burst of events costs one snapshot. */
export const STATUS_THROTTLE_MS = 250
/**
 * A status snapshot at least this often while a client is connected (uptimes, CPU figures,
 * peers' last-seen move without events); it also keeps proxies from closing a quiet stream.
 */
export const STATUS_REFRESH_MS = 5_000
/**
 * A client with this much written and not yet taken by its socket (beyond its first message,
 * whatever that one's size) is cut off: a slow reader never makes the supervisor hold more than
 * this for it (the browser reconnects and resumes from the last event it got). The first
 * message (the kept events and an hour of samples) is never cut, or a large node's page would
 * reconnect for ever.
 */
export const MAX_QUEUED_BYTES = 4 * 1024 * 1024
/** How soon a browser reconnects after its stream broke (a supervisor restart, a cut-off). */
export const RECONNECT_MS = 1000
/** Open streams at most (each holds a connection of control.http's 64). */
export const MAX_FEED_CLIENTS = 16

/** What the feed reads. */
export interface FeedSources {
  events: Pick<EventStream, 'recent' | 'subscribe' | 'lastSeq' | 'run'>
  history?: Pick<MetricHistory, 'series' | 'subscribe' | 'windowMs' | 'bucketMs'>
  /** The status reply (as `/status`). */
  status(): unknown
  clock: Pick<Clock, 'after'>
  /** This supervisor, so that a page sees a restart of it (sequence numbers begin again). */
  pid: number
  node: string
}

/**
 * Where a client resumes: the `Last-Event-ID` its browser sends on a reconnect, else `?since=`,
 * else nothing (all events kept). An id is `<run>.<seq>` (see EventStream.run): one of another
 * run of the supervisor (its numbers began at 1 too) is nothing, as is anything but that or a
 * plain non-negative integer.
 */
export const resumeFrom = (req: IncomingMessage, run: string): number | undefined => {
  const header = req.headers['last-event-id']
  const query = new URL(req.url ?? '/', 'http://x').searchParams.get('since')
  const raw = typeof header === 'string' && header !== '' ? header : query
  const m = raw === null ? null : /^(?:([0-9a-f]{1,32})\.)?(\d{1,15})$/.exec(raw)
  if (!m || (m[1] !== undefined && m[1] !== run)) return undefined
  return Number(m[2])
}

/** One Server-Sent Events message. `data` is JSON (one line: JSON.stringify has no newline). */
export const sseMessage = (event: string, data: unknown, id?: string): string =>
  `${id !== undefined ? `id: ${id}\n` : ''}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`

interface Client {
  res: ServerResponse
  from: string
  /** Bytes queued beyond which it is cut off: MAX_QUEUED_BYTES more than its first message. */
  limit: number
}

/**
 * `GET /events` of control.http: Server-Sent Events for the status page. On connect: `hello`
 * (node, supervisor pid, the event stream's `run`, the sequence numbers kept), then the kept
 * events after the client's resume point (`tandem`, with `id:` `<run>.<seq>`; a `gap` first when some
 * it asked for have left the ring; all of them when the id is another run's, as after a
 * supervisor restart, whose numbers begin again at 1: a plain seq beyond the last too), then
 * `history` (every instance's last hour) and a `status` snapshot; then live: each event, each
 * sample pass (`sample`), and a `status` snapshot after events (throttled) and every
 * STATUS_REFRESH_MS. One subscription to the stream and the history for all clients, one
 * status computed per snapshot; no timer runs while no client is connected.
 *
 * Writes never wait: a client whose socket has not taken MAX_QUEUED_BYTES is cut off (its
 * connection destroyed, `onNotice` told), so a slow reader never slows the supervisor.
 */
export class EventFeed {
  readonly #src: FeedSources
  readonly #onNotice: (m: string) => void
  readonly #clients = new Set<Client>()
  #unsubscribe: (() => void)[] = []
  #statusTimer: Cancel | undefined
  #refreshTimer: Cancel | undefined
  #closed = false

  constructor(sources: FeedSources, onNotice: (m: string) => void) {
    this.#src = sources
    this.#onNotice = onNotice
  }

  get clients(): number {
    return this.#clients.size
  }

  /** Serves one `GET /events`. */
  open(req: IncomingMessage, res: ServerResponse): void {
    const from = req.socket.remoteAddress ?? '?'
    if (this.#closed || this.#clients.size >= MAX_FEED_CLIENTS) {
      const body = JSON.stringify({
        error: {
          code: 'EBUSY',
          message: this.#closed
            ? 'the supervisor is shutting down'
            : `${MAX_FEED_CLIENTS} event streams are open already; try again later`,
        },
      })
      res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '10' })
      res.end(body)
      return
    }
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      // nginx buffers proxied responses unless told not to.
      'x-accel-buffering': 'no',
    })
    // The request has been read; the response is written for as long as the client stays.
    req.socket.setNoDelay(true)
    const client: Client = { res, from, limit: MAX_QUEUED_BYTES }
    const since = resumeFrom(req, this.#src.events.run)
    const { events } = this.#src
    const kept = events.recent()
    const first = kept[0]?.seq ?? events.lastSeq + 1
    // `retry:` (the browser's delay before it reconnects, 3 s by default) with the first message.
    let out =
      `retry: ${RECONNECT_MS}\n` +
      sseMessage('hello', {
        node: this.#src.node,
        pid: this.#src.pid,
        run: this.#src.events.run,
        firstSeq: first,
        lastSeq: events.lastSeq,
      })
    let replay: TandemEvent[]
    if (since === undefined || since > events.lastSeq) {
      // A first connect, or a seq from before a restart of the supervisor: everything kept.
      replay = kept
    } else {
      if (since + 1 < first) out += sseMessage('gap', { from: since + 1, to: first - 1 })
      replay = events.recent(since)
    }
    for (const e of replay) out += sseMessage('tandem', e, `${this.#src.events.run}.${e.seq}`)
    const h = this.#src.history
    if (h) out += sseMessage('history', this.#historyMessage(h))
    out += sseMessage('status', this.#src.status())
    this.#clients.add(client)
    const drop = () => this.#remove(client)
    res.once('close', drop)
    res.once('error', drop)
    if (this.#clients.size === 1) this.#start()
    client.limit += Buffer.byteLength(out)
    this.#write(client, out)
  }

  /** Ends every stream and stops listening. Idempotent. */
  close(): void {
    this.#closed = true
    for (const c of [...this.#clients]) {
      c.res.end()
      this.#remove(c)
    }
  }

  #historyMessage(h: NonNullable<FeedSources['history']>) {
    return { windowMs: h.windowMs, bucketMs: h.bucketMs, series: h.series() }
  }

  #start(): void {
    this.#unsubscribe.push(this.#src.events.subscribe((e) => this.#onEvent(e)))
    const h = this.#src.history
    if (h) this.#unsubscribe.push(h.subscribe((t, samples) => this.#onSample(t, samples)))
    this.#armRefresh()
  }

  #stop(): void {
    for (const u of this.#unsubscribe) u()
    this.#unsubscribe = []
    this.#statusTimer?.()
    this.#statusTimer = undefined
    this.#refreshTimer?.()
    this.#refreshTimer = undefined
  }

  #remove(client: Client): void {
    if (!this.#clients.delete(client)) return
    if (this.#clients.size === 0) this.#stop()
  }

  #onEvent(e: TandemEvent): void {
    this.#broadcast(sseMessage('tandem', e, `${this.#src.events.run}.${e.seq}`))
    this.#statusTimer ??= this.#src.clock.after(STATUS_THROTTLE_MS, () => {
      this.#statusTimer = undefined
      this.#sendStatus()
    })
  }

  #onSample(t: number, samples: MetricSample[]): void {
    const values = samples.map((s) => [s.id, s.cpuPercent ?? null, s.rssBytes ?? null, s.restarts])
    this.#broadcast(sseMessage('sample', { t, values }))
  }

  #armRefresh(): void {
    this.#refreshTimer = this.#src.clock.after(STATUS_REFRESH_MS, () => {
      this.#sendStatus()
      if (this.#clients.size > 0) this.#armRefresh()
    })
  }

  #sendStatus(): void {
    if (this.#clients.size === 0) return
    let status: unknown
    try {
      status = this.#src.status()
    } catch (err) {
      this.#onNotice(`event stream: status failed: ${errorMessage(err)}`)
      return
    }
    this.#broadcast(sseMessage('status', status))
  }

  #broadcast(message: string): void {
    for (const c of [...this.#clients]) this.#write(c, message)
  }

  #write(client: Client, message: string): void {
    const { res } = client
    if (res.destroyed) return this.#remove(client)
    res.write(message)
    if (res.writableLength > client.limit) {
      this.#onNotice(
        `event stream to ${client.from} cut off: ${res.writableLength} bytes not taken by the client (limit ${client.limit}); it may reconnect and resume`,
      )
      this.#remove(client)
      res.destroy()
    }
  }
}
