// Ports 29200-29249 belong to this file (test files run in parallel).
import { connect } from 'node:net'
import t, { type Test } from 'tap'
import {
  MAX_FEED_CLIENTS,
  MAX_QUEUED_BYTES,
  RECONNECT_MS,
  STATUS_REFRESH_MS,
  STATUS_THROTTLE_MS,
  sseMessage,
} from '../../src/control/event-feed.js'
import {
  CONNECTIONS_CHECK_MS,
  REQUEST_TIMEOUT_MS,
  startHttpEndpoints,
  type PageSources,
} from '../../src/control/http-endpoints.js'
import { systemClock } from '../../src/seams/clock.js'
import { statusPage } from '../../src/control/status-page.js'
import { EventStream } from '../../src/supervisor/event-stream.js'
import { MetricHistory } from '../../src/supervisor/metric-history.js'
import type { StatusReply } from '../../src/status.js'
import { FakeClock } from '../helpers/fake-clock.js'
import { sseClient, type SseMessage, noActions } from '../helpers/sse.js'
import { statusInstance } from '../helpers/status.js'
import { waitUntil } from '../helpers/supervisor.js'

const STATUS: StatusReply = {
  node: 'host-a',
  role: 'standalone',
  pid: 4242,
  config: '/etc/tandem.json',
  instances: [statusInstance('web#0')],
}

interface Setup {
  events: EventStream
  history: MetricHistory
  clock: FakeClock
  notices: string[]
  statusCalls: { n: number }
}

/**
 * control.http with the status page on `port`: `events` on `clock`, the status of `status`,
 * notices to `onNotice`; `page` overrides the page's other sources.
 */
const pageEndpoints = (
  port: number,
  events: EventStream,
  clock: PageSources['clock'],
  options: {
    page?: Partial<PageSources>
    status?: () => StatusReply
    onNotice?: (m: string) => void
  } = {},
) =>
  startHttpEndpoints(
    { host: '127.0.0.1', port },
    {
      status: options.status ?? (() => STATUS),
      ready: () => true,
      leader: () => undefined,
      self: () => ({ rssBytes: 1, eventLoopLagMs: { p50: 0, p99: 0, max: 0 }, uptimeMs: 1 }),
    },
    options.onNotice ?? (() => {}),
    {
      events,
      clock,
      pid: 1,
      node: 'n',
      token: () => 't',
      actions: noActions(),
      onAction: () => {},
      page: statusPage(''),
      ...options.page,
    },
  )

const start = async (t: Test, port: number, capacity = 1000): Promise<Setup> => {
  const clock = new FakeClock()
  const events = new EventStream({ node: 'host-a', clock, capacity })
  const history = new MetricHistory({ clock })
  const notices: string[] = []
  const statusCalls = { n: 0 }
  const close = await pageEndpoints(port, events, clock, {
    page: {
      history,
      pid: 4242,
      node: 'host-a',
      token: () => 'tok',
      page: statusPage('<html></html>'),
    },
    status: () => {
      statusCalls.n++
      return STATUS
    },
    onNotice: (m) => notices.push(m),
  })
  t.teardown(close)
  return { events, history, clock, notices, statusCalls }
}

const publish = (events: EventStream, n: number) => {
  for (let k = 0; k < n; k++)
    events.publish({ event: 'ready', message: `web#0 ready ${k}`, id: 'web#0' })
}

const seqs = (ms: SseMessage[]) =>
  ms.filter((m) => m.event === 'tandem').map((m) => (m.data as { seq: number }).seq)
const named = (ms: SseMessage[], event: string) => ms.filter((m) => m.event === event)

t.test('policy constants', async (t) => {
  t.equal(STATUS_THROTTLE_MS, 250)
  t.equal(STATUS_REFRESH_MS, 5000)
  t.equal(MAX_QUEUED_BYTES, 4 * 1024 * 1024)
  t.equal(MAX_FEED_CLIENTS, 16)
  t.equal(RECONNECT_MS, 1000)
})

