// The role of a node whose cluster manager decides (ha.backend external): promote and demote
// only, a new epoch per promotion that a restart never reuses, and a deadline renewed by its own
// timer while active (so that the watchdog kills the active children when the process freezes).
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { EXTERNAL_EPOCH_FILE, ExternalRole } from '../../src/ha/external-role.js'
import { FakeClock } from '../helpers/fake-clock.js'
import { tempDir } from '../helpers/supervisor.js'

const timings = { renewMs: 250, selfFenceMs: 1000, takeoverMs: 2000, pollMs: 100 }

t.test(
  'standby until promoted; active until demoted; renewed every renewMs meanwhile',
  async (t) => {
    const clock = new FakeClock()
    const role = new ExternalRole({ clock, timings, stateDir: tempDir(t) })
    const events: string[] = []
    role.on('active', (e) => events.push(`active ${e.epoch}: ${e.why}`))
    role.on('standby', (e) => events.push(`standby ${e.epoch}: ${e.why}`))
    role.on('renewed', (e) => events.push(`renewed ${e.epoch} ${e.validMs}`))
    role.start()
    await clock.advance(5000)
    t.notOk(role.isActive(), 'nothing makes it active by itself')
    t.equal(role.validForMs(), 0)
    t.same(events, [])

    t.equal(role.promote(), 1)
    t.ok(role.isActive())
    t.equal(role.role, 'active')
    t.equal(role.validForMs(), timings.selfFenceMs)
    t.equal(role.promote(), 1, 'promote again: the same epoch')
    await clock.advance(1000)
    t.same(events, [
      'active 1: promoted by the cluster manager',
      'renewed 1 1000',
      'renewed 1 1000',
      'renewed 1 1000',
      'renewed 1 1000',
      'renewed 1 1000',
    ])

    let quiesced = false
    t.equal(
      await role.release(async () => {
        t.notOk(role.isActive(), 'standby before its children are stopped')
        quiesced = true
      }),
      true,
    )
    t.ok(quiesced)
    t.equal(await role.release(), false, 'demote again: nothing to do')
    events.length = 0
    await clock.advance(1000)
    t.same(events, [], 'no renew once demoted')
    t.equal(role.promote(), 2, 'the next promotion is a new epoch')
    role.stop()
    events.length = 0
    await clock.advance(1000)
    t.same(events, [], 'no renew once stopped')
  },
)

t.test('a restarted supervisor never reuses an epoch', async (t) => {
  const dir = tempDir(t)
  const clock = new FakeClock()
  const first = new ExternalRole({ clock, timings, stateDir: dir })
  t.equal(first.promote(), 1)
  first.stop()
  t.equal(readFileSync(join(dir, EXTERNAL_EPOCH_FILE), 'utf8'), '1\n')
  const second = new ExternalRole({ clock, timings, stateDir: dir })
  t.equal(second.epoch, 1, 'a standby shows the last epoch')
  t.equal(second.promote(), 2)
  second.stop()
  writeFileSync(join(dir, EXTERNAL_EPOCH_FILE), 'garbage')
  const third = new ExternalRole({ clock, timings, stateDir: dir })
  t.equal(third.promote(), 1, 'an unreadable record starts again at 1')
  third.stop()
})
