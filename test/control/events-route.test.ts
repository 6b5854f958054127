// GET /events on a real control socket: the kept events, filtered; then live ones; a reader that
// does not read is cut off with a notice once it is too far behind, and the publisher never
// waits for it.
import { connect, type Socket } from 'node:net'
import t, { type Test } from 'tap'
import { controlStream } from '../../src/control/client.js'
import {
  EVENTS_CUTOFF_GRACE_MS,
  eventsRoute,
  parseEventsQuery,
} from '../../src/control/events-route.js'
import { startControlServer } from '../../src/control/server.js'
import { socketPath } from '../../src/control/socket-path.js'
import { systemClock } from '../../src/seams/clock.js'
import { EventStream, type TandemEvent } from '../../src/supervisor/event-stream.js'
import { resolveTargets } from '../../src/supervisor/targets.js'
import { tempDir, waitUntil } from '../helpers/supervisor.js'

const instances = ['web#0', 'web#1', 'api#0'].map((id) => {
  const [component, index] = id.split('#')
  return { id, component: component!, index: Number(index) }
}) as unknown as Parameters<typeof resolveTargets>[1]

const serve = async (
  t: Test,
  options: {
    maxBufferedBytes?: number
    clock?: { after(ms: number, fn: () => void): () => void }
    capacity?: number
  } = {},
) => {
  const dir = tempDir(t)
  const events = new EventStream({
    node: 'n1',
    clock: systemClock,
    ...(options.capacity ? { capacity: options.capacity } : {}),
  })
  const cutOffs: string[] = []
  const close = await startControlServer(
    socketPath(dir),
    {
      'GET /events': eventsRoute({
        events,
        resolveTargets: (targets) => resolveTargets(targets, instances),
        clock: options.clock ?? systemClock,
        onCutOff: (m) => cutOffs.push(m),
        ...(options.maxBufferedBytes ? { maxBufferedBytes: options.maxBufferedBytes } : {}),
      }),
    },
    () => {},
  )
  t.teardown(close)
  return { dir, socket: socketPath(dir), events, cutOffs, close }
}

const publishFor = (events: EventStream, id: string, pad = 0) =>
  events.publish({
    event: 'exited',
    message: `${id} exited${'.'.repeat(pad)}`,
    id,
    component: id.split('#')[0],
    instance: Number(id.split('#')[1]),
  })

const read = async (dir: string, path: string) => {
  const got: TandemEvent[] = []
  const result = await controlStream(dir, path, undefined, (e) => got.push(e as TandemEvent), 'GET')
  return { got, result }
}

t.test(
  'the kept events after since, of the targets; ETARGET before anything streams',
  async (t) => {
    const { dir, events } = await serve(t)
    for (const id of ['web#0', 'api#0', 'web#1', 'web#0']) publishFor(events, id)
    events.publish({ event: 'promoted', message: 'active for epoch 2', epoch: 2 })
    const all = await read(dir, '/events')
    t.same(
      all.got.map((e) => e.seq),
      [1, 2, 3, 4, 5],
    )
    t.same(all.result, { lastSeq: 5 })
    const web = await read(dir, '/events?targets=web&since=1')
    t.same(
      web.got.map((e) => [e.seq, e.id]),
      [
        [3, 'web#1'],
        [4, 'web#0'],
      ],
      "the targets' instance events only: not the node's",
    )
    const one = await read(dir, `/events?targets=${encodeURIComponent('web#1,api')}`)
    t.same(
      one.got.map((e) => e.id),
      ['api#0', 'web#1'],
    )
    await t.rejects(read(dir, '/events?targets=nope'), { code: 'ETARGET' })
    await t.rejects(read(dir, '/events?since=-1'), {
      code: 'EUSAGE',
      message: /since expects a sequence number/,
    })
  },
)

t.test('since older than the ring: a gap notice first, then what is kept', async (t) => {
  const { dir, events } = await serve(t, { capacity: 3 })
  for (const id of ['web#0', 'web#1', 'api#0', 'web#0', 'web#1', 'api#0']) publishFor(events, id)
  const lines: unknown[] = []
  await controlStream(dir, '/events?since=1', undefined, (l) => lines.push(l), 'GET')
  t.match(lines[0], {
    gap: {
      from: 2,
      to: 3,
      message: 'events 2 to 3 are no longer kept (the supervisor keeps its last 3); showing from 4',
    },
  })
  t.same(
    lines.slice(1).map((e) => (e as TandemEvent).seq),
    [4, 5, 6],
  )
  const none: unknown[] = []
  await controlStream(dir, '/events?since=3', undefined, (l) => none.push(l), 'GET')
  t.same(
    none.map((e) => (e as TandemEvent).seq),
    [4, 5, 6],
    'no gap when nothing asked for is missing',
  )
})

