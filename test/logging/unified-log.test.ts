import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { LineSplitter } from '../../src/logging/line-splitter.js'
import { UnifiedLog } from '../../src/logging/unified-log.js'
import { tempDir } from '../helpers/supervisor.js'

const TIME = 1_700_000_000_123

/** A child's output, chunked as a pipe might deliver it. */
const output = Buffer.concat([
  Buffer.from('plain line\r\n'),
  Buffer.from('say "hi" \\ \t\u001b[1mbold\u001b[0m\n'),
  Buffer.from('ünïcödé — ✓ 😀\n'),
  Buffer.from('not UTF-8: '),
  Buffer.from([0xff, 0xc3, 0x0a]),
  Buffer.from(`${JSON.stringify({ level: 'warn', msg: 'from logback', n: 1 })}\n`),
  Buffer.from(`long ${'ü'.repeat(400)}\n`),
  Buffer.from('last line, no newline'),
])

const expected = [
  { msg: 'plain line' },
  { msg: 'say "hi" \\ \t\u001b[1mbold\u001b[0m' },
  { msg: 'ünïcödé — ✓ 😀' },
  { msg: 'not UTF-8: \ufffd\ufffd' },
  { level: 40, childLevel: 'warn', msg: 'from logback', n: 1 },
  // 256 bytes: "long " and 125 ü (2 bytes each), the 126th not cut in half.
  { msg: `long ${'ü'.repeat(125)}`, truncated: true },
  { msg: 'last line, no newline' },
]

/** Runs `output` in chunks of `size` bytes through a splitter into a unified log; its records. */
const run = async (dir: string, size: number, perInstance: boolean) => {
  const log = new UnifiedLog(
    {
      level: 'info',
      dir,
      stdout: false,
      perInstance,
      maxLineBytes: 256,
      rotate: { maxBytes: 0, keep: 0 },
    },
    { node: 'n1', onProblem: (m) => t.fail(m) },
  )
  const pipe = log.pipe({
    component: 'web',
    instance: 0,
    port: 8080,
    childPid: 4242,
    stream: 'out',
  })
  const splitter = new LineSplitter(256, (bytes, start, end, truncated) =>
    log.childLine(pipe, bytes, start, end, truncated, TIME),
  )
  for (let i = 0; i < output.length; i += size) splitter.push(output.subarray(i, i + size))
  splitter.end()
  await log.close()
  const read = (file: string) =>
    readFileSync(join(dir, file), 'utf8')
      .split('\n')
      .slice(0, -1)
      .map((l) => JSON.parse(l) as Record<string, unknown>)
  return { file: read('tandem.log'), own: perInstance ? read('web.0.log') : undefined }
}

t.test(
  'child lines become the same records in every chunking, in the file alone or with a per-instance file',
  async (t) => {
    for (const size of [1, 2, 3, 5, 7, 64, 1000]) {
      const alone = await run(tempDir(t), size, false)
      t.match(alone.file, expected, `chunks of ${size}: the file alone`)
      t.equal(alone.file.length, expected.length)
      t.match(alone.file[0], {
        level: 30,
        time: TIME,
        node: 'n1',
        component: 'web',
        instance: 0,
        port: 8080,
        childPid: 4242,
        stream: 'out',
      })
      const both = await run(tempDir(t), size, true)
      t.same(both.file, alone.file, `chunks of ${size}: the same records with a per-instance file`)
      t.same(both.own, alone.file, 'and the per-instance file has them too')
    }
  },
)
