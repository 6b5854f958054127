// The reconciler as the one path for every change of what runs: start, operator stop, start and
// restart (one at a time, drained), rollouts (one by one, rolled back when the new definition
// does not come up), the queue that keeps restarts and rollouts apart, HA roles (cold
// components follow the node's role, hot ones are activated and come back as standbys) and
// shutdown order. Real Instance and Reconciler; processes, process groups and time are fakes
// (test/helpers/fake-os.ts, fake-clock.ts): fast and exact. No ports.
import t from 'tap'
import { ChangeQueue } from '../../src/supervisor/change-queue.js'
import { rollout, type RolloutEvent } from '../../src/supervisor/rollout.js'
import { comp, makeReconciler as make, planOf } from '../helpers/reconciler-harness.js'

t.test('start: everything wanted comes up, dependencies first', async (t) => {
  const c = make(t, {
    db: comp('slow:500'),
    web: comp('ok', { instances: 2, dependsOn: ['db'] }),
  })
  await c.start()
  t.same(c.down(), [])
  const firstWeb = c.events.findIndex((e) => e.startsWith('web#0 starting'))
  t.ok(firstWeb > c.events.indexOf('db#0 ready'), 'web starts once db is ready')
})

t.test(
  'operator restart: one instance at a time, each back before the next goes down',
  async (t) => {
    const c = make(t, { web: comp('slow:300', { instances: 3 }) })
    await c.start()
    const pids = [...c.r.instances.values()].map((i) => i.pid)
    c.sampleDown('web')
    await c.settle(c.r.restartInstances(['web#0', 'web#1', 'web#2']))
    t.equal(c.maxDown(), 1, 'never two down')
    const after = [...c.r.instances.values()]
    t.same(
      after.map((i) => i.state),
      ['ready', 'ready', 'ready'],
    )
    t.ok(
      after.every((i, n) => i.pid !== pids[n]),
      'each has a new process',
    )
    t.same(
      after.map((i) => i.generation),
      [1, 1, 1],
    )
    const order = c.events.filter((e) => /web#\d (stopping|ready)$/.test(e)).slice(3)
    t.same(order, [
      'web#0 stopping',
      'web#0 ready',
      'web#1 stopping',
      'web#1 ready',
      'web#2 stopping',
      'web#2 ready',
    ])
  },
)

t.test('operator restart drains a ready instance for rollout.drainMs first', async (t) => {
  const c = make(t, { web: comp('ok', { rollout: { drainMs: 500 } }) })
  await c.start()
  const web = c.r.instances.get('web#0')!
  const restart = c.r.restartInstances(['web#0'])
  await c.clock.advance(400)
  t.match(web.status(), { state: 'ready', draining: true }, 'draining, still serving')
  await c.settle(restart)
  t.equal(web.state, 'ready')
  t.notOk(web.status().draining)
  t.equal(web.generation, 1)
})

t.test(
  'operator stop, then start: stays down until started; a failed one gets a fresh start',
  async (t) => {
    const c = make(t, { web: comp('ok'), job: comp('crash', { restart: 'never' }) })
    c.r.reconcile()
    await c.settle(c.r.waitSettled(['web#0', 'job#0']))
    t.equal(c.r.instances.get('job#0')!.state, 'failed')
    await c.settle(c.r.stopInstances(['web#0']))
    t.equal(c.r.instances.get('web#0')!.state, 'stopped')
    await c.clock.advance(5000)
    t.equal(c.r.instances.get('web#0')!.state, 'stopped', 'not started again by a later pass')
    const spawned = c.os.procs.size
    await c.settle(c.r.startInstances(['web#0', 'job#0']))
    t.equal(c.r.instances.get('web#0')!.state, 'ready')
    t.equal(c.os.procs.size, spawned + 2, 'both spawned again (job fails again: restart never)')
  },
)

t.test('rollout: one by one (maxUnavailable 1), each with the new definition', async (t) => {
  const c = make(t, { web: comp('slow:200', { instances: 3 }) })
  await c.start()
  c.sampleDown('web')
  const next = planOf({ web: comp('slow:250', { instances: 3 }) })
  const phases: string[] = []
  const result = await c.settle(
    rollout(c.r, next, { all: false, addRemove: false }, c.clock, (e: RolloutEvent) =>
      phases.push(`${e.phase}${e.id ? ` ${e.id}` : ''}`),
    ),
  )
  t.same(result.replaced, ['web#0', 'web#1', 'web#2'])
  t.equal(c.maxDown(), 1, 'never two down')
  t.same(c.modes(), { 'web#0': 'slow:250', 'web#1': 'slow:250', 'web#2': 'slow:250' })
  t.same(phases.slice(0, 5), [
    'plan',
    'stopping web#0',
    'starting web#0',
    'replaced web#0',
    'stopping web#1',
  ])
})

t.test(
  'rollout: a new definition that crashes is rolled back; the rest never touched',
  async (t) => {
    const c = make(t, { web: comp('ok', { instances: 3 }) })
    await c.start()
    const pids = ['web#1', 'web#2'].map((id) => c.r.instances.get(id)!.pid)
    const next = planOf({ web: comp('crash', { instances: 3 }) })
    const err = await c
      .settle(rollout(c.r, next, { all: false, addRemove: false }, c.clock, () => {}))
      .then(
        () => undefined,
        (e: Error & { code?: string }) => e,
      )
    t.match(err, { code: 'EROLLOUT', message: /web#0 exited during the rollout: exit code 1/ })
    t.match(err?.message, /rolled back web#0/)
    await c.settle(c.r.waitSettled(['web#0', 'web#1', 'web#2']))
    t.same(c.modes(), { 'web#0': 'ok', 'web#1': 'ok', 'web#2': 'ok' })
    t.same(
      ['web#1', 'web#2'].map((id) => c.r.instances.get(id)!.pid),
      pids,
      'web#1 and web#2 kept their processes',
    )
    t.same(c.r.desiredSpec('web#1')?.argv, c.r.instances.get('web#1')!.spec.argv)
  },
)

t.test('reload: removed instances stop before added ones start', async (t) => {
  const c = make(t, { old: comp('ok'), keep: comp('ok') })
  await c.start()
  const next = planOf({ keep: comp('ok'), fresh: comp('ok') })
  await c.settle(rollout(c.r, next, { all: false, addRemove: true }, c.clock, () => {}))
  await c.settle(c.r.waitSettled(['fresh#0']))
  t.same([...c.r.instances.keys()].sort(), ['fresh#0', 'keep#0'])
  t.ok(
    c.events.indexOf('old#0 stopped') < c.events.indexOf('fresh#0 starting'),
    'old stopped before fresh started',
  )
})

t.test('restarts and rollouts through one queue never interleave', async (t) => {
  const c = make(t, { web: comp('slow:300', { instances: 2 }) })
  await c.start()
  const queue = new ChangeQueue()
  const next = planOf({ web: comp('slow:400', { instances: 2 }) })
  c.sampleDown('web')
  const rolled = queue.run(() =>
    rollout(c.r, next, { all: false, addRemove: false }, c.clock, (e) =>
      c.events.push(`rollout ${e.phase}`),
    ),
  )
  const restarted = queue.run(() => c.r.restartInstances(['web#1']))
  t.equal(queue.pending, 2)
  await c.settle(Promise.all([rolled, restarted]))
  t.equal(c.maxDown(), 1, 'never both down')
  const done = c.events.indexOf('rollout done')
  const restart = c.events.indexOf('web#1 restart')
  t.ok(done >= 0 && restart > done, 'the restart began after the rollout was done')
  t.equal(c.r.instances.get('web#1')!.generation, 2, 'rollout, then restart')
  t.equal(queue.pending, 0)
})

t.test(
  'ha: cold components follow the role; hot ones are activated, then come back as standbys',
  async (t) => {
    const c = make(
      t,
      {
        api: comp('ok', { runOn: 'active' }),
        svc: comp('ok', { runOn: 'active', standby: 'hot', activate: { type: 'ipc' } }),
      },
      true,
    )
    await c.start()
    t.equal(c.r.instances.get('api#0')!.state, 'stopped', 'cold: not on a standby')
    const svc = c.r.instances.get('svc#0')!
    t.equal(svc.state, 'ready', 'hot: pre-started as a standby')
    t.equal(svc.activeEpoch, undefined)
    const standbyPid = svc.pid

    c.role.active = true
    c.role.epoch = 1
    c.r.reconcile()
    await c.settle(c.r.waitSettled(['api#0', 'svc#0']))
    t.equal(c.r.instances.get('api#0')!.state, 'ready')
    t.equal(c.r.instances.get('api#0')!.activeEpoch, 1, 'spawned active')
    t.same(c.activations, ['svc#0 1'], 'activated once')
    t.equal(svc.activeEpoch, 1)
    t.equal(svc.pid, standbyPid, 'the same process')
    c.r.reconcile()
    t.same(c.activations, ['svc#0 1'], 'not activated twice')

    c.role.active = false
    await c.settle(c.r.whenQuiesced())
    t.equal(c.r.instances.get('api#0')!.state, 'stopped')
    await c.settle(c.r.waitSettled(['svc#0']))
    t.equal(svc.state, 'ready')
    t.not(svc.pid, standbyPid, 'restarted')
    t.equal(svc.activeEpoch, undefined, 'back as a standby')
    t.equal(c.os.procs.get(svc.pid!)!.req.env.TANDEM_ROLE, 'standby')
  },
)

t.test(
  'ha: an activation refused at the last moment marks nothing and is tried again',
  async (t) => {
    const c = make(t, { svc: comp('ok', { runOn: 'active', standby: 'hot' }) }, true)
    await c.start()
    const svc = c.r.instances.get('svc#0')!
    c.role.active = true
    c.role.epoch = 1
    // The snapshot says active; the lease's own check right before the act says no.
    c.refuse.now = true
    c.r.reconcile()
    t.same(c.activations, ['svc#0 1'])
    t.equal(svc.activeEpoch, undefined, 'not marked')
    c.refuse.now = false
    c.r.reconcile()
    t.same(c.activations, ['svc#0 1', 'svc#0 1'])
    t.equal(svc.activeEpoch, 1)
  },
)

t.test('shutdown: dependents stop before what they depend on', async (t) => {
  const c = make(t, { db: comp('ok'), web: comp('ok', { dependsOn: ['db'], instances: 2 }) })
  await c.start()
  await c.settle(c.r.shutdown())
  const dbStopping = c.events.indexOf('db#0 stopping')
  t.ok(c.events.indexOf('web#0 stopped') < dbStopping)
  t.ok(c.events.indexOf('web#1 stopped') < dbStopping)
  t.same(c.down().length, 3)
  t.same([...c.os.live().keys()], [])
})

/** A stand-in for HeldSockets: `held` names the instances that hold a socket now. */
const heldSockets = () => {
  const held = new Set<string>()
  return {
    held,
    sockets: {
      acquire: (id: string) => {
        held.add(id)
        return Promise.resolve(3)
      },
      releaseUnless: (keep: (id: string) => boolean) => {
        for (const id of [...held]) if (!keep(id)) held.delete(id)
      },
    },
  }
}
const socket = { activation: 'node' }

t.test(
  'a held socket is kept while its instance wants to run, released when it no longer does',
  async (t) => {
    const { held, sockets } = heldSockets()
    const c = make(
      t,
      {
        web: comp('ok', { port: 29410, socket }),
        job: comp('crash', { port: 29411, socket, restart: 'never' }),
        old: comp('ok', { port: 29412, socket }),
      },
      false,
      { sockets },
    )
    await c.start()
    t.same([...held].sort(), ['old#0', 'web#0'], 'the failed one gave its socket up')
    await c.settle(c.r.restartInstances(['web#0']))
    t.ok(held.has('web#0'), 'kept across a restart')
    await c.settle(c.r.stopInstances(['web#0']))
    t.notOk(held.has('web#0'), 'released when an operator stops it')
    await c.settle(c.r.startInstances(['web#0']))
    t.ok(held.has('web#0'), 'held again once started')
    c.r.replacePlan(planOf({ web: comp('ok', { port: 29410, socket }) }))
    await c.settle(c.r.whenGone(['old#0']))
    t.same([...held], ['web#0'], 'released when its instance left the plan')
    await c.settle(c.r.shutdown())
    t.same([...held], [], 'released at shutdown')
  },
)

t.test(
  'a rollout of a held-socket instance ready by IPC hands over: the old process serves until the new one is ready',
  async (t) => {
    const { sockets } = heldSockets()
    const c = make(t, { web: comp('slow:300', { port: 29413, socket }) }, false, { sockets })
    await c.start()
    const old = c.os.live().get('web#0')!
    const mark = c.events.length
    const phases: string[] = []
    const next = planOf({ web: comp('slow:400', { port: 29413, socket }) })
    const done = rollout(c.r, next, { all: false, addRemove: false }, c.clock, (e) =>
      phases.push(e.message),
    )
    await c.clock.advance(200)
    t.ok(old.alive, 'the old process still runs while the new one starts')
    t.same(old.signals, [], 'and has had no signal')
    t.equal([...c.os.procs.values()].filter((p) => p.alive).length, 2, 'two processes for a moment')
    t.equal(c.r.instances.get('web#0')!.state, 'starting')
    const result = await c.settle(done)
    t.same(result.replaced, ['web#0'])
    await c.settle(c.r.waitSettled(['web#0']))
    await c.clock.advance(200)
    t.same(old.signals, ['SIGTERM'], 'the old one got its stop signal once the new one was ready')
    t.same(c.events.slice(mark), [
      'web#0 starting',
      'web#0 spawned',
      'web#0 ready',
      'web#0 retired',
    ])
    t.same(c.modes(), { 'web#0': 'slow:400' })
    t.throws(
      () => void c.r.instances.get('web#0')!.start(),
      /web#0: cannot start in state ready/,
      'a second process over a ready one only through a handover',
    )
    t.match(phases[1], /web#0 starting .*the old process serves until it is ready/)
  },
)

t.test(
  'a handover whose new process never gets ready stops the old one at its end; the rollout rolls back',
  async (t) => {
    const { sockets } = heldSockets()
    const c = make(t, { web: comp('ok', { port: 29414, socket }) }, false, { sockets })
    await c.start()
    const old = c.os.live().get('web#0')!
    const next = planOf({ web: comp('never', { port: 29414, socket }) })
    const err = await c
      .settle(rollout(c.r, next, { all: false, addRemove: false }, c.clock, () => {}))
      .then(
        () => undefined,
        (e: Error & { code?: string }) => e,
      )
    t.match(err, { code: 'EROLLOUT', message: /web#0 exited during the rollout/ })
    t.same(old.signals, ['SIGTERM'], 'the old one stopped when the new run ended')
    await c.settle(c.r.waitSettled(['web#0']))
    t.same(c.modes(), { 'web#0': 'ok' }, 'rolled back')
    t.equal(c.r.instances.get('web#0')!.state, 'ready')
  },
)

t.test(
  'an instance that leaves the plan during a handover is kept until its old process is gone too',
  async (t) => {
    const { sockets } = heldSockets()
    const c = make(
      t,
      { web: comp('linger:1000', { port: 29416, socket }), api: comp('ok') },
      false,
      { sockets },
    )
    await c.start()
    const old = c.os.live().get('web#0')!
    c.r.replaceInstance(
      'web#0',
      planOf({ web: comp('ok', { port: 29416, socket }) }).components[0]!.instances[0]!,
    )
    await c.clock.advance(50)
    t.same(old.signals, ['SIGTERM'], 'the new one is ready: the old one finishes its requests')
    t.ok(old.alive)
    c.r.replacePlan(planOf({ api: comp('ok') }))
    await c.clock.advance(100)
    t.ok(old.alive, 'the old process still finishes')
    t.ok(c.r.instances.has('web#0'), 'so the instance is not forgotten yet')
    await c.settle(c.r.whenGone(['web#0']))
    t.notOk(old.alive)
    t.notOk(c.r.instances.has('web#0'), 'forgotten once both processes are gone')
    t.equal([...c.os.procs.values()].filter((p) => p.alive).length, 1, 'only api#0 runs')
  },
)

t.test('shutdown during a handover stops both processes', async (t) => {
  const { sockets } = heldSockets()
  const c = make(t, { web: comp('ok', { port: 29415, socket }) }, false, { sockets })
  await c.start()
  c.r.replaceInstance(
    'web#0',
    planOf({ web: comp('slow:500', { port: 29415, socket }) }).components[0]!.instances[0]!,
  )
  await c.clock.advance(100)
  t.equal([...c.os.procs.values()].filter((p) => p.alive).length, 2)
  await c.settle(c.r.shutdown())
  t.equal([...c.os.procs.values()].filter((p) => p.alive).length, 0, 'none left')
  t.equal(c.r.instances.get('web#0')!.state, 'stopped')
})

t.test(
  'no handover when the socket changes, or without held sockets: the old process stops first',
  async (t) => {
    const { sockets } = heldSockets()
    const c = make(t, { b: comp('ok', { port: 29417, socket }) }, false, { sockets })
    // No held sockets (the component's socket is then ignored).
    const d = make(t, { b: comp('ok', { port: 29418, socket }) })
    for (const [x, port, next] of [
      [c, 29417, { ...socket, backlog: 64 }],
      [d, 29418, socket],
    ] as const) {
      await x.start()
      const mark = x.events.length
      const plan = planOf({ b: comp('slow:10', { port, socket: next }) })
      await x.settle(rollout(x.r, plan, { all: false, addRemove: false }, x.clock, () => {}))
      const after = x.events.slice(mark)
      t.ok(
        after.indexOf('b#0 stopped') >= 0 &&
          after.indexOf('b#0 stopped') < after.indexOf('b#0 starting'),
        `stopped before it started again (${after.join(', ')})`,
      )
      t.notOk(after.some((e) => e.endsWith('retired')))
    }
  },
)

t.test(
  'a replacement while the old process of the last handover still finishes stops the current one first',
  async (t) => {
    const { sockets } = heldSockets()
    const web = (v: string) =>
      comp('linger:2000', {
        command: ['prog', 'linger:2000', v],
        port: 29419,
        socket,
        stop: { signal: 'SIGTERM', timeoutMs: 5000 },
      })
    const c = make(t, { web: web('v1') }, false, { sockets })
    await c.start()
    const first = c.os.live().get('web#0')!
    const spec = (v: string) => planOf({ web: web(v) }).components[0]!.instances[0]!
    c.r.replaceInstance('web#0', spec('v2'))
    await c.settle(c.r.waitSettled(['web#0']))
    const inst = c.r.instances.get('web#0')!
    t.equal(inst.state, 'ready')
    t.ok(inst.handingOver && first.alive, 'v1 still finishing its requests')
    const second = [...c.os.procs.values()].find((p) => p.alive && p !== first)!
    c.r.replaceInstance('web#0', spec('v3'))
    await c.settle(c.r.waitSettled(['web#0']))
    t.equal(inst.state, 'ready')
    t.same(second.signals, ['SIGTERM'], 'v2 was stopped, not handed over')
    t.same(c.modes(), { 'web#0': 'linger:2000 v3' })
    await c.clock.advance(3000)
    t.equal([...c.os.procs.values()].filter((p) => p.alive).length, 1, 'only v3 runs')
    t.notOk(inst.handingOver)
  },
)
