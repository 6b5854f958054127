// `tandem events`: the request it sends and the line it prints (no supervisor needed).
import t from 'tap'
import { eventsPath, formatEvent } from '../../src/cli/events.js'
import type { TandemEvent } from '../../src/events.js'

t.test('the request: targets, since and follow in the query string', async (t) => {
  t.equal(eventsPath([], {}), '/events')
  t.equal(
    eventsPath(['web#1', 'api'], { since: '12', follow: true }),
    '/events?targets=web%231%2Capi&since=12&follow=true',
  )
  t.throws(() => eventsPath([], { since: 'yesterday' }), {
    code: 'EUSAGE',
    message: '--since expects a sequence number (the seq of the last event seen), got "yesterday"',
  })
})

t.test('a line: seq, time, event, instance, and the message without its instance', async (t) => {
  const e: TandemEvent = {
    seq: 42,
    time: '2026-12-05T04:50:01.123Z',
    node: 'n1',
    event: 'exited',
    id: 'web#0',
    message: 'web#0 exited: signal SIGKILL after 1234 ms',
  }
  t.equal(
    formatEvent(e),
    '   42  2026-12-05T04:50:01.123Z  exited              web#0         exited: signal SIGKILL after 1234 ms',
  )
  t.equal(
    formatEvent({
      ...e,
      event: 'promoted',
      id: undefined,
      message: 'active for epoch 3 (claimed)',
    }),
    '   42  2026-12-05T04:50:01.123Z  promoted            -             active for epoch 3 (claimed)',
  )
})
