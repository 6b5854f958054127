// The supervisor's core (createSupervisor) without processes or listeners: the real Reconciler
// over the fake OS and fake clock, a real pino logger into an array, fakes for the monitor,
// systemd notifier and log files. Shutdown runs each step once, in order, logs a step that
// throws and turns it into exit code 1; handlers are safe at any point of start-up and
// shutdown; operator actions and rollouts go through the core. No ports.
import { pino } from 'pino'
import t, { type Test } from 'tap'
import type { Plan } from '../../src/config/plan.js'
import { createSupervisor, type SupervisorDeps } from '../../src/supervisor/app.js'
import { EventStream } from '../../src/supervisor/event-stream.js'
import { comp, makeReconciler, planOf } from '../helpers/reconciler-harness.js'

const setup = (t: Test, deps: Partial<SupervisorDeps> = {}) => {
  const components = { web: comp('ok', { instances: 2 }), db: comp('ok') }
  const h = makeReconciler(t, components)
  const calls: string[] = []
  const records: { level: number; msg: string }[] = []
  const log = pino({ level: 'info' }, { write: (s: string) => void records.push(JSON.parse(s)) })
  const events = new EventStream({ node: 'n1', clock: h.clock })
  const written: string[][] = []
  const note = (what: string) => () => void calls.push(what)
  let next: Plan = h.r.plan
  const app = createSupervisor({
    plan: h.r.plan,
    log,
    clock: h.clock,
    events,
    reconciler: h.r,
    monitor: {
      start: note('monitor.start'),
      changed: () => {},
      sync: () => {},
      stop: note('monitor.stop'),
    },
    notifier: {
      start: note('notifier.start'),
      update: () => {},
      reloading: note('notifier.reloading'),
      reloaded: note('notifier.reloaded'),
      stopping: note('notifier.stopping'),
      close: async () => void calls.push('notifier.close'),
    },
    overrides: { write: (s) => void written.push([...s]) },
    logs: {
      status: () => [],
      reopen: note('logs.reopen'),
      close: async () => void calls.push('logs.close'),
    },
    loadConfig: () => next,
    self: () => ({ rssBytes: 1, eventLoopLagMs: { p50: 0, p99: 0, max: 0 }, uptimeMs: 0 }),
    pid: 4242,
    closeAfterInstances: [['the held sockets', note('sockets.close')]],
    closeLast: [
      ['the watchdog', note('watchdog.close')],
      ['the state lock', note('lock.release')],
    ],
    ...deps,
  })
  const running = () => [...h.os.live().keys()].sort()
  return {
    ...h,
    app,
    calls,
    records,
    events,
    written,
    running,
    setNext: (p: Plan) => (next = p),
    components,
  }
}

t.test('start brings every instance up; status and the event stream show them', async (t) => {
  const s = setup(t)
  s.app.start()
  await s.settle(s.r.waitSettled([...s.r.instances.keys()]))
  t.same(s.running(), ['db#0', 'web#0', 'web#1'])
  t.ok(s.app.ready())
  const st = s.app.status()
  t.equal(st.node, s.r.plan.node)
  t.equal(st.role, 'standalone')
  t.equal(st.pid, 4242)
  t.same(
    st.instances.map((i) => i.state),
    ['ready', 'ready', 'ready'],
  )
  t.same(
    s.events
      .recent()
      .filter((e) => e.id === 'web#1')
      .map((e) => e.event),
    ['spawned', 'ready'],
  )
  t.same(s.calls, ['notifier.start', 'monitor.start'])
  s.app.start()
  t.same(s.calls, ['notifier.start', 'monitor.start'], 'a second start does nothing')
})

t.test('shutdown: each step once, in order; a throwing step is logged, exit code 1', async (t) => {
  const s = setup(t, {
    closeLast: [
      [
        'the watchdog',
        () => {
          throw new Error('watchdog socket gone')
        },
      ],
      ['the state lock', () => void s.calls.push('lock.release')],
    ],
  })
  s.app.start()
  await s.settle(s.r.waitSettled([...s.r.instances.keys()]))
  let runningWhenWatcherClosed: string[] = []
  let runningWhenListenerClosed: string[] = ['?']
  s.app.open('watcher', 'the config watcher', () => {
    runningWhenWatcherClosed = s.running()
  })
  s.app.open('listener', 'the control socket', () => {
    runningWhenListenerClosed = s.running()
  })
  s.calls.length = 0
  const first = s.app.shutdown('test')
  t.equal(s.app.shutdown('again'), first, 'a second shutdown joins the first')
  await s.settle(first)
  t.equal(await s.app.done, 1)
  t.same(runningWhenWatcherClosed, ['db#0', 'web#0', 'web#1'], 'watchers close first')
  t.same(runningWhenListenerClosed, [], 'listeners close after the instances stopped')
  t.same(s.calls, [
    'notifier.stopping',
    'monitor.stop',
    'sockets.close',
    'lock.release',
    'notifier.close',
    'logs.close',
  ])
  t.ok(
    s.records.some(
      (r) => r.level === 50 && r.msg === 'shutdown: the watchdog failed: watchdog socket gone',
    ),
  )
  t.same(s.running(), [])
})

