import t, { type Test } from 'tap'
import { ChildRecords, levelOf } from '../../src/logging/child-record.js'
import { RecordBuffer } from '../../src/logging/record-sink.js'

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

/**
 * encode() of `line` (bytes), checked byte for byte against record() of the decoded line (the
 * bytes, not their decoding: raw invalid UTF-8 would decode to the same text); as text.
 */
const encoded = (
  t: Test,
  line: Buffer,
  opts: { truncated?: boolean; time?: number; stream?: 'out' | 'err' } = {},
) => {
  const { truncated = false, time = TIME, stream = 'out' } = opts
  const records = new ChildRecords({ ...source, stream }, 99)
  const out = new RecordBuffer(16)
  // Inside a larger buffer, at an offset: as in a pipe's chunk.
  const padded = Buffer.concat([Buffer.from('junk'), line, Buffer.from('junk')])
  records.encode(padded, 4, 4 + line.length, truncated, time, out)
  const expected = records.record(line.toString('utf8'), truncated, time)
  t.equal(
    out.bytes.subarray(0, out.length).toString('hex'),
    Buffer.from(expected).toString('hex'),
    // Named by its hex: TAP output must not carry the line's control characters or U+2028.
    `the same bytes as record() of the decoded line, for line ${line.toString('hex')}`,
  )
  return out.bytes.toString('utf8', 0, out.length)
}

t.test('encode: a line copied byte by byte is the record JSON.stringify would make', async (t) => {
  const text = encoded(t, Buffer.from('hello world'))
  t.equal(
    text,
    '{"level":30,"time":1700000000123,"pid":99,"node":"n1","component":"gateway","instance":2,' +
      '"port":7556,"childPid":4242,"stream":"out","msg":"hello world"}\n',
    'fields in their order',
  )
  encoded(t, Buffer.from(''))
  encoded(t, Buffer.from('x'))
  encoded(t, Buffer.from('cut here'), { truncated: true })
  encoded(t, Buffer.from('on stderr'), { stream: 'err' })
  encoded(t, Buffer.from('a later millisecond'), { time: TIME + 1 })
})

t.test('encode: quotes, backslashes and every control character are escaped', async (t) => {
  encoded(t, Buffer.from('say "hi" \\ C:\\path\\ \\"'))
  const controls = Buffer.from(Array.from({ length: 0x20 }, (_, b) => b))
  const r = JSON.parse(encoded(t, controls)) as { msg: string }
  t.equal(r.msg, controls.toString('latin1'), 'they survive the round trip')
  encoded(t, Buffer.from('\u001b[31mred\u001b[0m\ttab\r\n'))
  encoded(t, Buffer.from([0x7f, 0x41]), { truncated: true }) // DEL is not escaped
})

t.test('encode: valid UTF-8 is copied as it is, invalid UTF-8 decoded as before', async (t) => {
  for (const s of ['ünïcödé', '— ✓ €', '😀 4 bytes', '\u2028\u2029', '\ufeffBOM', '"é"\\ü\n'])
    encoded(t, Buffer.from(s))
  const invalid = [
    [0x80], // a lone continuation byte
    [0x61, 0xc3], // a character cut short
    [0xe2, 0x82, 0x61], // a 3-byte character cut short inside the line
    [0xc0, 0xaf], // overlong '/'
    [0xed, 0xa0, 0x80], // an encoded UTF-16 surrogate
    [0xf4, 0x90, 0x80, 0x80], // above U+10FFFF
    [0xff, 0x22, 0x5c], // not UTF-8 at all, with a quote and a backslash
  ]
  for (const bytes of invalid) {
    const r = JSON.parse(encoded(t, Buffer.from(bytes))) as { msg: string }
    t.ok(r.msg.includes('\ufffd'), 'U+FFFD where the bytes are not UTF-8')
  }
})

t.test('encode: a JSON object line is merged, as record() merges it', async (t) => {
  const pino = Buffer.from(JSON.stringify({ level: 50, time: 1, msg: 'db "down"', req: { id: 3 } }))
  t.match(JSON.parse(encoded(t, pino)), {
    level: 50,
    childTime: 1,
    msg: 'db "down"',
    req: { id: 3 },
  })
  encoded(t, Buffer.from('{"msg":"ünï"}'))
  encoded(t, Buffer.from('{not json}'))
  encoded(t, Buffer.from('{"a":1}'), { truncated: true })
  encoded(t, Buffer.from('{}'))
  encoded(t, Buffer.from('{'))
})

t.test('encode: random lines give the same records as record() of the decoded line', async (t) => {
  // A fixed seed: the same lines every run.
  let seed = 42
  const random = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff
    return seed / 0x80000000
  }
  const pieces = [
    [0x22],
    [0x5c],
    [0x0a],
    [0x09],
    [0x01],
    [0x7b],
    [0x7d],
    [0xc3, 0xa9],
    [0xe2, 0x9c, 0x93],
    [0xf0, 0x9f, 0x98, 0x80],
    [0xc3],
    [0x80],
    [0xff],
  ]
  let mismatches = 0
  for (let n = 0; n < 2000; n++) {
    const bytes: number[] = []
    const length = Math.floor(random() * 40)
    for (let i = 0; i < length; i++) {
      if (random() < 0.7) bytes.push(0x20 + Math.floor(random() * 0x5f))
      else bytes.push(...pieces[Math.floor(random() * pieces.length)]!)
    }
    const line = Buffer.from(bytes)
    const records = new ChildRecords(source, 99)
    const out = new RecordBuffer(16)
    records.encode(line, 0, line.length, false, TIME, out)
    const expected = Buffer.from(records.record(line.toString('utf8'), false, TIME))
    if (!out.bytes.subarray(0, out.length).equals(expected)) mismatches++
  }
  t.equal(mismatches, 0)
})

t.test(
  'encode: each byte value at each place of a plain line, at each alignment, gives the record of the decoded line',
  async (t) => {
    // The fast path looks at four bytes a turn: a byte that needs escaping or checking must be
    // found in any lane of a word and in the bytes after the last word.
    const records = new ChildRecords(source, 99)
    const out = new RecordBuffer(16)
    let mismatches = 0
    const first: string[] = []
    for (let value = 0; value < 256; value++) {
      if (value === 0x0a) continue
      for (let length = 1; length <= 11; length++)
        for (let place = 0; place < length; place++)
          for (let offset = 0; offset < 4; offset++) {
            // The line sits inside a larger buffer, at `offset`, between plain bytes.
            const buffer = Buffer.alloc(offset + length + 5, 0x61)
            buffer[offset + place] = value
            records.encode(buffer, offset, offset + length, false, TIME, out)
            const line = buffer.subarray(offset, offset + length)
            const expected = Buffer.from(records.record(line.toString('utf8'), false, TIME))
            if (!out.bytes.subarray(0, out.length).equals(expected)) {
              mismatches++
              if (first.length < 3) first.push(`${value} at ${place} of ${length} (+${offset})`)
            }
          }
    }
    t.equal(mismatches, 0, first.join(', '))
  },
)
