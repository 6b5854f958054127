import { isDeepStrictEqual } from 'node:util'
import type { ComponentSpec, InstanceSpec, Plan } from '../config/plan.js'
import { TandemError } from '../errors.js'
import type { Clock } from '../seams/clock.js'
import { describeExit, type Instance, type InstanceEvent } from './instance.js'
import type { Reconciler } from './reconciler.js'

/** One step of a rollout, for the log, `tandem upgrade`'s progress and its --json lines. */
export interface RolloutEvent {
  event: 'rollout'
  phase:
    | 'plan'
    | 'draining'
    | 'stopping'
    | 'starting'
    | 'ready'
    | 'replaced'
    | 'failed'
    | 'rollback'
    | 'added'
    | 'removed'
    | 'done'
  id?: string
  /** 1-based position of this instance among those the rollout replaces, and their number. */
  n?: number
  of?: number
  elapsedMs?: number
  message: string
}

export interface RolloutOptions {
  /** Replace every instance of the components in scope, changed or not (new code in place). */
  all: boolean
  /** Only these components (default: all of them). */
  components?: readonly string[]
  /** Start components the new plan adds and stop those it removes (reload). */
  addRemove: boolean
  /**
   * Runs the replacement of one instance of `component` exclusively (with ha: holding one of
   * its cluster-wide roll slots, for components that run on every node). Default: just runs it.
   */
  exclusive?: <T>(component: ComponentSpec, fn: () => Promise<T>) => Promise<T>
}

export interface RolloutResult {
  replaced: string[]
  added: string[]
  removed: string[]
  unchanged: string[]
}

/** Why a replaced instance did not come up, with what an operator needs to see. */
class ReplaceFailed extends Error {}

/** Lines naming an error, as runtimes print them first (Node, Java, Python, Go). */
const ERROR_LINE = /\b(error|exception|fatal|panic|cannot|failed)\b/i

/**
 * The last stderr lines of a failed instance, in one line for the upgrade command's message:
 * blank lines and stack frames dropped, and the first line naming an error kept even when it is
 * older than the last `max` (a Node or Java crash prints it first, then a stack).
 */
export const stderrSummary = (lines: readonly string[], max = 5): string => {
  const kept = lines.filter((l) => l.trim() !== '' && !/^\s+at\s/.test(l))
  const last = kept.slice(-max)
  const error = kept.slice(0, -max).find((l) => ERROR_LINE.test(l))
  const shown =
    error && !last.some((l) => ERROR_LINE.test(l)) ? [error, '...', ...last.slice(1)] : last
  return shown.map((l) => l.trim()).join(' | ')
}

const sameSpec = (a: InstanceSpec, b: InstanceSpec) => isDeepStrictEqual(a, b)
const sameComponent = (a: ComponentSpec, b: ComponentSpec) =>
  isDeepStrictEqual(a.dependsOn, b.dependsOn) &&
  isDeepStrictEqual(a.rollout, b.rollout) &&
  a.instances.length === b.instances.length &&
  a.instances.every((i, n) => sameSpec(i, b.instances[n]!))

/**
 * Moves a running node from its plan to `next`, one batch of instances at a time, so that the
 * service stays up: components in dependency order; per component `rollout.maxUnavailable`
 * instances at once, each drained (`rollout.drainMs`), stopped, started with its new definition
 * and waited for until ready and up for `rollout.minReadyMs`. If one does not come up within
 * `rollout.progressDeadlineMs`, or exits meanwhile, the rollout stops and the instances it
 * changed go back to their previous definition, the same way, newest first; it then fails with
 * EROLLOUT naming the instance and why. The reconciler stays the one that starts and stops
 * processes: a rollout only changes what is desired (replaceInstance, retire, replacePlan) and
 * waits for it.
 */
