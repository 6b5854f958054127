import t from 'tap'
import {
  checkTransition,
  RUNNING_STATES,
  TRANSITIONS,
  type InstanceState,
} from '../../src/supervisor/instance-state.js'

const STATES: InstanceState[] = [
  'stopped',
  'starting',
  'ready',
  'stopping',
  'exited',
  'backoff',
  'failed',
]

t.test('has a row for every state and names only known states', async (t) => {
  t.same(Object.keys(TRANSITIONS).sort(), [...STATES].sort())
  for (const [from, tos] of Object.entries(TRANSITIONS)) {
    for (const to of tos) t.ok(STATES.includes(to), `${from} -> ${to} names a known state`)
  }
})

t.test('pins the table of legal moves', async (t) => {
  t.same(TRANSITIONS, {
    stopped: ['starting'],
    starting: ['ready', 'stopping', 'exited'],
    ready: ['stopping', 'exited', 'starting'],
    stopping: ['stopped', 'exited'],
    exited: ['backoff', 'failed', 'stopped'],
    backoff: ['starting', 'stopped'],
    failed: ['starting', 'stopped'],
  })
})

t.test('accepts every legal move', async (t) => {
  for (const [from, tos] of Object.entries(TRANSITIONS) as [
    InstanceState,
    readonly InstanceState[],
  ][]) {
    for (const to of tos)
      t.doesNotThrow(() => checkTransition('api#0', from, to), `${from} -> ${to}`)
  }
})

t.test('rejects every move not in the table, naming the instance and both states', async (t) => {
  for (const from of STATES) {
    for (const to of STATES) {
      if (TRANSITIONS[from].includes(to)) continue
      t.throws(
        () => checkTransition('api#2', from, to),
        { code: 'ECONTROL', message: `illegal transition of api#2: ${from} -> ${to}` },
        `${from} -> ${to}`,
      )
    }
  }
})

t.test('rejects the moves a bug would most likely make', async (t) => {
  const illegal: [InstanceState, InstanceState][] = [
    ['stopped', 'ready'], // ready without starting
    ['stopped', 'stopped'], // no self moves
    ['ready', 'ready'],
    // (ready -> starting is a handover's move: Instance.start refuses a ready instance.)
    ['ready', 'stopped'], // stopped without stopping
    ['starting', 'stopped'],
    ['failed', 'backoff'], // failed is given up
    ['backoff', 'ready'],
    ['exited', 'starting'], // restarts go through backoff
    ['stopping', 'ready'],
  ]
  for (const [from, to] of illegal) {
    const err = t.throws(() => checkTransition('gateway#1', from, to), `${from} -> ${to}`) as {
      code?: string
      message?: string
    }
    t.equal(err?.code, 'ECONTROL')
    t.match(err?.message, 'gateway#1')
    t.match(err?.message, `${from} -> ${to}`)
  }
})

t.test('lists starting, ready and stopping as running states', async (t) => {
  t.same([...RUNNING_STATES].sort(), ['ready', 'starting', 'stopping'])
})

t.test('can reach every state from stopped, and stopped from every state', async (t) => {
  const reach = (start: InstanceState, edges: (s: InstanceState) => readonly InstanceState[]) => {
    const seen = new Set<InstanceState>([start])
    const todo = [start]
    while (todo.length) {
      for (const n of edges(todo.pop()!)) {
        if (!seen.has(n)) {
          seen.add(n)
          todo.push(n)
        }
      }
    }
    return seen
  }
  t.same(
    [...reach('stopped', (s) => TRANSITIONS[s])].sort(),
    [...STATES].sort(),
    'every state reachable',
  )
  const into = (s: InstanceState) => STATES.filter((f) => TRANSITIONS[f].includes(s))
  t.same(
    [...reach('stopped', into)].sort(),
    [...STATES].sort(),
    'stopped reachable from every state',
  )
})
