import t from 'tap'
import type { InstanceSpec } from '../../src/config/plan.js'
import { resolveTargets } from '../../src/supervisor/targets.js'

/** Just the fields resolveTargets reads; the rest of an InstanceSpec does not matter here. */
const instance = (component: string, index: number): InstanceSpec =>
  ({ component, index, id: `${component}#${index}` }) as InstanceSpec

// In plan order: dependencies first.
const instances: InstanceSpec[] = [
  instance('discovery', 0),
  instance('gateway', 0),
  instance('gateway', 1),
  instance('gateway', 2),
  instance('api', 0),
  instance('api', 1),
]
const ALL = ['discovery#0', 'gateway#0', 'gateway#1', 'gateway#2', 'api#0', 'api#1']

/** The ETARGET error resolveTargets throws, or a failed assertion. */
const targetError = (t: Tap, targets: string[]): string => {
  try {
    resolveTargets(targets, instances)
  } catch (err) {
    t.equal((err as { code?: unknown }).code, 'ETARGET', 'code is ETARGET')
    return (err as Error).message
  }
  t.fail(`accepted ${JSON.stringify(targets)}`)
  return ''
}
type Tap = { equal: typeof t.equal; fail: typeof t.fail }

t.test('resolves all to every instance in plan order', async (t) => {
  t.same(resolveTargets(['all'], instances), ALL)
})

t.test('resolves a component to all its instances', async (t) => {
  t.same(resolveTargets(['gateway'], instances), ['gateway#0', 'gateway#1', 'gateway#2'])
  t.same(resolveTargets(['discovery'], instances), ['discovery#0'])
})

t.test('resolves component#index to that one instance', async (t) => {
  t.same(resolveTargets(['gateway#1'], instances), ['gateway#1'])
  t.same(resolveTargets(['api#0'], instances), ['api#0'])
})

t.test('returns instances in plan order, whatever the order of the targets', async (t) => {
  t.same(resolveTargets(['api#1', 'gateway#2', 'discovery'], instances), [
    'discovery#0',
    'gateway#2',
    'api#1',
  ])
  t.same(resolveTargets(['api', 'gateway#0'], instances), ['gateway#0', 'api#0', 'api#1'])
})

t.test('collapses duplicate and overlapping targets', async (t) => {
  t.same(resolveTargets(['gateway#1', 'gateway#1'], instances), ['gateway#1'])
  t.same(resolveTargets(['gateway', 'gateway#1', 'gateway'], instances), [
    'gateway#0',
    'gateway#1',
    'gateway#2',
  ])
  t.same(resolveTargets(['all', 'api', 'gateway#2'], instances), ALL)
})

t.test('rejects an unknown component, listing the known components', async (t) => {
  const message = targetError(t, ['gatewy'])
  t.match(message, 'unknown target "gatewy"')
  t.match(message, 'discovery, gateway, api')
})

t.test('rejects an instance of an unknown component', async (t) => {
  const message = targetError(t, ['nope#0'])
  t.match(message, 'unknown target "nope#0"')
  t.match(message, 'discovery, gateway, api')
})

t.test('rejects an index out of range, naming the range', async (t) => {
  const message = targetError(t, ['gateway#3'])
  t.match(message, 'unknown target "gateway#3"')
  t.match(message, 'gateway has instances #0 to #2')
  t.match(targetError(t, ['discovery#1']), 'discovery has instances #0 to #0')
})

t.test('rejects malformed targets', async (t) => {
  for (const bad of ['gateway#', 'gateway#x', 'gateway#-1', '#1', 'gateway#1#2', '']) {
    t.match(targetError(t, [bad]), `unknown target ${JSON.stringify(bad)}`, JSON.stringify(bad))
  }
})

t.test('reports several bad targets together, and resolves nothing', async (t) => {
  const message = targetError(t, ['gateway#1', 'nope', 'api#9', 'gateway', 'other#0'])
  const lines = message.split('\n')
  t.equal(lines.length, 3, 'one line per bad target')
  t.match(lines[0], 'unknown target "nope"')
  t.match(lines[1], 'api has instances #0 to #1')
  t.match(lines[2], 'unknown target "other#0"')
})

t.test('rejects an empty list of targets', async (t) => {
  const message = targetError(t, [])
  t.match(message, 'at least one target')
})

t.test('is case sensitive about names and all', async (t) => {
  t.match(targetError(t, ['Gateway']), 'unknown target "Gateway"')
  t.match(targetError(t, ['ALL']), 'unknown target "ALL"')
})
