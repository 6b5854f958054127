import {
  existsSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { LogWriter } from '../../src/logging/log-writer.js'
import { tempDir, waitUntil } from '../helpers/supervisor.js'

const numbered = (from: number, to: number) =>
  Array.from({ length: to - from }, (_, i) => `line ${from + i} ${'x'.repeat(40)}\n`)

/** The lines of tandem.log.N ... tandem.log.1, tandem.log: oldest first. */
const readAll = (dir: string): string[] => {
  const rotated = readdirSync(dir)
    .map((f) => /^tandem\.log\.(\d+)$/.exec(f))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => b - a)
  return [...rotated.map((n) => `tandem.log.${n}`), 'tandem.log']
    .filter((f) => existsSync(join(dir, f)))
    .flatMap((f) => readFileSync(join(dir, f), 'utf8').split('\n').slice(0, -1))
}
const seqs = (lines: string[]) => lines.map((l) => Number(l.split(' ')[1]))
const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i)

t.test('writes every line in order, rotating by size with none lost or doubled', async (t) => {
  const dir = tempDir(t)
  const w = new LogWriter({
    path: join(dir, 'tandem.log'),
    rotate: { maxBytes: 10_000, keep: 100 },
  })
  for (const line of numbered(0, 3000)) w.write(line)
  await w.flush()
  for (const line of numbered(3000, 5000)) w.write(line)
  await w.close()
  t.same(seqs(readAll(dir)), range(0, 5000))
  const rotated = readdirSync(dir).filter((f) => f !== 'tandem.log')
  t.ok(rotated.length >= 10, `${rotated.length} rotated files`)
  for (const f of rotated) {
    const size = statSync(join(dir, f)).size
    t.ok(size >= 10_000 && size < 10_000 + 50, `${f}: ${size} bytes, rotated at maxBytes`)
  }
})

t.test('keeps only `keep` rotated files, the newest', async (t) => {
  const dir = tempDir(t)
  const w = new LogWriter({ path: join(dir, 'tandem.log'), rotate: { maxBytes: 2000, keep: 2 } })
  for (const line of numbered(0, 1000)) {
    w.write(line)
    await w.flush() // one write at a time: rotation points are exact
  }
  await w.close()
  t.same(readdirSync(dir).sort(), ['tandem.log', 'tandem.log.1', 'tandem.log.2'])
  const kept = seqs(readAll(dir))
  t.same(kept, range(1000 - kept.length, 1000), 'the newest lines, contiguous')
})

t.test('reopen after an external rename (logrotate without copytruncate)', async (t) => {
  const dir = tempDir(t)
  const path = join(dir, 'tandem.log')
  const w = new LogWriter({ path })
  for (const line of numbered(0, 100)) w.write(line)
  await w.flush()
  renameSync(path, join(dir, 'tandem.log-20261122'))
  w.write(numbered(100, 101)[0]!) // still the renamed file: its fd is open
  w.reopen()
  for (const line of numbered(101, 200)) w.write(line)
  await w.close()
  t.same(
    seqs(readFileSync(join(dir, 'tandem.log-20261122'), 'utf8').split('\n').slice(0, -1)),
    range(0, 101),
  )
  t.same(seqs(readFileSync(path, 'utf8').split('\n').slice(0, -1)), range(101, 200))
})

t.test(
  'an unwritable destination: lines kept, not congested, written when it recovers',
  async (t) => {
    const dir = tempDir(t)
    const blocker = join(dir, 'logs')
    writeFileSync(blocker, 'a file where the log directory should be')
    const problems: string[] = []
    const w = new LogWriter({
      path: join(blocker, 'tandem.log'),
      retryMs: 20,
      highWaterBytes: 100,
      onProblem: (m) => problems.push(m),
    })
    t.match(w.status(), {
      path: join(blocker, 'tandem.log'),
      error: /ENOTDIR|EEXIST/,
      droppedLines: 0,
    })
    t.match(problems[0], /^cannot write .*tandem\.log: .*children keep running/)
    for (const line of numbered(0, 500))
      t.ok(w.write(line) || !w.congested, 'never congested while failing')
    t.notOk(w.congested)
    await w.flush() // resolves at once while failing: a shutdown must not hang on a dead disk
    rmSync(blocker)
    await waitUntil('writing resumes', () => problems.length === 2)
    t.match(problems[1], /^writing .*tandem\.log again after \d+ s of ".*"; no line lost$/)
    t.notOk(w.status().error)
    await w.close()
    t.same(
      seqs(readFileSync(join(blocker, 'tandem.log'), 'utf8').split('\n').slice(0, -1)),
      range(0, 500),
    )
  },
)

t.test('past maxBufferBytes while failing, lines are dropped and counted, then said', async (t) => {
  const dir = tempDir(t)
  const blocker = join(dir, 'logs')
  writeFileSync(blocker, '')
  const problems: string[] = []
  const w = new LogWriter({
    path: join(blocker, 'tandem.log'),
    retryMs: 20,
    maxBufferBytes: 4800,
    onProblem: (m) => problems.push(m),
  })
  let recovered: number | undefined
  w.once('recovered', (dropped) => (recovered = dropped))
  const lines = numbered(0, 200)
  for (const line of lines) w.write(line)
  let fit = 0
  for (let bytes = 0; bytes + lines[fit]!.length <= 4800;) bytes += lines[fit++]!.length
  t.equal(w.status().droppedLines, 200 - fit)
  rmSync(blocker)
  // The retry timer is unref'd (it must not keep a supervisor alive): wait with a ref'd one.
  t.equal(await waitUntil('recovery', () => recovered), 200 - fit)
  t.match(problems[1], new RegExp(`; ${200 - fit} lines were dropped meanwhile$`))
  await w.close()
  t.same(
    seqs(readFileSync(join(blocker, 'tandem.log'), 'utf8').split('\n').slice(0, -1)),
    range(0, fit),
  )
})

t.test('congested above highWaterBytes until it drains', async (t) => {
  const dir = tempDir(t)
  const w = new LogWriter({ path: join(dir, 'tandem.log'), highWaterBytes: 2000 })
  const results = numbered(0, 200).map((l) => w.write(l))
  t.equal(results[0], true)
  t.equal(results.at(-1), false, 'write says stop')
  t.ok(w.congested)
  await new Promise<void>((r) => w.once('drain', () => r()))
  t.notOk(w.congested)
  await w.close()
  t.same(
    seqs(readFileSync(join(dir, 'tandem.log'), 'utf8').split('\n').slice(0, -1)),
    range(0, 200),
  )
})