t.test('sseMessage: id only for events, data on one line', async (t) => {
  t.equal(sseMessage('status', { a: 'x\ny' }), 'event: status\ndata: {"a":"x\\ny"}\n\n')
  t.equal(
    sseMessage('tandem', { seq: 3 }, 'ab12.3'),
    'id: ab12.3\nevent: tandem\ndata: {"seq":3}\n\n',
  )
})

t.test(
  'a first connect gets hello, every kept event, history and status; then live ones',
  async (t) => {
    const s = await start(t, 29200)
    publish(s.events, 3)
    s.history.record([{ id: 'web#0', cpuPercent: 1.5, rssBytes: 1000, restarts: 0 }])
    const c = await sseClient(29200)
    t.teardown(c.close)
    t.equal(c.res.statusCode, 200)
    t.match(c.res.headers['content-type'], /^text\/event-stream/)
    await waitUntil('status', () => named(c.messages, 'status').length === 1)
    t.same(
      c.messages.map((m) => m.event),
      ['hello', 'tandem', 'tandem', 'tandem', 'history', 'status'],
    )
    const { run } = c.messages[0]!.data as { run: string }
    t.equal(run, s.events.run, "the event stream's run")
    t.match(run, /^[0-9a-f]{12}$/)
    t.same(c.messages[0]!.data, { node: 'host-a', pid: 4242, run, firstSeq: 1, lastSeq: 3 })
    t.equal(c.messages[0]!.retry, RECONNECT_MS, 'the reconnect delay with the first message')
    t.same(seqs(c.messages), [1, 2, 3])
    t.same(
      c.messages.filter((m) => m.id).map((m) => m.id),
      [`${run}.1`, `${run}.2`, `${run}.3`],
      "ids are this run's and the seqs",
    )
    t.match(named(c.messages, 'history')[0]!.data, {
      windowMs: 3_600_000,
      bucketMs: 5000,
      series: { 'web#0': [[s.clock.now(), 1.5, 1000, 0, 0]] },
    })
    t.same(named(c.messages, 'status')[0]!.data, JSON.parse(JSON.stringify(STATUS)))
    publish(s.events, 1)
    s.history.record([{ id: 'web#0', cpuPercent: 2, rssBytes: 2000, restarts: 1 }])
    await waitUntil('live event and sample', () => named(c.messages, 'sample').length === 1)
    t.same(seqs(c.messages), [1, 2, 3, 4])
    t.same(named(c.messages, 'sample')[0]!.data, {
      t: s.clock.now(),
      values: [['web#0', 2, 2000, 1]],
    })
  },
)

t.test('Last-Event-ID resumes right after it: nothing twice, nothing missed', async (t) => {
  const s = await start(t, 29201)
  publish(s.events, 5)
  const c = await sseClient(29201, '/events', { 'last-event-id': '3' })
  t.teardown(c.close)
  await waitUntil('status', () => named(c.messages, 'status').length === 1)
  t.same(seqs(c.messages), [4, 5])
  t.same(named(c.messages, 'gap'), [], 'nothing was lost')
  const all = await sseClient(29201, '/events', { 'last-event-id': '5' })
  t.teardown(all.close)
  await waitUntil('status', () => named(all.messages, 'status').length === 1)
  t.same(seqs(all.messages), [], 'up to date: no replay')
})

t.test('?since= resumes too; Last-Event-ID wins over it; junk is ignored', async (t) => {
  const s = await start(t, 29202)
  publish(s.events, 4)
  const q = await sseClient(29202, '/events?since=2')
  t.teardown(q.close)
  const both = await sseClient(29202, '/events?since=1', { 'last-event-id': '3' })
  t.teardown(both.close)
  const junk = await sseClient(29202, '/events?since=-1')
  t.teardown(junk.close)
  for (const c of [q, both, junk])
    await waitUntil('status', () => named(c.messages, 'status').length === 1)
  t.same(seqs(q.messages), [3, 4])
  t.same(seqs(both.messages), [4])
  t.same(seqs(junk.messages), [1, 2, 3, 4], 'not a seq: a first connect')
})

