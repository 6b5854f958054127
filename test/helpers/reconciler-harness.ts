// A Reconciler over the fake OS and fake clock (test/helpers/fake-os.ts): real Instance, real
// Reconciler, no process, no port. For the reconciler's unit and model-based tests.
import type { Test } from 'tap'
import { buildPlan, validateConfig } from '../../src/config/load-config.js'
import type { Plan } from '../../src/config/plan.js'
import {
  Reconciler,
  type ReconcilerDeps,
  type RoleSnapshot,
} from '../../src/supervisor/reconciler.js'
import { FakeClock } from './fake-clock.js'
import { FakeOs } from './fake-os.js'

const FILE = '/tmp/tandem-reconciler-test.json'
export const planOf = (components: Record<string, unknown>): Plan =>
  buildPlan(validateConfig({ components }, FILE), FILE)
/** A component whose processes behave as `mode` says (see FakeProc), ready by IPC. */
export const comp = (mode: string, extra: Record<string, unknown> = {}) => ({
  command: ['prog', mode],
  readiness: { type: 'ipc', timeoutMs: 10_000 },
  stop: { signal: 'SIGTERM', timeoutMs: 1000 },
  ...extra,
})

/** `extra`: more dependencies (held sockets, ...), given to the Reconciler as they are. */
export const makeReconciler = (
  t: Test,
  components: Record<string, unknown>,
  ha = false,
  extra: Partial<ReconcilerDeps> = {},
) => {
  const clock = new FakeClock()
  const os = new FakeOs(clock)
  const events: string[] = []
  const role: RoleSnapshot = { active: !ha, epoch: 0 }
  const activations: string[] = []
  const refuse = { now: false }
  const r = new Reconciler(planOf(components), {
    clock,
    spawn: os.spawn,
    groups: os.groups,
    portFree: () => Promise.resolve(true),
    describePortHolder: () => '',
    random: () => 0.5,
    baseEnv: {},
    pipe: () => ({ push: () => {}, end: () => {} }),
    logFlow: { congested: false, whenDrained: (fn) => fn() },
    maxLineBytes: 1024,
    tracked: () => {},
    untracked: () => {},
    role: () =>
      role.active
        ? { role: 'active', epoch: role.epoch, deadline: 1e12 }
        : { role: 'standby', epoch: role.epoch },
    ...(ha
      ? {
          nodeRole: () => ({ ...role }),
          activate: (inst, epoch) => {
            activations.push(`${inst.id} ${epoch}`)
            return role.active && !refuse.now
          },
        }
      : {}),
    ...extra,
  })
  let maxDown = 0
  const down = (component?: string) =>
    [...r.instances.values()]
      .filter((i) => (!component || i.spec.component === component) && i.state !== 'ready')
      .map((i) => i.id)
  const sampleDown = (component: string) => {
    maxDown = 0
    r.on('event', () => (maxDown = Math.max(maxDown, down(component).length)))
  }
  r.on('event', (e) => events.push(`${e.id} ${e.event}`))
  /** Runs `p` to its end, moving the clock on in 10 ms steps. */
  const settle = async <T>(p: Promise<T>, maxMs = 120_000): Promise<T> => {
    let done = false
    p.then(
      () => (done = true),
      () => (done = true),
    )
    for (let ms = 0; !done && ms < maxMs; ms += 10) await clock.advance(10)
    if (!done) throw new Error(`did not settle within ${maxMs} ms of the fake clock`)
    return p
  }
  const start = async () => {
    r.reconcile()
    await settle(r.waitSettled([...r.instances.keys()]))
  }
  /** The mode (argv[1]) of the live process of each instance. */
  const modes = () =>
    Object.fromEntries([...os.live()].map(([id, p]) => [id, p.req.argv.slice(1).join(' ')]))
  t.teardown(() => void r.shutdown())
  return {
    r,
    os,
    clock,
    events,
    role,
    activations,
    refuse,
    settle,
    start,
    modes,
    down,
    sampleDown,
    maxDown: () => maxDown,
  }
}
