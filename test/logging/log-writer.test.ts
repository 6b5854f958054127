import {
  existsSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import * as fs from 'node:fs'
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

t.test(
  'many blocks: strings, bytes and records written in place keep their order, across rotations',
  async (t) => {
    const dir = tempDir(t)
    const w = new LogWriter({
      path: join(dir, 'tandem.log'),
      rotate: { maxBytes: 3_000_000, keep: 100 },
      highWaterBytes: 4 * 1024 * 1024,
    })
    const LINES = 120_000 // about 7 MB: several 1 MiB blocks
    for (let i = 0; i < LINES; i++) {
      const line = `line ${i} ${'ü'.repeat(i % 7)}${'x'.repeat(40)}\n`
      if (i % 3 === 0) w.write(line)
      else if (i % 3 === 1) {
        const bytes = Buffer.from(`..${line}..`)
        w.writeBytes(bytes, 2, bytes.length - 2)
      } else {
        const buf = w.reserve(line.length * 3)
        w.commit(buf.write(line, w.offset))
      }
      if (w.congested) await new Promise<void>((r) => w.once('drain', () => r()))
    }
    await w.close()
    const lines = readAll(dir)
    t.same(seqs(lines), range(0, LINES))
    t.ok(
      lines.every((l, i) => l.endsWith(`${'ü'.repeat(i % 7)}${'x'.repeat(40)}`)),
      'every line whole',
    )
    t.ok(readdirSync(dir).length >= 2, 'rotated')
  },
)

t.test('a line larger than a block is written whole', async (t) => {
  const dir = tempDir(t)
  const w = new LogWriter({ path: join(dir, 'tandem.log') })
  const big = `big ${'y'.repeat(3 * 1024 * 1024)}\n`
  w.write('before\n')
  w.write(big)
  w.write('after\n')
  await w.close()
  t.equal(readFileSync(join(dir, 'tandem.log'), 'utf8'), `before\n${big}after\n`)
})

t.test('a block is reused only once every byte of it is written', async (t) => {
  // Writes are held until the test lets them run, and take their bytes only then, as the
  // kernel would: a block reused too early shows as lines overwritten in the file.
  const held: (() => void)[] = []
  let holding = true
  const { LogWriter: HeldWriter } = await t.mockImport<
    typeof import('../../src/logging/log-writer.js')
  >('../../src/logging/log-writer.js', {
    'node:fs': {
      ...fs,
      write: (
        fd: number,
        buf: Buffer,
        offset: number,
        length: number,
        position: null,
        cb: (err: NodeJS.ErrnoException | null, n: number) => void,
      ) => {
        const run = () => fs.write(fd, Buffer.from(buf.subarray(offset, offset + length)), cb)
        if (holding) held.push(run)
        else run()
      },
    },
  })
  const release = async () => {
    held.shift()!()
    await waitUntil('the write to complete', () => held.length > 0)
  }
  const dir = tempDir(t)
  const w = new HeldWriter({
    path: join(dir, 'tandem.log'),
    rotate: { maxBytes: 1_500_000, keep: 9 },
  })
  const lines = numbered(0, 100_000) // 48 bytes each: 4.8 MB
  let next = 0
  const writeMB = (mb: number) => {
    const end = Math.min(lines.length, next + Math.ceil((mb * 1024 * 1024) / 48))
    while (next < end) w.write(lines[next++]!)
  }
  w.write(lines[next++]!) // written at once: the start of the first (small) block
  writeMB(1.1) // the rest of that block, a full 1 MiB one, and part of the next one, C
  await release() // the first line; the rest of the first block goes next
  await release() // the rest of the first block; the full 1 MiB one goes next
  await release() // that one (its memory is free now); the start of C goes next
  writeMB(1.1) // C fills up; its rest waits behind the write of its start; more blocks
  await release() // the start of C: its memory is not free, its rest goes next
  writeMB(1.1) // new blocks, while the rest of C is being written: C must not be one of them
  while (next < lines.length) {
    writeMB(0.5)
    await release()
  }
  holding = false
  held.splice(0).forEach((run) => run())
  await w.close()
  t.same(seqs(readAll(dir)), range(0, lines.length), 'every line once, in order, none overwritten')
  t.ok(readdirSync(dir).length >= 2, 'rotated, cutting a block')
})

t.test('lines queued by a drain listener at once are written once, in order', async (t) => {
  const dir = tempDir(t)
  const w = new LogWriter({ path: join(dir, 'tandem.log'), highWaterBytes: 64 * 1024 })
  const lines = numbered(0, 40_000)
  let next = 0
  // A producer like the log thread: writes until congested, and on 'drain' at once again.
  const produce = (): void => {
    while (next < lines.length) if (!w.write(lines[next++]!)) return
  }
  w.on('drain', produce)
  produce()
  await waitUntil('every line handed to the writer', () => next === lines.length)
  await w.close()
  t.same(seqs(readAll(dir)), range(0, 40_000))
})