t.test('a clean shutdown exits 0; the second SIGINT kills everything and exits 1', async (t) => {
  const clean = setup(t)
  clean.app.start()
  await clean.settle(clean.r.waitSettled([...clean.r.instances.keys()]))
  clean.app.signal('SIGTERM')
  await clean.settle(clean.app.done)
  t.equal(await clean.app.done, 0)

  const forced = setup(t)
  forced.app.start()
  await forced.settle(forced.r.waitSettled([...forced.r.instances.keys()]))
  forced.app.signal('SIGINT')
  forced.app.signal('SIGINT')
  await forced.settle(forced.app.done)
  t.equal(await forced.app.done, 1)
  t.ok(forced.records.some((r) => r.msg === 'second SIGINT: killing every instance now'))
})

t.test(
  'a shutdown before the start: start does nothing; what opens later closes at once',
  async (t) => {
    const s = setup(t)
    await s.settle(s.app.shutdown('SIGTERM'))
    t.ok(s.app.stopping)
    s.app.start()
    t.same(s.running(), [])
    t.notOk(s.calls.includes('monitor.start'))
    let closed = false
    s.app.open('listener', 'the HTTP endpoints', () => void (closed = true))
    await s.settle(Promise.resolve())
    t.ok(closed)
    await t.rejects(s.app.upgrade({ all: true }), { code: 'EBUSY' })
  },
)

t.test(
  'changes of what runs wait for the start (leftovers may still hold the ports)',
  async (t) => {
    const s = setup(t)
    await t.rejects(s.app.startInstances({ targets: ['web'] }), {
      code: 'EBUSY',
      message: /still starting/,
    })
    await t.rejects(s.app.reload(), { code: 'EBUSY' })
    t.same(s.running(), [], 'nothing spawned')
    s.app.start()
    await s.settle(s.r.waitSettled([...s.r.instances.keys()]))
    await s.settle(s.app.restartInstances({ targets: ['db'] }))
    t.same(s.running(), ['db#0', 'web#0', 'web#1'])
  },
)

t.test(
  'operator actions resolve targets, persist operator stops, and refuse bad bodies',
  async (t) => {
    const s = setup(t)
    s.app.start()
    await s.settle(s.r.waitSettled([...s.r.instances.keys()]))
    const r = await s.settle(s.app.stopInstances({ targets: ['web#1'] }))
    t.same(
      r.instances.map((i) => [i.id, i.state, i.stoppedByOperator]),
      [['web#1', 'stopped', true]],
    )
    t.same(s.written.at(-1), ['web#1'])
    t.same(s.running(), ['db#0', 'web#0'])
    await s.settle(s.app.startInstances({ targets: ['web'] }))
    t.same(s.running(), ['db#0', 'web#0', 'web#1'])
    t.same(s.written.at(-1), [])
    await t.rejects(s.app.restartInstances({ targets: 'web' }), { code: 'EUSAGE' })
    await t.rejects(s.app.restartInstances({ targets: ['nope'] }), { code: 'ETARGET' })
    s.app.signal('SIGUSR2')
    t.ok(s.calls.includes('logs.reopen'))
  },
)

t.test(
  'one rollout at a time; a config that names an unknown component changes nothing',
  async (t) => {
    const s = setup(t)
    s.app.start()
    await s.settle(s.r.waitSettled([...s.r.instances.keys()]))
    s.setNext(planOf({ ...s.components, web: comp('slow:2000', { instances: 2 }) }))
    const first = s.app.upgrade({ all: false, components: ['web'] })
    await t.rejects(s.app.upgrade({ all: true }), { code: 'EBUSY' })
    const done = await s.settle(first)
    t.same(done.replaced, ['web#0', 'web#1'])
    t.same(s.modes()['web#0'], 'slow:2000')
    await t.rejects(s.app.upgrade({ components: ['nope'] }), { code: 'ETARGET' })
  },
)
