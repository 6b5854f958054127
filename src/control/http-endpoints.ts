import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { hostCheck } from './host-check.js'
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks'
import type { StatusReply } from '../status.js'
import { errorMessage } from '../errors.js'
import { hostMonotonic } from '../seams/clock.js'
import { listenOn } from './listen.js'
import { EventFeed, type FeedSources } from './event-feed.js'
import {
  handleAction,
  HTTP_ACTIONS,
  isHttpAction,
  type ActionRecord,
  type HttpActions,
} from './http-actions.js'
import { loadStatusPage, type StatusPage } from './status-page.js'
import {
  formatMetrics,
  METRICS_CONTENT_TYPE,
  type EventLoopLag,
  type SupervisorSelf,
} from './prometheus.js'

/** What the endpoints read; each is called per request, and none of them may change anything. */
export interface HttpSources {
  /** The same reply as `tandem status --json`. */
  status(): StatusReply
  /** Every desired instance is ready. */
  ready(): boolean
  /**
   * This node and its epoch while it is the active node (ha) and its active-only children serve;
   * what is missing when it is active but they do not; undefined when it is not active.
   */
  leader(): { node: string; epoch: number } | { missing: string[] } | undefined
  self(): SupervisorSelf
}

/** The paths served; anything else is a 404 that lists them. */
export const HTTP_PATHS = ['/health', '/ready', '/leader', '/metrics', '/status'] as const
/** The status page and its event stream, served when startHttpEndpoints is given `page`. */
export const PAGE_PATHS = ['/', '/events'] as const

/** What the status page, its event stream and its actions need. */
export interface PageSources extends Omit<FeedSources, 'status'> {
  /**
   * Makes the token of the actions (writeHttpToken): called once, when the endpoints start, so
   * that a token file that cannot be written fails the start like a port that cannot be bound.
   */
  token: () => string
  /** The control socket's own functions for POST /restart, /stop, /start, /switchover. */
  actions: HttpActions
  /** Every action asked for, done or refused, with its source: for the log. */
  onAction(record: ActionRecord, message: string): void
  /** The page (default: status-page.html, read at start). */
  page?: StatusPage
}

/**
 * A whole request (headers included) must arrive within this: every answer is computed at once,
 * so a client slower than this is stuck or hostile, and it holds a socket of the supervisor.
 */
export const REQUEST_TIMEOUT_MS = 5000
/** Headers are due a little before the whole request (Node wants headersTimeout <= requestTimeout). */
export const HEADERS_TIMEOUT_MS = 4000
/** How often Node checks those timeouts (its default, 30 s, would let a stuck client stay 35 s). */
export const CONNECTIONS_CHECK_MS = 1000
/** Scrapers and probes need a handful of connections; the cap keeps a flood off the supervisor. */
export const MAX_CONNECTIONS = 64
/** close() waits this long for requests in progress before it drops their connections. */
export const CLOSE_GRACE_MS = 1000

/** Resolution of the event-loop delay monitor: fine enough for lag that matters, cheap to run. */
export const LAG_RESOLUTION_MS = 20
/**
 * Lag figures cover between one and two of these windows (see createEventLoopLag): longer than
 * the usual scrape interval (15-30 s), so a scrape never misses a spike between two scrapes.
 */
export const LAG_WINDOW_MS = 30_000

/**
 * Measures the event loop's delay with `monitorEventLoopDelay` and answers with p50, p99 and max
 * in milliseconds, less the monitor's own interval (an idle loop reads about 0, not 20 ms).
 *
 * A rolling window, not reset-on-read: /health, /metrics and any other reader may ask at any
 * rate, and with reset-on-read each would see only the lag since the previous reader's call (a
 * health probe every second would hide spikes from a scrape every 30 s). Two histograms run side
 * by side, staggered: every `windowMs` the older one is reset, and a read takes the older one, so
 * it always covers the last `windowMs` to `2 * windowMs` (or everything since the start, early
 * on), exactly, and reading has no effect. The timer is unref'd; `stop()` disables both.
 */
export const createEventLoopLag = (
  options: { resolutionMs?: number; windowMs?: number } = {},
): { read(): EventLoopLag; stop(): void } => {
  const resolution = options.resolutionMs ?? LAG_RESOLUTION_MS
  const windowMs = options.windowMs ?? LAG_WINDOW_MS
  const histograms: [IntervalHistogram, IntervalHistogram] = [
    monitorEventLoopDelay({ resolution }),
    monitorEventLoopDelay({ resolution }),
  ]
  for (const h of histograms) h.enable()
  /** The one reset longest ago: read from it, reset it next. */
  let older = 0
  const timer = setInterval(() => {
    histograms[older]!.reset()
    older = 1 - older
  }, windowMs)
  timer.unref()
  const ms = (ns: number) => Math.max(0, ns / 1e6 - resolution)
  return {
    read() {
      const h = histograms[older]!
      // An empty histogram answers nonsense (min 2^63, percentiles of a few ns).
      if (h.count === 0) return { p50: 0, p99: 0, max: 0 }
      return { p50: ms(h.percentile(50)), p99: ms(h.percentile(99)), max: ms(h.max) }
    },
    stop() {
      clearInterval(timer)
      for (const h of histograms) h.disable()
    },
  }
}

