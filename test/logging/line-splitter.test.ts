import t from 'tap'
import { LineSplitter } from '../../src/logging/line-splitter.js'

const split = (chunks: (string | Buffer)[], max = 64 * 1024, end = true) => {
  const out: [string, boolean][] = []
  const s = new LineSplitter(max, (bytes, start, end, truncated) =>
    out.push([bytes.toString('utf8', start, end), truncated]),
  )
  for (const c of chunks) s.push(Buffer.isBuffer(c) ? c : Buffer.from(c))
  if (end) s.end()
  return out
}

t.test(
  'joins lines split across chunks at every possible boundary, multi-byte characters too',
  async (t) => {
    const text = Buffer.from('first line\nsecond — ünïcödé ✓ line\n\nlast 😀 line\n')
    const expected = [
      ['first line', false],
      ['second — ünïcödé ✓ line', false],
      ['', false],
      ['last 😀 line', false],
    ]
    for (let i = 0; i <= text.length; i++) {
      for (let j = i; j <= text.length; j += 7) {
        t.same(
          split([text.subarray(0, i), text.subarray(i, j), text.subarray(j)]),
          expected,
          `cut at ${i}, ${j}`,
        )
      }
    }
    // One byte at a time.
    t.same(split([...text].map((b) => Buffer.from([b]))), expected)
  },
)

t.test('a last line without a newline is emitted at end, and only then', async (t) => {
  t.same(split(['one\ntwo'], undefined, false), [['one', false]])
  t.same(split(['one\ntwo']), [
    ['one', false],
    ['two', false],
  ])
  t.same(split([]), [], 'nothing at all: no line')
})

t.test('CRLF line ends lose their CR; a lone CR inside a line stays', async (t) => {
  t.same(split(['a\r\nb\r', '\nc\rd\n']), [
    ['a', false],
    ['b', false],
    ['c\rd', false],
  ])
})

t.test('a line longer than maxLineBytes is cut, marked, and the rest of it dropped', async (t) => {
  t.same(split(['0123456789abcdef\nok\n'], 10), [
    ['0123456789', true],
    ['ok', false],
  ])
  t.same(
    split(['01234', '56789', 'abc', 'def\nok\n'], 10),
    [
      ['0123456789', true],
      ['ok', false],
    ],
    'across chunks',
  )
  t.same(split(['0123456789\n'], 10), [['0123456789', false]], 'exactly the limit is not cut')
  t.same(split(['0123456789abc'], 10), [['0123456789', true]], 'cut last line without newline')
})

t.test('a cut never splits a UTF-8 character', async (t) => {
  // 'ü' is 2 bytes: a limit of 10 falls inside the 5th one; the cut backs off to 8 bytes.
  t.same(split(['üüüüüü\n'], 9), [['üüüü', true]])
  const [[line]] = split(['😀😀😀\n'], 6) as [[string, boolean]]
  t.equal(line, '😀', 'a 4-byte character is kept whole or not at all')
})

t.test('an endless line holds at most maxLineBytes', async (t) => {
  const lines: string[] = []
  const s = new LineSplitter(1024, (bytes, start, end) =>
    lines.push(bytes.toString('utf8', start, end)),
  )
  const chunk = Buffer.alloc(64 * 1024, 'x')
  for (let i = 0; i < 200; i++) s.push(chunk) // 12.5 MiB without a newline
  t.same(lines, [], 'nothing emitted before the newline')
  s.push(Buffer.from('tail\nnext\n'))
  t.same(
    lines.map((l) => l.length),
    [1024, 4],
  )
})
