// Ports 24700-24799 belong to this file (test files run in parallel).
import { request } from 'node:http'
import { connect, createServer } from 'node:net'
import { statusInstance } from '../helpers/status.js'
import t, { type Test } from 'tap'
import type { StatusReply } from '../../src/status.js'
import {
  CLOSE_GRACE_MS,
  CONNECTIONS_CHECK_MS,
  createEventLoopLag,
  eventLoopLag,
  HEADERS_TIMEOUT_MS,
  HTTP_PATHS,
  REQUEST_TIMEOUT_MS,
  startHttpEndpoints,
  type HttpSources,
} from '../../src/control/http-endpoints.js'
import { formatMetrics, type SupervisorSelf } from '../../src/control/prometheus.js'

const HOST = '127.0.0.1'

const inst = statusInstance

const STATUS: StatusReply = {
  node: 'host-a',
  role: 'standalone',
  pid: 4242,
  config: '/etc/tandem.json',
  instances: [inst('discovery#0'), inst('gateway#0'), inst('gateway#1')],
}

const SELF: SupervisorSelf = {
  rssBytes: 50_000_000,
  eventLoopLagMs: { p50: 0.1, p99: 2, max: 7 },
  uptimeMs: 60_000,
}

const sources = (over: Partial<HttpSources> = {}): HttpSources => ({
  status: () => STATUS,
  ready: () => true,
  leader: () => ({ node: 'host-a', epoch: 7 }),
  self: () => SELF,
  ...over,
})

const start = async (
  t: Test,
  port: number,
  src: HttpSources = sources(),
): Promise<{ errors: string[]; close: () => Promise<void> }> => {
  const errors: string[] = []
  const close = await startHttpEndpoints({ host: HOST, port }, src, (m) => errors.push(m))
  t.teardown(close)
  return { errors, close }
}