let shared: { read(): EventLoopLag } | undefined

/**
 * The supervisor's event-loop lag in milliseconds over the last 30 to 60 s (see
 * createEventLoopLag). The monitor starts at the first call and runs for the life of the process.
 */
export const eventLoopLag = (): EventLoopLag => (shared ??= createEventLoopLag()).read()

interface Reply {
  status: number
  type: string
  body: string
  headers?: Record<string, string>
}

const json = (status: number, value: unknown, headers?: Record<string, string>): Reply => ({
  status,
  type: 'application/json',
  body: JSON.stringify(value),
  ...(headers ? { headers } : {}),
})

const route = (path: string, sources: HttpSources, pagePaths: readonly string[]): Reply => {
  switch (path) {
    case '/health':
      // Answering at all shows the loop turns; the lag says how freely.
      return json(200, { status: 'ok', eventLoopLagMs: sources.self().eventLoopLagMs })
    case '/ready': {
      const { instances } = sources.status()
      // Draining instances (a rollout is about to stop them) are named for load balancers.
      const draining = instances.filter((i) => i.draining).map((i) => i.id)
      const extra = draining.length ? { draining } : {}
      if (sources.ready()) return json(200, { ready: true, ...extra })
      const notReady = instances
        .filter((i) => i.state !== 'ready' && !i.stoppedByOperator)
        .map((i) => i.id)
      return json(503, { ready: false, notReady, ...extra })
    }
    case '/leader': {
      // The load balancer's check for active-only services: 200 only on the active node.
      // Active but with active-only children down: 503 too, naming them.
      const leader = sources.leader()
      // The instant of that decision on the host's monotonic clock (CLOCK_MONOTONIC, one clock
      // for all processes of a host): a checker on the same host can place the answer exactly,
      // even when the reply is delivered late (a supervisor frozen right after deciding).
      const at = hostMonotonic()
      const node = sources.status().node
      if (leader && 'epoch' in leader) return json(200, leader, { 'x-tandem-at': at.toFixed(3) })
      return json(503, {
        leader: false,
        node,
        ...(leader ? { active: true, missing: leader.missing } : {}),
      })
    }
    case '/metrics':
      return {
        status: 200,
        type: METRICS_CONTENT_TYPE,
        body: formatMetrics(sources.status(), sources.self()),
      }
    case '/status':
      return json(200, sources.status())
    default:
      return json(404, {
        error: { code: 'EUSAGE', message: `no such path: ${path}` },
        paths: [...HTTP_PATHS, ...pagePaths],
      })
  }
}

const isServed = (path: string) => (HTTP_PATHS as readonly string[]).includes(path)

/** Serves the status page's paths; false for the others (the read-only routes). */
const servePage = (
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
  page: Omit<PageSources, 'token'> & { token: string },
  feed: EventFeed,
  html: StatusPage,
  onError: (message: string) => void,
): boolean => {
  const method = req.method ?? 'GET'
  const action = isHttpAction(path)
  if (method === 'OPTIONS') {
    // Only another origin asks before it sends: the actions never answer it.
    const record: ActionRecord = {
      action: `OPTIONS ${path}`,
      from: req.socket.remoteAddress ?? '?',
      status: 403,
      outcome: 'refused',
      reason: `preflight from ${req.headers.origin ?? 'no origin'}`,
    }
    page.onAction(
      record,
      `control.http: preflight OPTIONS ${path} from ${record.from} (Origin ${req.headers.origin ?? '-'}) refused: no other origin may act`,
    )
    send(
      req,
      res,
      json(403, { error: { code: 'EUSAGE', message: 'cross-origin requests are refused' } }),
    )
    return true
  }
  if (action) {
    if (method !== 'POST') {
      send(
        req,
        res,
        json(
          405,
          { error: { code: 'EUSAGE', message: `${method} not allowed: POST ${path}` } },
          { allow: 'POST' },
        ),
      )
      return true
    }
    handleAction(action, req, page)
      .then((reply) => send(req, res, json(reply.status, reply.body, reply.headers)))
      // Also what sending the reply throws: never an unhandled rejection.
      .catch((err: unknown) => {
        onError(`control.http POST ${path} failed: ${errorMessage(err)}`)
        if (!res.headersSent)
          send(req, res, json(500, { error: { code: 'ECONTROL', message: errorMessage(err) } }))
        else res.destroy()
      })
    return true
  }
  if (path !== '/' && path !== '/events') return false
  if (method !== 'GET' && method !== 'HEAD') {
    send(
      req,
      res,
      json(
        405,
        { error: { code: 'EUSAGE', message: `${method} not allowed: read-only endpoint` } },
        { allow: 'GET, HEAD' },
      ),
    )
    return true
  }
  if (path === '/') send(req, res, pageReply(html))
  else if (method === 'HEAD') send(req, res, { status: 200, type: 'text/event-stream', body: '' })
  else {
    try {
      feed.open(req, res)
    } catch (err) {
      onError(`control.http GET /events failed: ${errorMessage(err)}`)
      if (!res.headersSent)
        send(req, res, json(500, { error: { code: 'ECONTROL', message: errorMessage(err) } }))
      else res.destroy()
    }
  }
  return true
}

