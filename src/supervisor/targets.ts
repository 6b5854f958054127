import type { InstanceSpec } from '../config/plan.js'
import { TandemError } from '../errors.js'

/**
 * Resolves operator targets (`all`, `gateway`, `gateway#1`) to instance ids, in the order of
 * `instances`. Every unknown name or index is reported at once; nothing is done on a bad target.
 */
export const resolveTargets = (
  targets: readonly string[],
  instances: readonly InstanceSpec[],
): string[] => {
  if (targets.length === 0)
    throw new TandemError(
      'ETARGET',
      'expected at least one target: all, <component> or <component>#<index>',
    )
  const wanted = new Set<string>()
  const errors: string[] = []
  const components = [...new Set(instances.map((i) => i.component))]
  for (const t of targets) {
    if (t === 'all') {
      instances.forEach((i) => wanted.add(i.id))
      continue
    }
    const m = /^([^#]+)(?:#(\d+))?$/.exec(t)
    const of = m ? instances.filter((i) => i.component === m[1]) : []
    if (!m || of.length === 0) {
      errors.push(
        `unknown target "${t}": expected all, <component> or <component>#<index>, with a component among ${components.join(', ')}`,
      )
    } else if (m[2] === undefined) {
      of.forEach((i) => wanted.add(i.id))
    } else {
      const one = of.find((i) => i.index === Number(m[2]))
      if (one) wanted.add(one.id)
      else errors.push(`unknown target "${t}": ${m[1]} has instances #0 to #${of.length - 1}`)
    }
  }
  if (errors.length) throw new TandemError('ETARGET', errors.join('\n'))
  return instances.filter((i) => wanted.has(i.id)).map((i) => i.id)
}
