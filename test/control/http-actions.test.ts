// Ports 29250-29299 belong to this file (test files run in parallel).
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { request } from 'node:http'
import t, { type Test } from 'tap'
import {
  HTTP_ACTIONS,
  MAX_ACTION_BODY_BYTES,
  type ActionRecord,
} from '../../src/control/http-actions.js'
import { startHttpEndpoints, type PageSources } from '../../src/control/http-endpoints.js'
import { STATUS_PAGE_FILE } from '../../src/control/status-page.js'
import { TandemError } from '../../src/errors.js'
import { EventStream } from '../../src/supervisor/event-stream.js'
import { systemClock } from '../../src/seams/clock.js'
import { statusInstance } from '../helpers/status.js'

const TOKEN = 'the-token-0123456789'

interface Setup {
  calls: [string, unknown][]
  records: { record: ActionRecord; message: string }[]
}

const sources = {
  status: () => ({
    node: 'n',
    role: 'standalone',
    pid: 1,
    config: '/c.json',
    instances: [statusInstance('web#0')],
  }),
  ready: () => true,
  leader: () => undefined,
  self: () => ({ rssBytes: 1, eventLoopLagMs: { p50: 0, p99: 0, max: 0 }, uptimeMs: 1 }),
}

const start = async (
  t: Test,
  port: number,
  over: Partial<PageSources['actions']> = {},
): Promise<Setup> => {
  const setup: Setup = { calls: [], records: [] }
  const action = (name: string) => async (body: unknown) => {
    setup.calls.push([name, body])
    return { did: name }
  }
  const close = await startHttpEndpoints({ host: '127.0.0.1', port }, sources, () => {}, {
    events: new EventStream({ node: 'n', clock: systemClock }),
    clock: systemClock,
    pid: 1,
    node: 'n',
    token: () => TOKEN,
    actions: {
      restart: action('restart'),
      stop: action('stop'),
      start: action('start'),
      switchover: action('switchover'),
      ...over,
    },
    onAction: (record, message) => setup.records.push({ record, message }),
  })
  t.teardown(close)
  return setup
}

interface Response {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

const send = (
  port: number,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: string,
): Promise<Response> =>
  new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, headers, agent: false }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => (text += c))
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }),
      )
    })
    req.on('error', reject)
    req.end(body)
  })

const AUTH = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }
const TARGETS = JSON.stringify({ targets: ['web#0'] })

t.test('policy constants', async (t) => {
  t.same(HTTP_ACTIONS, ['restart', 'stop', 'start', 'switchover'])
  t.equal(MAX_ACTION_BODY_BYTES, 16 * 1024)
})

t.test('GET / serves the page: its own inline script and style only, never framed', async (t) => {
  await start(t, 29250)
  const res = await send(29250, 'GET', '/')
  const html = readFileSync(STATUS_PAGE_FILE, 'utf8')
  t.equal(res.status, 200)
  t.equal(res.headers['content-type'], 'text/html; charset=utf-8')
  t.equal(res.body, html)
  const csp = String(res.headers['content-security-policy'])
  const script = /<script>([\s\S]*?)<\/script>/.exec(html)![1]!
  const hash = createHash('sha256').update(script).digest('base64')
  t.match(csp, `script-src 'sha256-${hash}'`)
  t.match(csp, "default-src 'none'")
  t.match(csp, "connect-src 'self'")
  t.match(csp, "frame-ancestors 'none'")
  t.equal(res.headers['x-frame-options'], 'DENY')
  t.notMatch(
    html,
    /<script[^>]+src=|<link[^>]+stylesheet|https?:\/\/(?!www\.w3\.org)/,
    'nothing fetched from elsewhere',
  )
})

t.test('an action without the token is refused with 401 and logged with its source', async (t) => {
  const s = await start(t, 29251)
  const res = await send(29251, 'POST', '/restart', { 'content-type': 'application/json' }, TARGETS)
  t.equal(res.status, 401)
  t.equal(res.headers['www-authenticate'], 'Bearer realm="tandem"')
  t.match(JSON.parse(res.body), { error: { code: 'EUSAGE', message: /no Authorization header/ } })
  const wrong = await send(
    29251,
    'POST',
    '/restart',
    { ...AUTH, authorization: 'Bearer nope', 'x-forwarded-for': '203.0.113.9' },
    TARGETS,
  )
  t.equal(wrong.status, 401)
  t.match(JSON.parse(wrong.body), { error: { message: /wrong token/ } })
  t.same(s.calls, [], 'nothing done')
  t.match(s.records, [
    { record: { action: 'restart', from: '127.0.0.1', status: 401, outcome: 'refused' } },
    {
      record: { action: 'restart', from: '127.0.0.1', forwardedFor: '203.0.113.9', status: 401 },
      message: /restart by 127\.0\.0\.1 \(for 203\.0\.113\.9\) refused \(401\)/,
    },
  ])
  t.notMatch(JSON.stringify(s.records), TOKEN, 'the token is never logged')
})

t.test('with the token each action runs the function given, with the body', async (t) => {
  const s = await start(t, 29252)
  for (const a of HTTP_ACTIONS) {
    const res = await send(29252, 'POST', `/${a}`, AUTH, a === 'switchover' ? '' : TARGETS)
    t.equal(res.status, 200, a)
    t.same(JSON.parse(res.body), { did: a })
  }
  t.same(s.calls, [
    ['restart', { targets: ['web#0'] }],
    ['stop', { targets: ['web#0'] }],
    ['start', { targets: ['web#0'] }],
    ['switchover', {}],
  ])
  t.match(s.records[0], {
    record: {
      action: 'restart',
      targets: ['web#0'],
      from: '127.0.0.1',
      status: 200,
      outcome: 'done',
    },
    message: 'control.http: restart ["web#0"] by 127.0.0.1: done',
  })
  t.equal(s.records.length, 4)
})

