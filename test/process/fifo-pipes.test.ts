// FifoPipes and spawnChild with them: children's stdout and stderr are real pipes (not Node's
// socketpairs), every byte arrives in order and the end is seen; the batch made ahead refills in
// the background; with no mkfifo, children get socketpairs as before and the problem is
// reported once; no fd of ours is left open after a child's output ends; close() removes the
// directory, and a dead supervisor's directory is removed by the next one. Real processes, real
// files; no ports.
import { spawn } from 'node:child_process'
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readSync,
  rmSync,
  writeSync,
} from 'node:fs'
import { fstatSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import t, { type Test } from 'tap'
import { readPipe, type LogFlow } from '../../src/logging/read-pipe.js'
import { FifoPipes } from '../../src/process/fifo-pipes.js'
import { spawnChild, type ChildHandle } from '../../src/process/spawn-child.js'
import { killGroup } from '../helpers/supervisor.js'

const until = async (what: string, cond: () => boolean, ms = 10_000): Promise<void> => {
  const deadline = Date.now() + ms
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

const parentDir = (t: Test): string => {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-fifo-test-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

const collect = (stream: Readable): Promise<string> =>
  new Promise((resolve, reject) => {
    let text = ''
    stream.on('data', (b: Buffer) => (text += b.toString()))
    stream.once('error', reject)
    stream.once('end', () => resolve(text))
  })

/**
 * A child that says what its fd 1 and 2 are, then writes `n` numbered lines, one per write().
 * A shell, not Node: tap puts its loader into every Node child (whatever the env), and that makes
 * the child's stdout non-blocking, so its writes would fail with EAGAIN whenever a pipe is full.
 */
const CHILD = `
kind() { if [ -p /proc/$$/fd/$1 ]; then echo fifo; elif [ -S /proc/$$/fd/$1 ]; then echo socket; else echo other; fi; }
echo "stderr $(kind 2)" >&2
echo "stdout $(kind 1)"
i=0
while [ $i -lt "$0" ]; do echo "line $i"; i=$((i + 1)); done
`

const childEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin' }

const run = (t: Test, pipes: FifoPipes | undefined, n: number): ChildHandle => {
  const child = spawnChild({
    argv: ['/bin/sh', '-c', CHILD, String(n)],
    cwd: process.cwd(),
    env: childEnv,
    ipc: false,
    parentDeathSignal: 'SIGKILL',
    ...(pipes ? { pipes } : {}),
  })
  t.teardown(() => killGroup(child.pid))
  return child
}

const expected = (kind: string, n: number): string =>
  `stdout ${kind}\n${Array.from({ length: n }, (_, i) => `line ${i}\n`).join('')}`

const ownFds = (): number => readdirSync('/proc/self/fd').length

t.test('take() gives both ends of a real pipe, unlinked, and the batch refills', async (t) => {
  const parent = parentDir(t)
  const pipes = new FifoPipes({ keep: 4, parent }).start()
  t.teardown(() => pipes.close())
  t.equal(pipes.ready, 4, 'a batch made at start')
  const [dir] = readdirSync(parent)
  t.match(
    dir,
    new RegExp(`^tandem-pipes-${process.pid}-`),
    'a private directory named after the pid',
  )
  const ends = pipes.take()!
  t.ok(ends, 'one taken')
  t.ok(fstatSync(ends.read).isFIFO() && fstatSync(ends.write).isFIFO(), 'both ends are a pipe')
  t.equal(readdirSync(join(parent, dir!)).length, 3, 'its name is gone from the directory')
  writeSync(ends.write, 'through the pipe\n')
  const buf = Buffer.alloc(64)
  const n = readSync(ends.read, buf)
  t.equal(buf.subarray(0, n).toString(), 'through the pipe\n')
  closeSync(ends.write)
  t.equal(readSync(ends.read, buf), 0, 'the end is seen once the write end is closed')
  closeSync(ends.read)
  // Below half: a new batch is made in the background, back up to `keep`.
  for (const e of [pipes.take()!, pipes.take()!]) {
    closeSync(e.read)
    closeSync(e.write)
  }
  await until('the batch to refill', () => pipes.ready === 4)
  pipes.close()
  t.same(readdirSync(parent), [], 'close() removes the directory')
  t.equal(pipes.take(), undefined, 'none after close()')
})

t.test("a child's stdout and stderr are pipes; every line arrives, in order", async (t) => {
  const pipes = new FifoPipes({ parent: parentDir(t) }).start()
  t.teardown(() => pipes.close())
  const fdsBefore = ownFds()
  const child = run(t, pipes, 20_000)
  const [out, err, exit] = await Promise.all([
    collect(child.stdout),
    collect(child.stderr),
    child.exited,
  ])
  t.same(exit, { code: 0, signal: null })
  t.equal(err, 'stderr fifo\n')
  t.ok(out === expected('fifo', 20_000), 'all 20,000 lines of stdout, in order, through a pipe')
  await until('our ends to close', () => ownFds() <= fdsBefore)
  t.ok(ownFds() <= fdsBefore, 'no fd of ours left open')
})

t.test(
  'readPipe reads them with back-pressure: every byte once, in order, the end once',
  async (t) => {
    const pipes = new FifoPipes({ parent: parentDir(t) }).start()
    t.teardown(() => pipes.close())
    const child = run(t, pipes, 50_000)
    // Congested after every third chunk, drained a few ms later: the reads stop meanwhile.
    let chunks = 0
    let congested = false
    let pausedReads = 0
    const flow: LogFlow = {
      get congested() {
        return congested
      },
      whenDrained(fn) {
        pausedReads++
        setTimeout(() => {
          congested = false
          fn()
        }, 3)
      },
    }
    const got: Buffer[] = []
    let ends = 0
    const [, err] = await Promise.all([
      readPipe(
        child.stdout,
        flow,
        (chunk) => {
          // The chunk's memory is reused by the next read: a consumer copies what it keeps.
          got.push(Buffer.from(chunk))
          if (++chunks % 3 === 0) congested = true
        },
        () => ends++,
      ),
      collect(child.stderr),
      child.exited,
    ])
    t.equal(err, 'stderr fifo\n')
    t.ok(Buffer.concat(got).toString() === expected('fifo', 50_000), 'all 50,000 lines, in order')
    t.equal(ends, 1, 'the end, once')
    t.ok(pausedReads > 0, `reading paused while congested (${pausedReads} times, ${chunks} chunks)`)
  },
)

t.test('without pipes (none given, or no mkfifo) a child gets socketpairs as before', async (t) => {
  const plain = run(t, undefined, 3)
  t.equal(await collect(plain.stdout), expected('socket', 3))
  await plain.exited

  const problems: string[] = []
  const broken = new FifoPipes({
    parent: parentDir(t),
    mkfifo: '/nonexistent/mkfifo',
    onProblem: (m) => problems.push(m),
  }).start()
  t.teardown(() => broken.close())
  t.equal(broken.take(), undefined, 'no pipe to take')
  const child = run(t, broken, 3)
  const [out, err] = await Promise.all([collect(child.stdout), collect(child.stderr)])
  t.equal(out, expected('socket', 3), 'the child still runs, its output read')
  t.equal(err, 'stderr socket\n')
  t.equal(problems.length, 1, 'the problem is reported once')
  t.match(problems[0], /cannot make pipes with \/nonexistent\/mkfifo: .*socketpairs/)
})

t.test("a dead supervisor's directory is removed, a live one's kept", async (t) => {
  const parent = parentDir(t)
  // A pid that no longer runs: a child that has exited and been reaped.
  const gone = spawn(process.execPath, ['-e', ''])
  await new Promise((r) => gone.once('exit', r))
  const live = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { detached: true })
  t.teardown(() => killGroup(live.pid!))
  const dead = join(parent, `tandem-pipes-${gone.pid}-abc`)
  const alive = join(parent, `tandem-pipes-${live.pid}-abc`)
  const other = join(parent, 'tandem-pipesx-1-abc')
  for (const d of [dead, alive, other]) mkdirSync(join(d, 'p0'), { recursive: true })
  const pipes = new FifoPipes({ parent }).start()
  t.teardown(() => pipes.close())
  const left = readdirSync(parent)
  t.notOk(left.includes(`tandem-pipes-${gone.pid}-abc`), "the dead one's is removed")
  t.ok(left.includes(`tandem-pipes-${live.pid}-abc`), "the live one's is kept")
  t.ok(left.includes('tandem-pipesx-1-abc'), 'a name that is not ours is kept')
})
