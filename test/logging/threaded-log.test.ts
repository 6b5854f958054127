// No ports: the log thread alone, with pipes fed from the test.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import type { PipeOutput } from '../../src/logging/pipe-output.js'
import { ThreadedLog } from '../../src/logging/threaded-log.js'
import { tempDir } from '../helpers/supervisor.js'

const LINE = 'x'.repeat(80)

/**
 * Feeds `lines` numbered lines (`<pipe> <seq> xxx`) into a pipe the way readPipe does: chunks
 * of `chunkLines` lines (the last cut anywhere, to straddle chunks), and while the log is
 * congested nothing more until it drains.
 */
const feed = (log: ThreadedLog, out: PipeOutput, name: string, lines: number, chunkLines: number) =>
  new Promise<void>((resolve) => {
    let seq = 0
    let carry = Buffer.alloc(0)
    const step = (): void => {
      while (seq < lines) {
        const n = Math.min(chunkLines, lines - seq)
        let text = ''
        for (let i = 0; i < n; i++) text += `${name} ${seq++} ${LINE}\n`
        const bytes = Buffer.concat([carry, Buffer.from(text)])
        // Keep a piece of the last line for the next chunk, as a pipe read can.
        const cut = seq < lines ? bytes.length - 7 : bytes.length
        carry = Buffer.from(bytes.subarray(cut))
        out.push(bytes.subarray(0, cut), 1_700_000_000_000)
        if (log.congested) return log.whenDrained(() => setImmediate(step))
      }
      out.end(1_700_000_000_000)
      resolve()
    }
    step()
  })

t.test(
  'every line of four fast pipes lands once and in order per pipe, under back-pressure',
  async (t) => {
    const dir = tempDir(t)
    const problems: string[] = []
    const log = new ThreadedLog(
      {
        level: 'info',
        dir,
        stdout: false,
        perInstance: false,
        maxLineBytes: 4096,
        rotate: { maxBytes: 0, keep: 0 },
      },
      { node: 'n1', onProblem: (m) => problems.push(m) },
    )
    const LINES = 60_000
    let sawCongested = false
    const watch = setInterval(() => (sawCongested ||= log.congested), 1)
    await Promise.all(
      ['a', 'b', 'c', 'd'].map((name, i) => {
        const out = log.pipe({
          component: name,
          instance: 0,
          port: 1000 + i,
          childPid: 10 + i,
          stream: 'out',
        })
        return feed(log, out, name, LINES, 1 + 97 * i)
      }),
    )
    clearInterval(watch)
    await log.close()
    t.same(problems, [])
    const next = new Map<string, number>()
    let bad = 0
    for (const record of readFileSync(join(dir, 'tandem.log'), 'utf8').split('\n')) {
      if (!record) continue
      const { msg, component } = JSON.parse(record) as { msg?: string; component?: string }
      if (!component || !msg) continue
      const [name, seq, rest] = msg.split(' ')
      if (name !== component || rest !== LINE || Number(seq) !== (next.get(name) ?? 0)) bad++
      next.set(name!, Number(seq) + 1)
    }
    t.equal(bad, 0, 'no line lost, duplicated, cut or out of order')
    t.same([...next.values()], [LINES, LINES, LINES, LINES])
    t.comment(`congested seen: ${sawCongested}`)
  },
)
