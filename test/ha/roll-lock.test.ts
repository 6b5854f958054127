// Roll slots on a real directory: the work done while holding one does not count as done when
// the slot's lease lapses meanwhile (storage hung past selfFenceMs): another node may have taken
// the slot and restarted an instance of the same component.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import type { HaSpec } from '../../src/config/plan.js'
import { fsSlotStore } from '../../src/ha/backend.js'
import { RollLocks } from '../../src/ha/roll-lock.js'
import { localSharedFs, type SharedFs } from '../../src/ha/shared-fs.js'
import { systemClock } from '../../src/seams/clock.js'
import { tempDir, waitUntil } from '../helpers/supervisor.js'

// Short timings: the test waits on real time, a few hundred milliseconds.
const timings = { renewMs: 50, selfFenceMs: 300, takeoverMs: 700, pollMs: 25 }

/** A shared dir made a cluster (its config.json: roll slots are claimed only in one). */
const clusterDir = (t: Test) => {
  const dir = tempDir(t)
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ name: 'c1', ...timings }))
  return dir
}

/** A local SharedFs whose heartbeat writes can be held (a hard mount that stopped answering). */
const gated = (dir: string) => {
  const fs = localSharedFs(dir)
  let held: (() => void)[] | undefined
  /** When the first write was held (performance.now()). */
  let heldSince: number | undefined
  const view: SharedFs = Object.assign(Object.create(fs) as SharedFs, {
    overwrite: async (path: string, data: string) => {
      if (held && path.includes('hb')) {
        heldSince ??= performance.now()
        await new Promise<void>((r) => held!.push(r))
      }
      return fs.overwrite(path, data)
    },
  })
  return {
    view,
    heldFor: () => (heldSince === undefined ? 0 : performance.now() - heldSince),
    hang: () => void (held ??= []),
    unhang: () => {
      const waiting = held ?? []
      held = undefined
      for (const go of waiting) go()
    },
  }
}

t.test('a step done while the slot held: it counts', async (t) => {
  const dir = clusterDir(t)
  const ha: HaSpec = { name: 'c1', backend: { type: 'dir', sharedDir: dir }, ...timings }
  const locks = new RollLocks(ha, 'a', systemClock, fsSlotStore(localSharedFs(dir)))
  t.equal(await locks.hold('web', 1, () => Promise.resolve('done')), 'done')
})

t.test('a step during which the slot lapsed fails with ELEASELOST, saying why', async (t) => {
  const dir = clusterDir(t)
  const ha: HaSpec = { name: 'c1', backend: { type: 'dir', sharedDir: dir }, ...timings }
  const g = gated(dir)
  const locks = new RollLocks(ha, 'a', systemClock, fsSlotStore(g.view))
  t.teardown(() => g.unhang())
  const holding = locks.hold('web', 1, async () => {
    g.hang() // the slot's renews now wait on the storage
    // The step goes on while a renew has waited twice selfFenceMs: the slot's lease has fenced
    // itself by then (its own timer, no I/O; and its check when the step ends says so anyway).
    await waitUntil('a renew held for 2 x selfFenceMs', () => g.heldFor() > 2 * timings.selfFenceMs)
    g.unhang()
    return 'done'
  })
  await t.rejects(holding, {
    code: 'ELEASELOST',
    message:
      /the roll slot of web lapsed while this node held it \(fenced: storage: a renew has waited \d+ ms .*\): .*does not count as done/,
  })
})
