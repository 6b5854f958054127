// Model-based test of the reconciler: random sequences (seeded, so a failure replays) of
// crashes, operator stop, start and restart, rollouts, reloads and HA role changes, against
// real Instances on the fake OS and clock. After every step the instances must converge to what
// is desired (running its definition and generation, activated in the node's epoch when active,
// or stopped), and nothing may run that is not desired; during a rollout no more instances of
// the component are down than rollout.maxUnavailable. No processes, no ports.
import { isDeepStrictEqual } from 'node:util'
import t, { type Test } from 'tap'
import { rollout } from '../../src/supervisor/rollout.js'
import { comp, makeReconciler, planOf } from '../helpers/reconciler-harness.js'

const SEEDS = 60
const STEPS = 40

/** mulberry32: a small seeded PRNG. */
const rng = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let x = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
  return ((x ^ (x >>> 14)) >>> 0) / 4294967296
}

const quick = {
  backoff: { initialMs: 10, maxMs: 100 },
  crashLoop: { maxExits: 1000, windowMs: 1000 },
}
/** The node's components in version `v` (a rollout moves every one of them to a new argv). */
const components = (v: number, extra: boolean) => ({
  web: comp('slow:100', {
    ...quick,
    command: ['prog', 'slow:100', `v${v}`],
    instances: 3,
    rollout: { maxUnavailable: 1 },
  }),
  api: comp('slow:50', { ...quick, command: ['prog', 'slow:50', `v${v}`], runOn: 'active' }),
  svc: comp('ok', {
    ...quick,
    command: ['prog', 'ok', `v${v}`],
    runOn: 'active',
    standby: 'hot',
  }),
  ...(extra ? { extra: comp('ok', quick) } : {}),
})

const run = async (t: Test, seed: number) => {
  const random = rng(seed)
  const pick = <T>(xs: T[]): T => xs[Math.floor(random() * xs.length)]!
  let version = 1
  let extra = false
  const c = makeReconciler(t, components(version, extra), true)
  c.role.active = true
  c.role.epoch = 1
  await c.start()
  const log: string[] = []

  /** Why the instances are not (yet) what is desired; empty when they are. */
  const gaps = (): string[] => {
    const out: string[] = []
    const running = new Set<number>()
    for (const inst of c.r.instances.values()) {
      const id = inst.id
      if (!isDeepStrictEqual(inst.spec, c.r.desiredSpec(id))) out.push(`${id}: old definition`)
      if (c.r.desired(id)) {
        if (inst.state !== 'ready') out.push(`${id}: ${inst.state}, wanted ready`)
        if (inst.generation !== c.r.generationOf(id))
          out.push(`${id}: generation ${inst.generation}, wanted ${c.r.generationOf(id)}`)
        if (inst.spec.runOn === 'active' && inst.activeEpoch !== c.role.epoch && c.role.active)
          out.push(`${id}: serves epoch ${inst.activeEpoch}, node active in ${c.role.epoch}`)
      } else if (inst.state !== 'stopped') out.push(`${id}: ${inst.state}, not wanted`)
      if (inst.spec.runOn === 'active' && !c.role.active && inst.activeEpoch !== undefined)
        out.push(`${id}: serves epoch ${inst.activeEpoch} on a standby`)
      if (inst.pid !== undefined) running.add(inst.pid)
    }
    for (const [id, p] of c.os.live())
      if (!running.has(p.pid)) out.push(`${id}: pid ${p.pid} runs, no instance owns it`)
    return out
  }
  const converge = async (what: string) => {
    // A step's effects (a crash's exit, say) are seen once the event loop has turned.
    await c.clock.advance(10)
    for (let ms = 0; ms < 30_000 && gaps().length > 0; ms += 10) await c.clock.advance(10)
    const left = gaps()
    if (left.length) t.fail(`seed ${seed}, after ${what}: ${left.join('; ')}\n${log.join('\n')}`)
  }

  for (let step = 0; step < STEPS; step++) {
    const ids = [...c.r.instances.keys()]
    const action = Math.floor(random() * 7)
    let what: string
    if (action === 0) {
      const live = [...c.os.live()]
      if (live.length === 0) continue
      const [id, p] = pick(live)
      what = `crash of ${id}`
      p.exit(1)
    } else if (action === 1) {
      const id = pick(ids)
      what = `stop ${id}`
      await c.settle(c.r.stopInstances([id]))
    } else if (action === 2) {
      const id = pick(ids)
      what = `start ${id}`
      await c.settle(c.r.startInstances([id]))
    } else if (action === 3) {
      const id = pick(ids)
      what = `restart ${id}`
      await c.settle(c.r.restartInstances([id]))
    } else if (action === 4) {
      version++
      what = `rollout to v${version}`
      let worst = 0
      let when = ''
      const sample = () => {
        const down = [...c.r.instances.values()].filter(
          (i) => i.spec.component === 'web' && c.r.desired(i.id) && i.state !== 'ready',
        )
        if (down.length > worst) {
          worst = down.length
          when = down.map((i) => `${i.id} ${i.state} g${i.generation}`).join(', ')
        }
      }
      c.r.on('event', sample)
      await c.settle(
        rollout(
          c.r,
          planOf(components(version, extra)),
          { all: false, addRemove: false },
          c.clock,
          () => {},
        ),
      )
      c.r.off('event', sample)
      if (worst > 1)
        t.fail(
          `seed ${seed}: ${worst} web instances down at once during ${what} (${when})\n${log.join('\n')}`,
        )
    } else if (action === 5) {
      extra = !extra
      what = `reload ${extra ? 'adding' : 'removing'} extra`
      await c.settle(
        rollout(
          c.r,
          planOf(components(version, extra)),
          { all: false, addRemove: true },
          c.clock,
          () => {},
        ),
      )
    } else {
      if (c.role.active) {
        c.role.active = false
        what = 'fenced'
      } else {
        c.role.active = true
        c.role.epoch++
        what = `promoted to epoch ${c.role.epoch}`
      }
      c.r.reconcile()
    }
    log.push(`${step}: ${what}`)
    await converge(what)
  }
  t.pass(`seed ${seed}: ${STEPS} steps converged`)
}

for (let seed = 1; seed <= SEEDS; seed++) t.test(`seed ${seed}`, (t) => run(t, seed))
