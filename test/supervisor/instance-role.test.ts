// What an Instance gives a child about its role (TANDEM_ROLE, TANDEM_EPOCH, TANDEM_DEADLINE) and
// what it takes from the child's IPC messages (tandem:cooperative, tandem:reactivated). Real
// children with an IPC channel; no ports.
import t, { type Test } from 'tap'
import { splitLines } from '../../src/logging/pipe-output.js'
import { buildPlan, validateConfig } from '../../src/config/load-config.js'
import { signalGroup } from '../../src/process/process-group.js'
import { spawnChild } from '../../src/process/spawn-child.js'
import { Instance, type InstanceDeps, type InstanceEvent } from '../../src/supervisor/instance.js'
import { FakeClock } from '../helpers/fake-clock.js'
import { waitUntil } from '../helpers/supervisor.js'

/** Prints its TANDEM_* variables, then sends what MESSAGES (JSON) lists, and runs on. */
const CHILD = [
  process.execPath,
  '-e',
  `console.log(['TANDEM_ROLE', 'TANDEM_EPOCH', 'TANDEM_DEADLINE'].map((k) => k + '=' + process.env[k]).join(' '))
for (const m of JSON.parse(process.env.MESSAGES)) process.send(m)
setInterval(() => {}, 1e6)`,
]

const make = (t: Test, messages: object[], role: InstanceDeps['role']) => {
  const file = '/tmp/tandem-instance-role-test.json'
  const config = validateConfig(
    {
      components: {
        c: {
          command: CHILD,
          env: { MESSAGES: JSON.stringify(messages) },
          readiness: { type: 'none' },
          runOn: 'active',
          activate: { type: 'ipc' },
        },
      },
    },
    file,
  )
  const spec = buildPlan(config, file).components[0]!.instances[0]!
  const events: InstanceEvent[] = []
  /** inst.cooperative when each event was emitted. */
  const cooperativeAt: boolean[] = []
  const lines: string[] = []
  const inst = new Instance(spec, {
    clock: new FakeClock(),
    spawn: spawnChild,
    portFree: () => Promise.resolve(true),
    describePortHolder: (port) => `port ${port} is in use by pid 1`,
    random: () => 0.5,
    baseEnv: process.env,
    onEvent: (e) => {
      events.push(e)
      cooperativeAt.push(inst.cooperative)
    },
    wake: () => {},
    pipe: () =>
      splitLines(64 * 1024, (bytes, start, end) => lines.push(bytes.toString('utf8', start, end))),
    logFlow: { congested: false, whenDrained: (fn) => fn() },
    maxLineBytes: 64 * 1024,
    tracked: () => {},
    untracked: () => {},
    role,
  })
  t.teardown(() => {
    if (inst.pid !== undefined) signalGroup(inst.pid, 'SIGKILL')
  })
  void inst.start()
  return { inst, events, lines, cooperativeAt }
}

t.test(
  'an active child gets its deadline; cooperative only when it says so; reactivated is an event',
  async (t) => {
    const { inst, events, lines, cooperativeAt } = make(
      t,
      [
        { type: 'tandem:ack', epoch: 4 },
        { type: 'tandem:reactivated', epoch: 4, lapsedMs: 120 },
        { type: 'tandem:cooperative' },
      ],
      () => ({ role: 'active', epoch: 4, deadline: 123456.5 }),
    )
    await waitUntil('the child to say its role', () => lines.length > 0)
    t.same(lines, ['TANDEM_ROLE=active TANDEM_EPOCH=4 TANDEM_DEADLINE=123456.5'])
    const e = await waitUntil('the reactivated event', () =>
      events.find((x) => x.event === 'reactivated'),
    )
    t.match(e, { event: 'reactivated', id: 'c#0', epoch: 4, lapsedMs: 120 })
    // The acknowledgement the old helper sent came first: not cooperative yet.
    t.equal(cooperativeAt[events.indexOf(e)], false)
    await waitUntil('cooperative', () => inst.cooperative)
    t.equal(inst.activeEpoch, 4)
  },
)

t.test('a standby child gets no deadline', async (t) => {
  const { inst, lines } = make(t, [], () => ({
    role: 'standby',
    epoch: 4,
  }))
  await waitUntil('the child to say its role', () => lines.length > 0)
  t.same(lines, ['TANDEM_ROLE=standby TANDEM_EPOCH=4 TANDEM_DEADLINE=undefined'])
  t.equal(inst.activeEpoch, undefined)
})
