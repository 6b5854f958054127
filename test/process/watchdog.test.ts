import { spawn, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { hostMonotonic } from '../../src/seams/clock.js'
import { watchdogMarginMs } from '../../src/process/watchdog.js'
import { alive, killGroup, ROOT, waitUntil } from '../helpers/supervisor.js'

// The built watchdog: startWatchdog runs dist/process/watchdog-main.js beside it.
type WatchdogModule = typeof import('../../src/process/watchdog.js')
const { startWatchdog } = (await import(join(ROOT, 'dist/process/watchdog.js'))) as WatchdogModule

const MARGIN_MS = 50

t.test('the margin is a quarter of takeoverMs - selfFenceMs', async (t) => {
  // Defaults: selfFenceMs 1000, takeoverMs 2000.
  t.equal(watchdogMarginMs(1000, 2000), 250)
  t.equal(watchdogMarginMs(1000, 3000), 500)
  t.equal(watchdogMarginMs(1000, 2003), 250, 'whole milliseconds, rounded down')
})

/** A process group of its own (a `sleep`), ended at teardown; `exit` resolves with its signal. */
const group = (t: Test) => {
  const child: ChildProcess = spawn('sleep', ['600'], { detached: true, stdio: 'ignore' })
  t.teardown(() => killGroup(child.pid!))
  let exitedAt: number | undefined
  const exit = new Promise<NodeJS.Signals | null>((resolve) =>
    child.once('exit', (_code, signal) => {
      exitedAt = hostMonotonic()
      resolve(signal)
    }),
  )
  return {
    pgid: child.pid!,
    exit,
    // A zombie not yet reaped counts as dead.
    alive: () => exitedAt === undefined && alive(child.pid!),
    exitedAt: () => exitedAt,
  }
}

/**
 * A watchdog watching the given groups, once it runs and reads its lines (a lease already past
 * for a group of its own has killed that group: a line that came while it was still starting
 * would be late by its start time); closed (without killing anything) at teardown.
 */
const watchdog = async (t: Test, pgids: number[]) => {
  const errors: string[] = []
  const wd = startWatchdog((m) => errors.push(m))
  t.teardown(() => wd.close())
  const warm = group(t)
  for (const g of [...pgids, warm.pgid]) wd.watch(g, 'SIGTERM', 1000)
  wd.lease(hostMonotonic() - 1, 0, [warm.pgid])
  await warm.exit
  return { wd, errors }
}

/**
 * Evidence that the watchdog has passed `instant` on the host's clock without killing: once the
 * clock is past it, a lease with a deadline already past for the sentinel group alone kills the
 * sentinel at once, and the watchdog reads its lines in order.
 */
const passed = async (
  wd: { lease(deadline: number, marginMs: number, pgids: readonly number[]): void },
  instant: number,
  sentinel: ReturnType<typeof group>,
) => {
  await waitUntil('the host clock to pass the first deadline', () => hostMonotonic() > instant)
  wd.lease(hostMonotonic() - 1, 0, [sentinel.pgid])
  return sentinel.exit
}

t.test('kills the listed groups at deadline + margin', async (t) => {
  const a = group(t)
  const b = group(t)
  const { wd, errors } = await watchdog(t, [a.pgid, b.pgid])
  const deadline = hostMonotonic() + 300
  wd.lease(deadline, MARGIN_MS, [a.pgid, b.pgid])
  t.equal(await a.exit, 'SIGKILL')
  t.equal(await b.exit, 'SIGKILL')
  t.ok(a.exitedAt()! >= deadline + MARGIN_MS, 'not before the deadline plus the margin')
  t.same(errors, [])
})

t.test('a newer lease line extends the deadline', async (t) => {
  const a = group(t)
  const sentinel = group(t)
  const { wd } = await watchdog(t, [a.pgid, sentinel.pgid])
  const first = hostMonotonic() + 500
  wd.lease(first, MARGIN_MS, [a.pgid])
  wd.lease(hostMonotonic() + 60_000, MARGIN_MS, [a.pgid])
  t.equal(await passed(wd, first + MARGIN_MS, sentinel), 'SIGKILL')
  t.ok(a.alive(), 'the extended group lives')
})

t.test('a cleared lease kills nothing', async (t) => {
  const a = group(t)
  const sentinel = group(t)
  const { wd } = await watchdog(t, [a.pgid, sentinel.pgid])
  const first = hostMonotonic() + 500
  wd.lease(first, MARGIN_MS, [a.pgid])
  wd.lease(0, 0, [])
  t.equal(await passed(wd, first + MARGIN_MS, sentinel), 'SIGKILL')
  t.ok(a.alive(), 'the group of a cleared lease lives')
})

t.test('a delayed line cannot extend: a deadline already past kills at once', async (t) => {
  const a = group(t)
  const { wd } = await watchdog(t, [a.pgid])
  wd.lease(hostMonotonic() + 60_000, MARGIN_MS, [a.pgid])
  // Written long after its deadline (a supervisor that froze between renew and send).
  wd.lease(hostMonotonic() - 5_000, MARGIN_MS, [a.pgid])
  t.equal(await a.exit, 'SIGKILL')
})

t.test(
  'only watched groups are killed (a pid reused after the watch ended is spared)',
  async (t) => {
    const watched = group(t)
    const other = group(t)
    const { wd } = await watchdog(t, [watched.pgid, other.pgid])
    wd.unwatch(other.pgid)
    wd.lease(hostMonotonic() - 1, 0, [watched.pgid, other.pgid])
    t.equal(await watched.exit, 'SIGKILL')
    t.ok(other.alive())
  },
)