export const rollout = async (
  reconciler: Reconciler,
  next: Plan,
  options: RolloutOptions,
  clock: Clock,
  progress: (e: RolloutEvent) => void,
): Promise<RolloutResult> => {
  const started = clock.monotonic()
  const say = (e: Omit<RolloutEvent, 'event' | 'elapsedMs'>) =>
    progress({ event: 'rollout', elapsedMs: Math.round(clock.monotonic() - started), ...e })
  const current = reconciler.plan
  const inScope = (name: string) => !options.components || options.components.includes(name)
  // Components outside the scope keep their current definition.
  const target: Plan = {
    ...next,
    components: next.components.map((c) => {
      const now = current.components.find((x) => x.name === c.name)
      return now && !inScope(c.name) ? now : c
    }),
  }
  if (!options.addRemove) {
    // An upgrade replaces; what comes and goes is a reload's business.
    target.components = target.components.filter((c) =>
      current.components.some((x) => x.name === c.name),
    )
    for (const c of current.components)
      if (!target.components.some((x) => x.name === c.name)) target.components.push(c)
  }

  const result: RolloutResult = { replaced: [], added: [], removed: [], unchanged: [] }
  const nextIds = new Set(target.components.flatMap((c) => c.instances.map((i) => i.id)))
  const gone = [...reconciler.instances.values()].filter((i) => !nextIds.has(i.id))
  const toReplace: { inst: Instance; spec: InstanceSpec; component: ComponentSpec }[] = []
  for (const c of target.components) {
    const before = current.components.find((x) => x.name === c.name)
    for (const spec of c.instances) {
      const inst = reconciler.instances.get(spec.id)
      if (!inst) continue
      const now = reconciler.desiredSpec(spec.id) ?? inst.spec
      const changed = !sameSpec(now, spec) || (before !== undefined && !sameComponent(before, c))
      if (changed || (options.all && inScope(c.name))) toReplace.push({ inst, spec, component: c })
      else result.unchanged.push(spec.id)
    }
  }
  say({
    phase: 'plan',
    message: `rollout: ${toReplace.length} to replace, ${gone.length} to remove, ${[...nextIds].filter((id) => !reconciler.instances.has(id)).length} to add`,
  })

  // Removed instances stop first (their ports may be reused by what is added).
  const goneIds = gone.map((i) => i.id)
  reconciler.retire(goneIds)
  await reconciler.whenGone(goneIds)
  for (const id of goneIds) {
    result.removed.push(id)
    say({ phase: 'removed', id, message: `${id} stopped and removed` })
  }
  const previous = reconciler.plan
  const addedIds = [...nextIds].filter((id) => !reconciler.instances.has(id))
  reconciler.replacePlan(target)
  for (const id of addedIds) {
    result.added.push(id)
    say({ phase: 'added', id, message: `${id} added; it starts once its dependencies are ready` })
  }

  const exclusive = options.exclusive ?? ((_c, fn) => fn())
  const done: { inst: Instance; old: InstanceSpec }[] = []
  const of = toReplace.length
  let n = 0
  for (const c of target.components) {
    const mine = toReplace.filter((r) => r.component === c)
    for (let b = 0; b < mine.length; b += c.rollout.maxUnavailable) {
      const batch = mine.slice(b, b + c.rollout.maxUnavailable)
      const outcomes = await Promise.allSettled(
        batch.map(async ({ inst, spec }) => {
          const pos = ++n
          const old = reconciler.desiredSpec(inst.id) ?? inst.spec
          done.push({ inst, old })
          await exclusive(c, () =>
            replace(reconciler, inst, spec, c.rollout, clock, (e) => say({ ...e, n: pos, of })),
          )
          result.replaced.push(inst.id)
        }),
      )
      const failure = outcomes.find((o) => o.status === 'rejected')
      if (failure) {
        const why = (failure.reason as Error).message
        say({ phase: 'failed', message: `rollout stopped: ${why}` })
        const undone = await rollBack(reconciler, done, clock, say, exclusive)
        // The plan is what runs: the previous definition of what was rolled back.
        reconciler.replacePlan(restore(target, previous, undone))
        const after = reconciler.shuttingDown
          ? 'nothing rolled back: the supervisor is shutting down'
          : `rolled back ${undone.length ? undone.join(', ') : 'nothing (same definition)'}`
        throw new TandemError('EROLLOUT', `${why}; ${after}`)
      }
    }
  }
  say({ phase: 'done', message: `rollout done: ${result.replaced.length} replaced` })
  return result
}

/**
 * Hands the instance its new definition (the reconciler drains, stops, redefines and starts it)
 * and waits until it is ready and up for minReadyMs.
 */
const replace = async (
  reconciler: Reconciler,
  inst: Instance,
  spec: InstanceSpec,
  r: ComponentSpec['rollout'],
  clock: Clock,
  say: (e: Omit<RolloutEvent, 'event' | 'elapsedMs'>) => void,
): Promise<void> => {
  const id = inst.id
  if (!reconciler.desired(id)) {
    // Stopped by an operator: it gets the new definition and stays stopped.
    reconciler.replaceInstance(id, spec)
    say({ phase: 'replaced', id, message: `${id} redefined (stopped by operator: not started)` })
    return
  }
  if (r.drainMs > 0 && inst.state === 'ready')
    say({ phase: 'draining', id, message: `${id} draining for ${r.drainMs} ms` })
  const generation = reconciler.generationOf(id) + 1
  const up = waitUp(reconciler, inst, generation, r, clock, say)
  reconciler.replaceInstance(id, spec)
  await up
  say({ phase: 'replaced', id, message: `${id} replaced: ready (pid ${inst.pid})` })
}

