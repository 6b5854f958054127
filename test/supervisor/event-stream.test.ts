// The event stream's contract: numbered in order, a bounded ring of the recent past, resuming
// readers get what they missed while it is kept, a throwing listener does not stop the others.
import t from 'tap'
import { EventStream, fromInstanceEvent, isEventName } from '../../src/supervisor/event-stream.js'

const clock = { now: () => Date.UTC(2026, 11, 5, 12, 0, 0) }

t.test('events are numbered from 1 in order, stamped with time and node', async (t) => {
  const s = new EventStream({ node: 'n1', clock })
  const a = s.publish({ event: 'spawned', message: 'web#0 spawned', id: 'web#0', childPid: 10 })
  const b = s.publish({ event: 'ready', message: 'web#0 ready', id: 'web#0' })
  t.same([a.seq, b.seq], [1, 2])
  t.equal(a.time, '2026-12-05T12:00:00.000Z')
  t.equal(a.node, 'n1')
  t.equal(a.childPid, 10)
  t.equal(s.lastSeq, 2)
})

t.test(
  'the ring keeps the last `capacity` events; recent(since) returns those after since',
  async (t) => {
    const s = new EventStream({ node: 'n', clock, capacity: 3 })
    for (let i = 0; i < 5; i++) s.publish({ event: 'exited', message: `${i}` })
    t.same(
      s.recent().map((e) => e.seq),
      [3, 4, 5],
    )
    t.same(
      s.recent(3).map((e) => e.seq),
      [4, 5],
    )
    t.same(
      s.recent(1).map((e) => e.seq),
      [3, 4, 5],
      'older than the ring: what is kept',
    )
    t.same(s.recent(5), [])
    t.same(s.recent(9), [])
  },
)

t.test('subscribe with since replays the kept ones first, then live ones, each once', async (t) => {
  const s = new EventStream({ node: 'n', clock })
  s.publish({ event: 'spawned', message: 'a' })
  s.publish({ event: 'ready', message: 'b' })
  const seen: number[] = []
  const off = s.subscribe((e) => seen.push(e.seq), 1)
  s.publish({ event: 'exited', message: 'c' })
  off()
  s.publish({ event: 'restarting', message: 'd' })
  t.same(seen, [2, 3])
})

t.test('a listener that throws is reported and the others still get the event', async (t) => {
  const errors: unknown[] = []
  const s = new EventStream({ node: 'n', clock, onListenerError: (e) => errors.push(e) })
  const seen: string[] = []
  s.subscribe(() => {
    throw new Error('boom')
  })
  s.subscribe((e) => seen.push(e.message))
  s.publish({ event: 'failed', message: 'x' })
  t.same(seen, ['x'])
  t.equal(errors.length, 1)
})

t.test('names and capacity are checked', async (t) => {
  t.ok(isEventName('rollout.rolledBack'))
  t.notOk(isEventName('rolledback'))
  t.throws(
    () => new EventStream({ node: 'n', clock, capacity: 0 }),
    /capacity: expected a positive integer, got 0/,
  )
})

const byOperator = { stoppedByOperator: (id: string) => id === 'web#1' }
const nobody = { stoppedByOperator: () => false }
const base = { id: 'web#1', component: 'web', instance: 1, port: 7001, childPid: 42 }

t.test(
  'instance events map to stream events; starting and stopping are not published',
  async (t) => {
    t.same(fromInstanceEvent({ ...base, event: 'backoff', delayMs: 500 }, nobody), {
      delayMs: 500,
      event: 'restarting',
      message: 'web#1 restarting in 500 ms',
      ...base,
    })
    t.equal(fromInstanceEvent({ ...base, event: 'starting' }, nobody), undefined)
    t.equal(fromInstanceEvent({ ...base, event: 'stopping' }, nobody), undefined)
    t.equal(fromInstanceEvent({ ...base, event: 'reactivated', epoch: 2 }, nobody), undefined)
    t.equal(
      fromInstanceEvent({ ...base, event: 'failed', reason: 'restart policy is "never"' }, nobody)
        ?.message,
      'web#1 failed: restart policy is "never"',
    )
    t.notOk(
      'stderrTail' in fromInstanceEvent({ ...base, event: 'exited', stderrTail: ['x'] }, nobody)!,
    )
  },
)

t.test('a crash loop, memory and liveness restarts have names of their own', async (t) => {
  const name = (e: Partial<Parameters<typeof fromInstanceEvent>[0]>) =>
    fromInstanceEvent({ ...base, event: 'failed', ...e }, nobody)?.event
  t.equal(name({ cause: 'crashLoop', reason: 'crash loop: 5 failures' }), 'crashLoop')
  t.equal(name({}), 'failed')
  t.equal(name({ event: 'restart', cause: 'memory', reason: 'memory: 300 MB' }), 'memory')
  t.equal(name({ event: 'restart', cause: 'unhealthy', reason: 'unhealthy: x' }), 'unhealthy')
  t.equal(name({ event: 'restart', cause: 'operator', reason: 'operator request' }), 'restarting')
  t.equal(name({ event: 'spawned' }), 'spawned')
  t.equal(name({ event: 'ready' }), 'ready')
  t.equal(name({ event: 'exited' }), 'exited')
})

t.test('stopped is published only for a stop an operator asked for', async (t) => {
  t.equal(fromInstanceEvent({ ...base, event: 'stopped' }, byOperator)?.event, 'stopped')
  t.equal(fromInstanceEvent({ ...base, event: 'stopped' }, nobody), undefined)
})
