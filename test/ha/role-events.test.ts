// A node's role changes as events: promoted, released (a handover), fenced (lost).
import { EventEmitter } from 'node:events'
import t from 'tap'
import { publishRoleEvents } from '../../src/ha/role-events.js'
import type { LeaseEvents } from '../../src/ha/lease.js'
import type { EventInput } from '../../src/supervisor/event-stream.js'

t.test('active is promoted; standby is released or fenced by its reason', async (t) => {
  const role = new EventEmitter<LeaseEvents>()
  const published: EventInput[] = []
  const off = publishRoleEvents(role, 'zowe', (e) => published.push(e))
  role.emit('active', { epoch: 3, why: 'heartbeat of epoch 2 unchanged for 2000 ms' })
  role.emit('standby', { epoch: 3, why: 'released (switchover)' })
  role.emit('active', { epoch: 5, why: 'claimed' })
  role.emit('standby', { epoch: 5, why: 'fenced: epoch 6 was claimed by another node' })
  role.emit('renewed', { epoch: 5, validMs: 100 })
  t.same(
    published.map((e) => [e.event, e.epoch]),
    [
      ['promoted', 3],
      ['released', 3],
      ['promoted', 5],
      ['fenced', 5],
    ],
  )
  t.match(published[0], {
    cluster: 'zowe',
    message: 'active for epoch 3 (heartbeat of epoch 2 unchanged for 2000 ms)',
  })
  off()
  role.emit('active', { epoch: 7, why: 'claimed' })
  t.equal(published.length, 4, 'the undo')
})
