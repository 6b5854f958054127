import t from 'tap'
import { ChildRecords, levelOf } from '../../src/logging/child-record.js'

const source = {
  node: 'n1',
  component: 'gateway',
  instance: 2,
  port: 7556,
  childPid: 4242,
  stream: 'out' as const,
}
const ours = { node: 'n1', component: 'gateway', instance: 2, port: 7556, childPid: 4242 }
const TIME = 1_700_000_000_123

const record = (line: string, stream: 'out' | 'err' = 'out', truncated = false) => {
  const text = new ChildRecords({ ...source, stream }, 99).record(line, truncated, TIME)
  t.ok(text.endsWith('}\n'), 'one line')
  t.notOk(text.slice(0, -1).includes('\n'), 'no newline inside')
  return JSON.parse(text) as Record<string, unknown>
}

t.test('a plain line: info on stdout, warn on stderr, quoted as msg', async (t) => {
  t.same(record('hello "world"'), {
    level: 30,
    time: TIME,
    pid: 99,
    ...ours,
    stream: 'out',
    msg: 'hello "world"',
  })
  t.same(record('oops', 'err'), {
    level: 40,
    time: TIME,
    pid: 99,
    ...ours,
    stream: 'err',
    msg: 'oops',
  })
  t.match(record('cut', 'out', true), { msg: 'cut', truncated: true })
  t.match(
    record('\u0000\u001b[31mred\u001b[0m'),
    { msg: '\u0000\u001b[31mred\u001b[0m' },
    'control characters survive',
  )
})

t.test('a pino line is merged: its level, msg and fields kept, ours added', async (t) => {
  const r = record(
    JSON.stringify({ level: 50, time: 1, pid: 7, hostname: 'h', msg: 'db down', req: { id: 3 } }),
  )
  t.same(r, {
    level: 50,
    time: TIME,
    pid: 7,
    hostname: 'h',
    req: { id: 3 },
    childTime: 1,
    ...ours,
    stream: 'out',
    msg: 'db down',
  })
})

t.test('logback and bunyan style records', async (t) => {
  t.match(
    record(
      JSON.stringify({
        '@timestamp': '2026-11-22T10:00:00Z',
        level: 'WARN',
        message: 'slow',
        logger_name: 'a.B',
      }),
    ),
    {
      level: 40,
      childLevel: 'WARN',
      msg: 'slow',
      logger_name: 'a.B',
      '@timestamp': '2026-11-22T10:00:00Z',
    },
  )
  t.match(
    record(
      JSON.stringify({ v: 0, level: 30, name: 'app', msg: 'hi', time: '2026-11-22T10:00:00Z' }),
    ),
    {
      level: 30,
      name: 'app',
      msg: 'hi',
      childTime: '2026-11-22T10:00:00Z',
      time: TIME,
    },
  )
  t.match(
    record(JSON.stringify({ level: 'nonsense', msg: 'x' }), 'err'),
    { level: 40, childLevel: 'nonsense' },
    'an unknown level falls back to the stream default',
  )
  t.match(record(JSON.stringify({ msg: 'a', message: 'b' })), { msg: 'a', message: 'b' })
})

t.test('our fields win over a child field of the same name', async (t) => {
  t.match(record(JSON.stringify({ component: 'liar', instance: 9, stream: 'x', msg: 'm' })), {
    component: 'gateway',
    instance: 2,
    stream: 'out',
  })
})

t.test('anything else that looks like JSON is quoted', async (t) => {
  for (const line of ['{not json}', '{"a":1', '[1,2]', '{"a":1} trailing', '{}x']) {
    t.equal(record(line).msg, line, line)
  }
  t.match(
    record('{"a":1}', 'out', true),
    { msg: '{"a":1}', truncated: true },
    'a cut line is never parsed',
  )
  t.same(
    record('{}'),
    { level: 30, time: TIME, pid: 99, ...ours, stream: 'out', msg: '' },
    'an empty object merges',
  )
})

t.test("levelOf maps other loggers' names to pino numbers", async (t) => {
  t.equal(levelOf('warning'), 40)
  t.equal(levelOf('SEVERE'), 50)
  t.equal(levelOf('critical'), 60)
  t.equal(levelOf(20), 20)
  t.equal(levelOf(Number.NaN), undefined)
  t.equal(levelOf({}), undefined)
})

t.test('a port-less instance has port null', async (t) => {
  const text = new ChildRecords({ ...source, port: undefined }, 1).record('x', false, TIME)
  t.match(JSON.parse(text), { port: null })
})