/**
 * Follows the replacement of an instance by its run of `generation`: resolves once that run is
 * ready and has stayed up minReadyMs; rejects when it exits or fails first, or is not there
 * progressDeadlineMs after the old run stopped (or, in a handover, after the new one started).
 */
const waitUp = (
  reconciler: Reconciler,
  inst: Instance,
  generation: number,
  r: ComponentSpec['rollout'],
  clock: Clock,
  say: (e: Omit<RolloutEvent, 'event' | 'elapsedMs'>) => void,
): Promise<void> =>
  new Promise((resolve, reject) => {
    const id = inst.id
    let cancelMinReady = () => {}
    let cancelDeadline = () => {}
    let armed = false
    const armDeadline = () => {
      armed = true
      cancelDeadline()
      cancelDeadline = clock.after(r.progressDeadlineMs, () =>
        end(
          new ReplaceFailed(
            `${id} was not ready within rollout.progressDeadlineMs ${r.progressDeadlineMs} ms (state ${inst.state}${inst.reason ? `: ${inst.reason}` : ''})`,
          ),
        ),
      )
    }
    const onShutdown = () =>
      end(new ReplaceFailed(`${id} was not up yet when the supervisor began shutting down`))
    const end = (err?: Error) => {
      cancelDeadline()
      cancelMinReady()
      reconciler.off('event', onEvent)
      reconciler.off('shutdown', onShutdown)
      if (err) reject(err)
      else resolve()
    }
    const onEvent = (e: InstanceEvent) => {
      if (e.id !== id) return
      if (inst.generation < generation) {
        // The old run: it drains, stops (or ends by itself); the deadline counts from then.
        if (e.event === 'stopping') say({ phase: 'stopping', id, message: `${id} stopping` })
        else if (e.event === 'stopped' || e.event === 'backoff' || e.event === 'failed')
          armDeadline()
        return
      }
      if (e.event === 'starting') {
        // A handover starts the new process while the old one serves on: the deadline counts
        // from now (there is no stop of the old run to count from).
        const handover = e.from === 'ready'
        say({
          phase: 'starting',
          id,
          message: `${id} starting with the new definition${handover ? ' (the old process serves until it is ready)' : ''}`,
        })
        if (!armed) armDeadline()
      } else if (e.event === 'ready') {
        if (r.minReadyMs <= 0) return end()
        cancelMinReady = clock.after(r.minReadyMs, () => end())
      } else if (e.event === 'exited' || e.event === 'failed') {
        const exit = e.exit ?? inst.lastExit
        const tail = e.stderrTail?.length ? `; stderr: ${stderrSummary(e.stderrTail)}` : ''
        end(
          new ReplaceFailed(
            `${id} ${e.event === 'failed' ? 'failed' : 'exited'} during the rollout: ${exit ? describeExit(exit) : (e.reason ?? '')}${tail}`,
          ),
        )
      }
    }
    reconciler.on('event', onEvent)
    reconciler.once('shutdown', onShutdown)
    if (reconciler.shuttingDown) return onShutdown()
    // Not running now: nothing to stop first.
    if (inst.state !== 'starting' && inst.state !== 'ready' && inst.state !== 'stopping')
      armDeadline()
  })

/** Puts the previous definitions back, newest first; returns the ids rolled back. */
const rollBack = async (
  reconciler: Reconciler,
  done: { inst: Instance; old: InstanceSpec }[],
  clock: Clock,
  say: (e: Omit<RolloutEvent, 'event' | 'elapsedMs'>) => void,
  exclusive: NonNullable<RolloutOptions['exclusive']>,
): Promise<string[]> => {
  const undone: string[] = []
  for (const { inst, old } of [...done].reverse()) {
    if (reconciler.shuttingDown) break // nothing starts any more: the next start uses the file
    const now = reconciler.desiredSpec(inst.id) ?? inst.spec
    if (sameSpec(now, old)) continue // same definition (new code in place): nothing to restore
    say({
      phase: 'rollback',
      id: inst.id,
      message: `${inst.id} rolling back to its previous definition`,
    })
    const component = reconciler.plan.components.find((c) => c.name === now.component)!
    try {
      await exclusive(component, () =>
        replace(reconciler, inst, old, component.rollout, clock, say),
      )
      undone.push(inst.id)
    } catch (err) {
      say({
        phase: 'failed',
        id: inst.id,
        message: `rollback of ${inst.id} failed too: ${(err as Error).message}`,
      })
      undone.push(`${inst.id} (not ready)`)
    }
  }
  return undone
}

/** `target` with the rolled-back components' definitions from `previous`. */
const restore = (target: Plan, previous: Plan, undone: string[]): Plan => ({
  ...target,
  components: target.components.map((c) =>
    undone.some((id) => id.startsWith(`${c.name}#`))
      ? (previous.components.find((p) => p.name === c.name) ?? c)
      : c,
  ),
})