t.test('events that left the ring: a gap names them, then the kept ones', async (t) => {
  const s = await start(t, 29203, 5)
  publish(s.events, 12) // 8..12 kept
  const c = await sseClient(29203, '/events', { 'last-event-id': '4' })
  t.teardown(c.close)
  await waitUntil('status', () => named(c.messages, 'status').length === 1)
  t.same(named(c.messages, 'gap')[0]!.data, { from: 5, to: 7 })
  t.same(seqs(c.messages), [8, 9, 10, 11, 12])
  t.match(c.messages[0]!.data, { firstSeq: 8, lastSeq: 12 })
})

t.test(
  'an id of another run of the supervisor: everything kept; of this run: resumes',
  async (t) => {
    const s = await start(t, 29212)
    publish(s.events, 5)
    const first = await sseClient(29212)
    t.teardown(first.close)
    await waitUntil('status', () => named(first.messages, 'status').length === 1)
    const { run } = first.messages[0]!.data as { run: string }
    // A page that saw event 2 of an earlier run (numbered from 1 too) resumes here: it must get
    // every event of this run, not those after 2.
    const other = await sseClient(29212, '/events', { 'last-event-id': 'a1b2c3d4e5f6.2' })
    t.teardown(other.close)
    const same = await sseClient(29212, `/events?since=${run}.2`)
    t.teardown(same.close)
    for (const c of [other, same])
      await waitUntil('status', () => named(c.messages, 'status').length === 1)
    t.same(seqs(other.messages), [1, 2, 3, 4, 5], "another run's id: everything kept")
    t.same(seqs(same.messages), [3, 4, 5], "this run's id: right after it")
  },
)

t.test('a seq beyond the last (the supervisor restarted since): everything kept', async (t) => {
  const s = await start(t, 29204)
  publish(s.events, 2)
  const c = await sseClient(29204, '/events', { 'last-event-id': '900' })
  t.teardown(c.close)
  await waitUntil('status', () => named(c.messages, 'status').length === 1)
  t.same(seqs(c.messages), [1, 2])
  t.same(named(c.messages, 'gap'), [])
})

t.test('a burst of events is followed by one status snapshot, and one every 5 s', async (t) => {
  const s = await start(t, 29205)
  const c = await sseClient(29205)
  t.teardown(c.close)
  await waitUntil('status', () => named(c.messages, 'status').length === 1)
  const before = s.statusCalls.n
  publish(s.events, 20)
  await waitUntil('events', () => seqs(c.messages).length === 20)
  await s.clock.advance(STATUS_THROTTLE_MS - 1)
  t.equal(s.statusCalls.n, before, 'not yet')
  await s.clock.advance(1)
  await waitUntil('a status after the burst', () => named(c.messages, 'status').length === 2)
  t.equal(s.statusCalls.n, before + 1, 'one status computed for the burst')
  await s.clock.advance(STATUS_REFRESH_MS)
  await waitUntil('the periodic status', () => named(c.messages, 'status').length === 3)
  // Two clients: one status computed per snapshot, for both.
  const d = await sseClient(29205)
  t.teardown(d.close)
  await waitUntil('status', () => named(d.messages, 'status').length === 1)
  const n = s.statusCalls.n
  publish(s.events, 1)
  await s.clock.advance(STATUS_THROTTLE_MS)
  await waitUntil('both', () => named(d.messages, 'status').length === 2)
  t.equal(s.statusCalls.n, n + 1)
})

t.test('no timer runs while no client is connected', async (t) => {
  const s = await start(t, 29206)
  t.equal(s.clock.nextIn(), undefined, 'none before the first client')
  const c = await sseClient(29206)
  await waitUntil('status', () => named(c.messages, 'status').length === 1)
  t.ok(s.clock.nextIn() !== undefined, 'the refresh is armed')
  publish(s.events, 1)
  c.close()
  await waitUntil('timers cancelled', () => s.clock.nextIn() === undefined)
  t.equal(s.clock.nextIn(), undefined)
})