t.test('another origin is refused with 403, token or not', async (t) => {
  const s = await start(t, 29253)
  const evil = await send(
    29253,
    'POST',
    '/restart',
    { ...AUTH, origin: 'http://evil.example' },
    TARGETS,
  )
  t.equal(evil.status, 403)
  t.match(JSON.parse(evil.body), {
    error: { message: /Origin http:\/\/evil\.example is not this server/ },
  })
  const site = await send(
    29253,
    'POST',
    '/stop',
    { ...AUTH, 'sec-fetch-site': 'cross-site' },
    TARGETS,
  )
  t.equal(site.status, 403)
  const same = await send(
    29253,
    'POST',
    '/restart',
    { ...AUTH, origin: 'http://127.0.0.1:29253', 'sec-fetch-site': 'same-origin' },
    TARGETS,
  )
  t.equal(same.status, 200, 'the page itself')
  t.same(s.calls, [['restart', { targets: ['web#0'] }]])
  t.match(s.records.slice(0, 2), [
    { record: { action: 'restart', status: 403, outcome: 'refused', reason: /evil/ } },
    { record: { action: 'stop', status: 403, reason: /Sec-Fetch-Site is cross-site/ } },
  ])
})

t.test('a preflight is refused: no other origin is ever allowed', async (t) => {
  const s = await start(t, 29254)
  const res = await send(29254, 'OPTIONS', '/restart', {
    origin: 'http://evil.example',
    'access-control-request-method': 'POST',
    'access-control-request-headers': 'authorization,content-type',
  })
  t.equal(res.status, 403)
  t.equal(res.headers['access-control-allow-origin'], undefined)
  t.match(s.records, [{ record: { action: 'OPTIONS /restart', status: 403 } }])
})

t.test('bad requests: the reason named, nothing done', async (t) => {
  const s = await start(t, 29255)
  const plain = await send(
    29255,
    'POST',
    '/restart',
    { ...AUTH, 'content-type': 'text/plain' },
    TARGETS,
  )
  t.equal(plain.status, 415)
  t.match(JSON.parse(plain.body), {
    error: { message: 'Content-Type is "text/plain", expected application/json' },
  })
  const junk = await send(29255, 'POST', '/restart', AUTH, '{targets')
  t.equal(junk.status, 400)
  t.match(JSON.parse(junk.body), { error: { message: /body is not JSON/ } })
  const arr = await send(29255, 'POST', '/restart', AUTH, '["web#0"]')
  t.equal(arr.status, 400)
  t.match(JSON.parse(arr.body), { error: { message: /expected a JSON object such as/ } })
  const big = await send(29255, 'POST', '/restart', AUTH, JSON.stringify({ x: 'y'.repeat(20_000) }))
  t.equal(big.status, 413)
  const get = await send(29255, 'GET', '/restart')
  t.equal(get.status, 405)
  t.equal(get.headers.allow, 'POST')
  t.same(s.calls, [])
})

t.test('an action that fails: usage 400, busy 409, anything else 500', async (t) => {
  const s = await start(t, 29256, {
    restart: async () => {
      throw new TandemError('ETARGET', 'unknown target "nope"')
    },
    stop: async () => {
      throw new TandemError('EBUSY', 'an upgrade is running')
    },
    start: async () => {
      throw new Error('disk on fire')
    },
  })
  const r = await send(29256, 'POST', '/restart', AUTH, '{"targets":["nope"]}')
  t.equal(r.status, 400)
  t.same(JSON.parse(r.body), { error: { code: 'ETARGET', message: 'unknown target "nope"' } })
  t.equal((await send(29256, 'POST', '/stop', AUTH, TARGETS)).status, 409)
  const f = await send(29256, 'POST', '/start', AUTH, TARGETS)
  t.equal(f.status, 500)
  t.same(JSON.parse(f.body), { error: { code: 'ECONTROL', message: 'disk on fire' } })
  t.match(s.records, [
    { record: { status: 400, outcome: 'refused' } },
    { record: { status: 409, outcome: 'failed' } },
    { record: { status: 500, outcome: 'failed', reason: 'disk on fire' } },
  ])
})

t.test(
  'without a page, control.http stays read-only: no page, no stream, no actions',
  async (t) => {
    const close = await startHttpEndpoints({ host: '127.0.0.1', port: 29257 }, sources, () => {})
    t.teardown(close)
    t.equal((await send(29257, 'GET', '/')).status, 404)
    t.equal((await send(29257, 'GET', '/events')).status, 404)
    t.equal((await send(29257, 'POST', '/restart', AUTH, TARGETS)).status, 404)
  },
)

t.test('an unknown path: 404 listing the page, its stream and its actions too', async (t) => {
  await start(t, 29258)
  const res = await send(29258, 'GET', '/nope')
  t.equal(res.status, 404)
  t.same(JSON.parse(res.body).paths, [
    '/health',
    '/ready',
    '/leader',
    '/metrics',
    '/status',
    '/',
    '/events',
    'POST /restart',
    'POST /stop',
    'POST /start',
    'POST /switchover',
  ])
})
