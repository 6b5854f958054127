// The log destinations' health as events: unwritable once per outage, recovered with the drops.
import t from 'tap'
import { logHealthEvents } from '../../src/logging/log-health-events.js'
import type { EventInput } from '../../src/supervisor/event-stream.js'

t.test(
  'one log.unwritable per outage, one log.recovered with the lines dropped in it',
  async (t) => {
    const published: EventInput[] = []
    const follow = logHealthEvents((e) => published.push(e))
    const ok = { path: '/var/log/tandem.log', droppedLines: 3 }
    follow([ok, { path: 'syslog udp://h:514', droppedLines: 0 }])
    t.same(published, [], 'healthy: nothing')
    const bad = { ...ok, error: 'ENOSPC: no space left on device', errorSince: 1 }
    follow([bad])
    follow([{ ...bad, droppedLines: 10 }])
    t.same(published, [
      {
        event: 'log.unwritable',
        message: 'cannot write /var/log/tandem.log: ENOSPC: no space left on device',
        path: '/var/log/tandem.log',
        error: 'ENOSPC: no space left on device',
      },
    ])
    follow([{ ...ok, droppedLines: 10 }])
    t.match(published[1], {
      event: 'log.recovered',
      path: '/var/log/tandem.log',
      droppedLines: 7,
      message:
        'writing /var/log/tandem.log again after "ENOSPC: no space left on device"; 7 lines were dropped meanwhile',
    })
    follow([{ ...ok, droppedLines: 10 }])
    t.equal(published.length, 2)
  },
)