t.test('a client that does not read is cut off; the others and the stream go on', async (t) => {
  const s = await start(t, 29207, 50)
  // A raw connection that sends its request and never reads a byte of the answer.
  const slow = connect({ host: '127.0.0.1', port: 29207 })
  t.teardown(() => slow.destroy())
  let closed = false
  slow.on('close', () => (closed = true))
  slow.on('error', () => {})
  slow.pause()
  slow.write('GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
  const good = await sseClient(29207)
  t.teardown(good.close)
  await waitUntil('status', () => named(good.messages, 'status').length === 1)
  const big = 'x'.repeat(64 * 1024)
  // Far more than the limit and what the sockets' buffers hold.
  let n = 0
  await waitUntil(
    'the slow client cut off',
    async () => {
      for (let k = 0; k < 16; k++) s.events.publish({ event: 'ready', message: big })
      n += 16
      await new Promise((r) => setImmediate(r))
      return s.notices.some((m) => /event stream to 127\.0\.0\.1 cut off/.test(m))
    },
    60_000,
  )
  t.ok(n * big.length > MAX_QUEUED_BYTES)
  // Read now, it finds the end of what the server had sent before it cut the connection.
  slow.resume()
  await waitUntil('its connection closed', () => closed)
  await waitUntil('the good client got them all', () => seqs(good.messages).length === n)
  t.same(
    seqs(good.messages),
    Array.from({ length: n }, (_, k) => k + 1),
  )
})

t.test('a stream outlives the request timeout of control.http', async (t) => {
  const events = new EventStream({ node: 'n', clock: systemClock })
  const close = await pageEndpoints(29211, events, systemClock)
  t.teardown(close)
  const c = await sseClient(29211)
  t.teardown(c.close)
  let closed = false
  c.res.on('close', () => (closed = true))
  // Two refreshes on the real clock: 2 x STATUS_REFRESH_MS, past REQUEST_TIMEOUT_MS and the
  // check that enforces it.
  t.ok(2 * STATUS_REFRESH_MS > REQUEST_TIMEOUT_MS + CONNECTIONS_CHECK_MS)
  await waitUntil('two refreshes', () => named(c.messages, 'status').length === 3 || closed)
  t.notOk(closed, 'still open')
  events.publish({ event: 'ready', message: 'still here' })
  await waitUntil('a live event', () => seqs(c.messages).length === 1)
})

t.test('a first message larger than the limit is not cut off', async (t) => {
  const s = await start(t, 29210, 100)
  const big = 'x'.repeat(64 * 1024)
  for (let k = 0; k < 100; k++) s.events.publish({ event: 'ready', message: big })
  t.ok(100 * big.length > MAX_QUEUED_BYTES, 'the kept events alone are more than the limit')
  const c = await sseClient(29210)
  t.teardown(c.close)
  await waitUntil('status', () => named(c.messages, 'status').length === 1)
  t.equal(seqs(c.messages).length, 100)
  t.same(s.notices, [])
})

t.test('at most MAX_FEED_CLIENTS streams; then 503', async (t) => {
  await start(t, 29208)
  const open = []
  for (let k = 0; k < MAX_FEED_CLIENTS; k++) {
    const c = await sseClient(29208)
    t.teardown(c.close)
    open.push(c)
  }
  const extra = await sseClient(29208)
  t.teardown(extra.close)
  t.equal(extra.res.statusCode, 503)
  open[0]!.close()
  await waitUntil('a place again', async () => {
    const c = await sseClient(29208)
    c.close()
    return c.res.statusCode === 200
  })
})

t.test('closing the endpoints ends the streams', async (t) => {
  const clock = new FakeClock()
  const events = new EventStream({ node: 'n', clock })
  const close = await pageEndpoints(29209, events, clock)
  const c = await sseClient(29209)
  let ended = false
  c.res.on('end', () => (ended = true))
  c.res.on('close', () => (ended = true))
  await waitUntil('status', () => named(c.messages, 'status').length === 1)
  t.same(named(c.messages, 'history'), [], 'no history without one')
  await close()
  await waitUntil('the stream ended', () => ended)
  t.ok(ended)
})