const send = (req: IncomingMessage, res: ServerResponse, reply: Reply) => {
  res.writeHead(reply.status, {
    'content-type': reply.type,
    'content-length': Buffer.byteLength(reply.body),
    'cache-control': 'no-store',
    ...reply.headers,
  })
  res.end(req.method === 'HEAD' ? undefined : reply.body)
}

const pageReply = (page: StatusPage): Reply => ({
  status: 200,
  type: 'text/html; charset=utf-8',
  body: page.html,
  headers: {
    'content-security-policy': page.csp,
    'x-frame-options': 'DENY',
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
  },
})

/**
 * HTTP endpoints for monitoring on `host:port` (`control.http`; loopback by default): GET or
 * HEAD `/health`, `/ready` (503 with the ids of instances not ready, operator-stopped ones
 * aside), `/metrics` (Prometheus text) and `/status` (as `tandem status --json`). None of these
 * changes anything. A source that throws gives a 500 with its message, reported through
 * `onError`; the server serves on.
 *
 * With `page`: the status page at `/`, its Server-Sent Events at `/events` (EventFeed), and
 * the actions `POST /restart`, `/stop`, `/start`, `/switchover` (handleAction: same origin and
 * the bearer token only, each one logged through `page.onAction`). A preflight (OPTIONS) is
 * refused with 403: no other origin may call them.
 *
 * Every request whose `Host` is not a name it answers to (hostCheck: IP addresses, localhost, its
 * own names, `allowedHosts`) gets 403, against DNS rebinding; the first of each name is reported
 * through `onError`.
 *
 * Rejects with ECONTROL naming host:port when it cannot listen. Resolves to the close function
 * (idempotent): it stops listening, closes idle connections at once and any busy one after
 * CLOSE_GRACE_MS.
 */
export const startHttpEndpoints = async (
  options: { host: string; port: number; allowedHosts?: readonly string[] },
  sources: HttpSources,
  onError: (message: string) => void,
  page?: PageSources,
): Promise<() => Promise<void>> => {
  const html = page && (page.page ?? loadStatusPage())
  const token = page?.token()
  const pagePaths = page ? [...PAGE_PATHS, ...HTTP_ACTIONS.map((a) => `POST /${a}`)] : []
  const feed = page && new EventFeed({ ...page, status: () => sources.status() }, onError)
  const hosts = hostCheck({
    listenHost: options.host,
    ...(options.allowedHosts ? { allowedHosts: options.allowedHosts } : {}),
  })
  const refusedHosts = new Set<string>()
  const server = createServer(
    {
      requestTimeout: REQUEST_TIMEOUT_MS,
      headersTimeout: HEADERS_TIMEOUT_MS,
      connectionsCheckingInterval: CONNECTIONS_CHECK_MS,
    },
    (req, res) => {
      const path = (req.url ?? '/').split('?')[0] ?? '/'
      const wrongHost = hosts.problem(req.headers.host)
      if (wrongHost) {
        // Logged once per name (of the last few hundred): a rebinding page retries.
        if (!refusedHosts.has(req.headers.host!)) {
          if (refusedHosts.size >= 256) refusedHosts.clear()
          refusedHosts.add(req.headers.host!)
          onError(
            `control.http refused ${req.method} ${path} from ${req.socket.remoteAddress ?? '?'}: ${wrongHost.reason}`,
          )
        }
        // Not the names it answers to: the page that rebinds would read them.
        return send(req, res, json(403, { error: { code: 'EUSAGE', message: wrongHost.short } }))
      }
      if (page && feed && html && token !== undefined)
        if (servePage(req, res, path, { ...page, token }, feed, html, onError)) return
      let reply: Reply
      if (isServed(path) && req.method !== 'GET' && req.method !== 'HEAD') {
        reply = json(
          405,
          { error: { code: 'EUSAGE', message: `${req.method} not allowed: read-only endpoint` } },
          { allow: 'GET, HEAD' },
        )
      } else {
        try {
          reply = route(path, sources, pagePaths)
        } catch (err) {
          onError(`control.http ${req.method} ${path} failed: ${errorMessage(err)}`)
          reply = json(500, { error: { code: 'ECONTROL', message: errorMessage(err) } })
        }
      }
      send(req, res, reply)
    },
  )
  server.maxConnections = MAX_CONNECTIONS
  await listenOn(server, 'control.http', options, onError)
  let closing: Promise<void> | undefined
  return () =>
    (closing ??= new Promise<void>((resolve) => {
      feed?.close()
      const drop = setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS)
      drop.unref()
      server.close(() => {
        clearTimeout(drop)
        resolve()
      })
      server.closeIdleConnections()
    }))
}