t.test('since beyond the last event (a restarted supervisor): everything kept', async (t) => {
  const { dir, events } = await serve(t)
  for (const id of ['web#0', 'web#1']) publishFor(events, id)
  const got = await read(dir, '/events?since=500')
  t.same(
    got.got.map((e) => e.seq),
    [1, 2],
  )
})

/** Follows from the start: the events as they come, and the request's result. */
const follow = (dir: string) => {
  const got: TandemEvent[] = []
  const req = controlStream(
    dir,
    '/events?follow=true&since=0',
    undefined,
    (e) => got.push(e as TandemEvent),
    'GET',
  )
  return { got, req }
}

t.test('follow: the kept ones, then the live ones, until the client goes', async (t) => {
  const { dir, events } = await serve(t)
  publishFor(events, 'web#0')
  const { got, req } = follow(dir)
  await waitUntil('the kept one', () => got.length === 1)
  publishFor(events, 'web#1')
  publishFor(events, 'api#0')
  await waitUntil('the live ones', () => got.length === 3)
  t.same(
    got.map((e) => e.seq),
    [1, 2, 3],
  )
  // The client goes: the server stops writing to it (the request ends early on our side).
  void req.catch(() => {})
})

t.test(
  'follow: the server closing (the supervisor stops) ends the answer with a result',
  async (t) => {
    const { dir, events, close } = await serve(t)
    publishFor(events, 'web#0')
    const { got, req } = follow(dir)
    await waitUntil('the kept one', () => got.length === 1)
    // Published just before the close, as the last instance's exit is during a shutdown.
    publishFor(events, 'web#1')
    await close()
    t.same(await req, { lastSeq: 2, stopped: true }, 'a result, not "ended the answer early"')
    t.same(
      got.map((e) => e.seq),
      [1, 2],
      'every event published before the close',
    )
    const { runEvents } = await import('../../src/cli/events.js')
    await t.rejects(
      runEvents(dir, [], { follow: true }, { out: () => {}, err: () => {} }),
      { code: 'ENOSUPERVISOR' },
      'closed: nothing listens any more',
    )
  },
)

