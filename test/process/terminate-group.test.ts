// terminateGroup, the one way tandem stops a process group (instances, leftovers of a previous
// supervisor, the orphan watchdog): exact with a fake clock and fake group operations, then once
// with a real group that ignores its stop signal. isGroupId keeps bogus pids from ever becoming
// kill(-1), kill(0) or init's group. No ports.
import { spawn } from 'node:child_process'
import t from 'tap'
import {
  groupAlive,
  isGroupId,
  processAlive,
  signalGroup,
  terminateGroup,
  type GroupOps,
} from '../../src/process/process-group.js'
import { systemClock } from '../../src/seams/clock.js'
import { FakeClock } from '../helpers/fake-clock.js'
import { killGroup } from '../helpers/supervisor.js'

/** A fake group: gone `exitAfterMs` after the signal it gives in to (never, for SIGKILL-only). */
const fakeGroup = (clock: FakeClock, givesInTo: NodeJS.Signals[], exitAfterMs = 0) => {
  let alive = true
  const signals: string[] = []
  let aliveChecks = 0
  const ops: GroupOps = {
    signal: (pgid, signal) => {
      signals.push(`${pgid} ${signal}`)
      if (alive && (givesInTo.includes(signal) || signal === 'SIGKILL'))
        clock.after(signal === 'SIGKILL' ? 0 : exitAfterMs, () => (alive = false))
      return alive
    },
    alive: () => {
      aliveChecks++
      return alive
    },
  }
  return { ops, signals, aliveChecks: () => aliveChecks, isAlive: () => alive }
}

t.test('a bogus pid is never signalled', async (t) => {
  for (const pid of [undefined, NaN, -1, 0, 1, 1.5, -4242])
    t.notOk(isGroupId(pid), `${pid} is not a group of ours`)
  t.ok(isGroupId(4242))
  for (const pid of [-1, 0, 1]) {
    t.equal(signalGroup(pid, 'SIGCONT'), false, `signalGroup(${pid}) refused`)
    t.equal(groupAlive(pid), false, `groupAlive(${pid}) false`)
    t.equal(processAlive(pid), false, `processAlive(${pid}) false`)
  }
  const clock = new FakeClock()
  const g = fakeGroup(clock, ['SIGTERM'])
  t.same(await terminateGroup(0, { signal: 'SIGTERM', timeoutMs: 100, clock, ops: g.ops }), {
    killed: false,
  })
  t.same(g.signals, [], 'terminateGroup(0) sent nothing')
})

t.test('a group that stops on its signal is not killed', async (t) => {
  const clock = new FakeClock()
  const g = fakeGroup(clock, ['SIGTERM'], 300)
  let result: { killed: boolean } | undefined
  void terminateGroup(4242, { signal: 'SIGTERM', timeoutMs: 1000, clock, ops: g.ops }).then(
    (r) => (result = r),
  )
  await clock.advance(320)
  t.same(result, { killed: false })
  t.same(g.signals, ['4242 SIGTERM'])
})

t.test('a group that ignores its signal gets SIGKILL at the deadline, not before', async (t) => {
  const clock = new FakeClock()
  const g = fakeGroup(clock, [])
  let result: { killed: boolean } | undefined
  void terminateGroup(4242, { signal: 'SIGINT', timeoutMs: 1000, clock, ops: g.ops }).then(
    (r) => (result = r),
  )
  await clock.advance(990)
  t.same(g.signals, ['4242 SIGINT'], 'only the stop signal before the deadline')
  await clock.advance(40)
  t.same(g.signals, ['4242 SIGINT', '4242 SIGKILL'])
  await clock.advance(40)
  t.same(result, { killed: true })
  t.notOk(g.isAlive())
})

t.test('with the leader watched, the group is not polled until the leader exits', async (t) => {
  const clock = new FakeClock()
  const g = fakeGroup(clock, [])
  let exitLeader!: () => void
  const leaderExited = new Promise<void>((r) => (exitLeader = r))
  let result: { killed: boolean } | undefined
  void terminateGroup(4242, {
    signal: 'SIGTERM',
    timeoutMs: 1000,
    clock,
    ops: g.ops,
    signalled: true,
    leaderExited,
  }).then((r) => (result = r))
  await clock.advance(500)
  t.equal(g.aliveChecks(), 0, 'no poll while the leader runs')
  t.same(g.signals, [], 'signalled: the stop signal is not sent again')
  exitLeader()
  await clock.advance(600)
  t.same(result, { killed: true }, 'a grandchild left behind is killed at the deadline')
  t.same(g.signals, ['4242 SIGKILL'])
})

t.test('a real group ignoring SIGTERM: SIGKILL after the timeout, and gone', async (t) => {
  const child = spawn(
    process.execPath,
    ['-e', "process.on('SIGTERM', () => {}); console.log('up'); setInterval(() => {}, 1e6)"],
    { detached: true, stdio: ['ignore', 'pipe', 'ignore'] },
  )
  const pid = child.pid!
  t.teardown(() => killGroup(pid))
  await new Promise((r) => child.stdout.once('data', r))
  const r = await terminateGroup(pid, {
    signal: 'SIGTERM',
    timeoutMs: 300,
    clock: systemClock,
    leaderExited: new Promise((res) => child.once('exit', res)),
  })
  t.same(r, { killed: true })
  t.notOk(groupAlive(pid), 'the group is gone')
})