interface Response {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

/** One request on its own connection (no agent), the whole body read. */
const get = (
  port: number,
  path: string,
  method = 'GET',
  headers: Record<string, string> = {},
): Promise<Response> =>
  new Promise((resolve, reject) => {
    const req = request({ host: HOST, port, path, method, agent: false, headers }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => (body += c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })

t.test('policy constants', async (t) => {
  t.equal(REQUEST_TIMEOUT_MS, 5000)
  t.equal(HEADERS_TIMEOUT_MS, 4000)
  t.ok(HEADERS_TIMEOUT_MS <= REQUEST_TIMEOUT_MS, 'Node requires headers within the request')
  t.ok(CONNECTIONS_CHECK_MS <= 1000, 'timeouts are enforced within a second of being due')
  t.same(HTTP_PATHS, ['/health', '/ready', '/leader', '/metrics', '/status'])
})

t.test('GET /health answers ok with the event-loop lag', async (t) => {
  await start(t, 24700)
  const res = await get(24700, '/health')
  t.equal(res.status, 200)
  t.equal(res.headers['content-type'], 'application/json')
  t.equal(res.headers['cache-control'], 'no-store')
  t.same(JSON.parse(res.body), { status: 'ok', eventLoopLagMs: { p50: 0.1, p99: 2, max: 7 } })
})

t.test('GET /ready answers 200 when every desired instance is ready', async (t) => {
  await start(t, 24701)
  const res = await get(24701, '/ready')
  t.equal(res.status, 200)
  t.same(JSON.parse(res.body), { ready: true })
})

t.test(
  'GET /ready answers 503 naming the instances not ready, operator-stopped ones aside',
  async (t) => {
    const status: StatusReply = {
      ...STATUS,
      instances: [
        inst('discovery#0'),
        inst('gateway#0', { state: 'backoff', pid: undefined }),
        inst('gateway#1', { state: 'stopped', pid: undefined, stoppedByOperator: true }),
        inst('gateway#2', { state: 'starting' }),
      ],
    }
    await start(t, 24702, sources({ ready: () => false, status: () => status }))
    const res = await get(24702, '/ready')
    t.equal(res.status, 503)
    t.equal(res.headers['content-type'], 'application/json')
    t.same(JSON.parse(res.body), { ready: false, notReady: ['gateway#0', 'gateway#2'] })
  },
)

t.test('GET /leader answers 200 with node and epoch only on the active node', async (t) => {
  await start(t, 24720)
  const active = await get(24720, '/leader')
  t.equal(active.status, 200)
  t.same(JSON.parse(active.body), { node: 'host-a', epoch: 7 })
  await start(t, 24721, sources({ leader: () => undefined }))
  const standby = await get(24721, '/leader')
  t.equal(standby.status, 503)
  t.same(JSON.parse(standby.body), { leader: false, node: 'host-a' })
})

t.test('GET /metrics answers the Prometheus text of status and self', async (t) => {
  await start(t, 24703)
  const res = await get(24703, '/metrics')
  t.equal(res.status, 200)
  t.match(res.headers['content-type'], /^text\/plain; version=0\.0\.4/)
  t.equal(res.body, formatMetrics(STATUS, SELF))
  t.match(
    res.body,
    'tandem_instance_up{node="host-a",component="gateway",index="1",id="gateway#1"} 1',
  )
})

t.test('GET /status answers the status reply as JSON, query strings ignored', async (t) => {
  await start(t, 24704)
  for (const path of ['/status', '/status?pretty=1']) {
    const res = await get(24704, path)
    t.equal(res.status, 200, path)
    t.equal(res.body, JSON.stringify(STATUS), path)
  }
})

t.test('HEAD answers as GET would, without a body', async (t) => {
  await start(t, 24705)
  for (const path of HTTP_PATHS) {
    const [got, head] = [await get(24705, path), await get(24705, path, 'HEAD')]
    t.equal(head.status, got.status, path)
    t.equal(head.headers['content-type'], got.headers['content-type'], path)
    t.equal(head.headers['content-length'], String(Buffer.byteLength(got.body)), path)
    t.equal(head.body, '', path)
  }
})

t.test('other methods answer 405 with Allow and change nothing', async (t) => {
  let calls = 0
  const counting = sources({
    status: () => (calls++, STATUS),
    ready: () => (calls++, true),
    self: () => (calls++, SELF),
  })
  await start(t, 24706, counting)
  for (const method of ['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']) {
    for (const path of HTTP_PATHS) {
      const res = await get(24706, path, method)
      t.equal(res.status, 405, `${method} ${path}`)
      t.equal(res.headers.allow, 'GET, HEAD', `${method} ${path}`)
      t.equal(JSON.parse(res.body).error.code, 'EUSAGE')
    }
  }
  t.equal(calls, 0, 'no source was even read')
})

t.test('an unknown path answers 404 listing the paths', async (t) => {
  await start(t, 24707)
  for (const path of ['/', '/healthz', '/status/', '/logs/reopen', '/metrics/../x']) {
    for (const method of ['GET', 'POST']) {
      const res = await get(24707, path, method)
      t.equal(res.status, 404, `${method} ${path}`)
      const body = JSON.parse(res.body)
      t.same(body.paths, HTTP_PATHS)
      t.equal(body.error.code, 'EUSAGE')
    }
  }
})

t.test('a throwing source answers 500, is reported, and the server serves on', async (t) => {
  let fail = 1
  const { errors } = await start(
    t,
    24708,
    sources({
      status: () => {
        if (fail-- > 0) throw new Error('status is broken')
        return STATUS
      },
      self: () => {
        throw new Error('no self today')
      },
    }),
  )
  const broken = await get(24708, '/status')
  t.equal(broken.status, 500)
  t.same(JSON.parse(broken.body), { error: { code: 'ECONTROL', message: 'status is broken' } })
  const health = await get(24708, '/health')
  t.equal(health.status, 500)
  t.equal(JSON.parse(health.body).error.message, 'no self today')
  t.same(errors, [
    'control.http GET /status failed: status is broken',
    'control.http GET /health failed: no self today',
  ])
  const again = await get(24708, '/status')
  t.equal(again.status, 200)
  t.equal(again.body, JSON.stringify(STATUS))
})

t.test('a malformed request answers 400 and the server serves on', async (t) => {
  await start(t, 24709)
  const answer = await new Promise<string>((resolve, reject) => {
    const socket = connect(24709, HOST)
    let text = ''
    socket.setEncoding('utf8')
    socket.on('data', (c: string) => (text += c))
    socket.on('end', () => resolve(text))
    socket.on('error', reject)
    socket.write('THIS IS NOT HTTP\r\n\r\n')
  })
  t.match(answer, /^HTTP\/1\.1 400 /)
  t.equal((await get(24709, '/health')).status, 200)
})

t.test('a port in use rejects with ECONTROL naming host and port', async (t) => {
  const holder = createServer()
  await new Promise<void>((resolve) => holder.listen(24710, HOST, resolve))
  t.teardown(() => new Promise<void>((resolve) => holder.close(() => resolve())))
  const err = await startHttpEndpoints({ host: HOST, port: 24710 }, sources(), () => {}).then(
    () => undefined,
    (e: unknown) => e as Error & { code: string; cause: { code: string } },
  )
  t.ok(err, 'rejected')
  t.equal(err?.code, 'ECONTROL')
  t.equal(
    err?.message,
    'control.http cannot listen on 127.0.0.1:24710: the port is already in use (EADDRINUSE)',
  )
  t.equal(err?.cause.code, 'EADDRINUSE')
})

t.test('an IPv6 address is named in brackets', async (t) => {
  const holder = createServer()
  const listening = await new Promise<boolean>((resolve) => {
    holder.once('error', () => resolve(false))
    holder.listen(24711, '::1', () => resolve(true))
  })
  if (!listening) return t.comment('skipped: no IPv6 loopback here')
  t.teardown(() => new Promise<void>((resolve) => holder.close(() => resolve())))
  await t.rejects(
    startHttpEndpoints({ host: '::1', port: 24711 }, sources(), () => {}),
    {
      code: 'ECONTROL',
      message: /^control\.http cannot listen on \[::1\]:24711: /,
    },
  )
})

t.test('close stops listening, drops idle keep-alive connections, and is idempotent', async (t) => {
  const { close } = await start(t, 24712)
  // A keep-alive connection left idle after one answer must not hold close() up.
  const socket = connect(24712, HOST)
  const firstAnswer = new Promise<void>((resolve) => socket.once('data', () => resolve()))
  const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  socket.write('GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n')
  await firstAnswer
  const began = Date.now()
  const first = close()
  t.equal(close(), first, 'a second call joins the first')
  await first
  await ended
  t.ok(Date.now() - began < 500, 'closed at once')
  await t.rejects(get(24712, '/health'), { code: 'ECONNREFUSED' })
})

t.test('close drops a connection stuck mid-request after the grace period', async (t) => {
  const { close } = await start(t, 24713)
  const socket = connect(24713, HOST)
  const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  socket.on('error', () => {})
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()))
  socket.write('GET /health HTTP/1.1\r\nHost: x\r\n') // headers never finished
  await new Promise((r) => setTimeout(r, 50))
  const began = Date.now()
  await close()
  await ended
  const took = Date.now() - began
  t.ok(took >= CLOSE_GRACE_MS - 50 && took < CLOSE_GRACE_MS + 1000, `closed after ${took} ms`)
})

t.test('eventLoopLag reads p50, p99 and max in ms, about 0 when idle', async (t) => {
  const lag = eventLoopLag()
  t.same(Object.keys(lag), ['p50', 'p99', 'max'])
  await new Promise((r) => setTimeout(r, 200))
  const idle = eventLoopLag()
  for (const v of Object.values(idle)) t.ok(v >= 0 && v < 50, `${v} ms`)
  t.ok(idle.p50 <= idle.p99 && idle.p99 <= idle.max)
})

t.test('lag covers a rolling window: reading does not reset it, time does', async (t) => {
  const lag = createEventLoopLag({ resolutionMs: 10, windowMs: 300 })
  t.teardown(() => lag.stop())
  await new Promise((r) => setTimeout(r, 30))
  const until = performance.now() + 150
  while (performance.now() < until); // block the loop
  await new Promise((r) => setTimeout(r, 30))
  const first = lag.read()
  t.ok(first.max >= 100, `a 150 ms block shows: max ${first.max} ms`)
  await new Promise((r) => setTimeout(r, 30))
  t.ok(lag.read().max >= 100, 'a second read still sees it')
  // Both histograms have been reset after two windows (plus timer slack).
  await new Promise((r) => setTimeout(r, 700))
  const later = lag.read()
  t.ok(later.max < 100, `gone after two windows: max ${later.max} ms`)
})

t.test('a Host it does not answer to gets 403 (DNS rebinding), logged once per name', async (t) => {
  const errors: string[] = []
  const close = await startHttpEndpoints(
    { host: HOST, port: 24714, allowedHosts: ['tandem-a.example.com'] },
    sources(),
    (m) => errors.push(m),
  )
  t.teardown(close)
  const evil = { host: 'rebind.evil.example:24714' }
  for (const path of ['/status', '/metrics', '/health', '/nowhere']) {
    const r = await get(24714, path, 'GET', evil)
    t.equal(r.status, 403, `${path}: 403`)
    t.same(JSON.parse(r.body), {
      error: {
        code: 'EUSAGE',
        message:
          'Host "rebind.evil.example:24714" is not a name this endpoint answers to (a guard against DNS rebinding): use an IP address or localhost, or list the name in control.http.allowedHosts',
      },
    })
    t.notMatch(r.body, /host-a|discovery|tandem-a/, 'nothing of the status, nor the names')
  }
  t.equal(errors.length, 1, 'the first refusal of a name is logged, not every one')
  t.match(
    errors[0],
    /^control\.http refused GET \/status from 127\.0\.0\.1: Host "rebind\.evil\.example:24714" .*: expected an IP address, localhost, tandem-a\.example\.com/,
    'the log names what it answers to',
  )
  for (const host of ['127.0.0.1:24714', 'localhost:24714', 'tandem-a.example.com'])
    t.equal((await get(24714, '/status', 'GET', { host })).status, 200, `${host}: answered`)
})