t.test('tandem events -f: the supervisor stopping is a line on stderr, not an error', async (t) => {
  const { dir, events, close } = await serve(t)
  publishFor(events, 'api#0')
  const out: string[] = []
  const err: string[] = []
  const run = (await import('../../src/cli/events.js')).runEvents(
    dir,
    [],
    { follow: true, since: '0' },
    { out: (l) => out.push(l), err: (l) => err.push(l) },
  )
  await waitUntil('the kept one', () => out.length === 1)
  await close()
  await run
  t.match(out[0], /exited\s+api#0/)
  t.same(err, ['tandem events: the supervisor stopped (the last event seen: 1)'])
})

/** A client that asks to follow and then reads nothing: its socket is paused. */
const stuckReader = (socket: string): Promise<Socket> =>
  new Promise((resolve) => {
    const s = connect(socket, () => {
      s.write('GET /events?follow=true HTTP/1.1\r\nHost: tandem\r\n\r\n')
      s.pause()
      resolve(s)
    })
  })

/** A stuck reader (closed at teardown) once it follows, with a first event published. */
const stuckFollower = async (t: Test, socket: string, events: EventStream): Promise<Socket> => {
  const s = await stuckReader(socket)
  t.teardown(() => s.destroy())
  // Let the server take the request and subscribe.
  await waitUntil('subscribed', async () => {
    publishFor(events, 'web#0')
    await new Promise((r) => setImmediate(r))
    return true
  })
  return s
}

t.test(
  'a reader that does not read is cut off with a notice; the publisher never waits',
  async (t) => {
    const { socket, events, cutOffs } = await serve(t, { maxBufferedBytes: 64 * 1024 })
    const s = await stuckFollower(t, socket, events)
    const published: number[] = []
    for (let i = 0; i < 20_000 && cutOffs.length === 0; i++) {
      published.push(publishFor(events, 'web#0', 1000).seq)
      // The server writes in the listener, synchronously; the socket's flush needs a turn.
      await new Promise((r) => setImmediate(r))
    }
    t.equal(cutOffs.length, 1, 'cut off')
    t.match(
      cutOffs[0],
      /fell more than 65536 bytes behind and was cut off after event (\d+); resume with --since \1/,
    )
    const cutAt = Number(/after event (\d+)/.exec(cutOffs[0]!)![1])
    t.ok(cutAt < published.at(-1)! + 1 && published.length < 20_000, 'long before the end')
    for (let i = 0; i < 100; i++) publishFor(events, 'web#0', 1000)
    // Now read it all: every event up to the cut, in order, then the notice, then the end.
    let text = ''
    s.on('data', (d: Buffer) => (text += d.toString('latin1')))
    s.resume()
    await new Promise((r) => s.once('end', r))
    const body = text.slice(text.indexOf('\r\n\r\n') + 4)
    const lines = body.split('\r\n').filter((l) => l.startsWith('{'))
    const parsed = lines.map(
      (l) => JSON.parse(l) as TandemEvent & { error?: { code: string; message: string } },
    )
    const last = parsed.pop()!
    t.match(last, { error: { code: 'ESLOW', message: cutOffs[0] } })
    const seqs = parsed.map((e) => e.seq)
    t.same(
      seqs,
      Array.from({ length: cutAt }, (_, i) => i + 1),
      'every event up to the cut, in order, none after it',
    )
  },
)

t.test('a cut-off reader that still does not read is disconnected after the grace', async (t) => {
  let graceOver: (() => void) | undefined
  let graceMs: number | undefined
  const clock = {
    after: (ms: number, fn: () => void) => {
      graceMs = ms
      graceOver = fn
      return () => {}
    },
  }
  const { socket, events, cutOffs } = await serve(t, { maxBufferedBytes: 16 * 1024, clock })
  const s = await stuckReader(socket)
  t.teardown(() => s.destroy())
  for (let i = 0; i < 20_000 && cutOffs.length === 0; i++) {
    publishFor(events, 'web#0', 1000)
    await new Promise((r) => setImmediate(r))
  }
  t.equal(cutOffs.length, 1)
  t.equal(graceMs, EVENTS_CUTOFF_GRACE_MS)
  graceOver!()
  // What the kernel had taken is still read; what waited in the server (the notice with it) is
  // gone with the connection.
  let text = ''
  s.on('data', (d: Buffer) => (text += d.toString('latin1')))
  s.resume()
  await new Promise((r) => s.once('close', r))
  t.notMatch(text, /ESLOW/, 'closed before the reader took the notice')
  t.ok(text.length > 0)
})

t.test(
  'a follower behind when the supervisor stops still gets every event and the end',
  async (t) => {
    const { socket, events, close } = await serve(t)
    const s = await stuckFollower(t, socket, events)
    // About 400 KB for a reader that reads nothing: more than the sockets' buffers take, less
    // than the 1 MiB that cuts a reader off, so most of it waits in the server.
    for (let i = 0; i < 400; i++) {
      publishFor(events, 'web#0', 1000)
      await new Promise((r) => setImmediate(r))
    }
    const last = events.lastSeq
    const closed = close()
    // The reader wakes up after the close began (well within STREAM_END_GRACE_MS).
    await new Promise((r) => setImmediate(r))
    let text = ''
    s.on('data', (d: Buffer) => (text += d.toString('latin1')))
    s.resume()
    await new Promise((r) => s.once('end', r))
    await closed
    const body = text.slice(text.indexOf('\r\n\r\n') + 4)
    const parsed = body
      .split('\r\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as TandemEvent & { result?: unknown })
    t.same(parsed.pop(), { result: { lastSeq: last, stopped: true } }, 'the end, not a cut')
    t.same(
      parsed.map((e) => e.seq),
      Array.from({ length: last }, (_, i) => i + 1),
      'every event, in order',
    )
  },
)

t.test('request fields are checked', async (t) => {
  t.same(parseEventsQuery({}), { targets: [], since: 0, follow: false })
  t.same(parseEventsQuery({ targets: 'a,b#1', since: '12', follow: 'true' }), {
    targets: ['a', 'b#1'],
    since: 12,
    follow: true,
  })
  t.same(parseEventsQuery({ targets: ['a'], since: 3, follow: false }).targets, ['a'])
  t.throws(() => parseEventsQuery({ follow: 'yes' }), {
    code: 'EUSAGE',
    message: /follow expects true or false, got "yes"/,
  })
  t.throws(() => parseEventsQuery({ since: 1.5 }), { code: 'EUSAGE' })
  t.throws(() => parseEventsQuery({ targets: [1] }), {
    code: 'EUSAGE',
    message: /targets expects a list/,
  })
})
