// `/leader` answers 200 only while the node's active-only children serve: the rule, as a pure
// function over instance states.
import t from 'tap'
import { leaderServing } from '../../src/ha/ha-node.js'

type I = Parameters<typeof leaderServing>[0][number]
const inst = (
  component: string,
  index: number,
  state: I['state'],
  activeEpoch: number | undefined,
  runOn: 'active' | 'all' = 'active',
  completed = false,
): I =>
  ({
    id: `${component}#${index}`,
    state,
    activeEpoch,
    completed,
    spec: { component, runOn },
  }) as unknown as I

const all = () => true

t.test('serving: every wanted active-only instance ready and active in this epoch', async (t) => {
  t.same(
    leaderServing(
      [inst('api', 0, 'ready', 7), inst('web', 0, 'starting', undefined, 'all')],
      all,
      7,
    ),
    {
      serving: true,
    },
  )
  t.same(leaderServing([], all, 7), { serving: true }, 'no active-only component: the lease alone')
})

t.test('not serving, naming what is missing', async (t) => {
  t.same(leaderServing([inst('api', 0, 'starting', 7)], all, 7), {
    serving: false,
    missing: ['api#0'],
  })
  t.same(
    leaderServing([inst('api', 0, 'ready', undefined), inst('api', 1, 'ready', 6)], all, 7),
    { serving: false, missing: ['api#0', 'api#1'] },
    'a hot standby not yet activated, and one still active in an older epoch',
  )
  t.same(leaderServing([inst('api', 0, 'backoff', 7)], all, 7), {
    serving: false,
    missing: ['api#0'],
  })
})

t.test('failed, completed and unwanted instances', async (t) => {
  t.same(
    leaderServing([inst('api', 0, 'failed', undefined), inst('api', 1, 'ready', 7)], all, 7),
    { serving: true },
    'one that gave up does not hold back the others',
  )
  t.same(leaderServing([inst('api', 0, 'failed', undefined)], all, 7), {
    serving: false,
    missing: ['api (every instance failed)'],
  })
  t.same(
    leaderServing([inst('migrate', 0, 'stopped', undefined, 'active', true)], all, 7),
    { serving: true },
    'a one-shot that completed is done, not down',
  )
  t.same(
    leaderServing([inst('api', 0, 'stopped', undefined)], (id) => id !== 'api#0', 7),
    { serving: true },
    'stopped by an operator: not wanted',
  )
})
