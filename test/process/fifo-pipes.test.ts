// FifoPipes and spawnChild with them: children's stdout and stderr are real pipes (not Node's
// socketpairs), every byte arrives in order and the end is seen; the batch made ahead refills in
// the background, and an empty one is made up on the spot; with no mkfifo, children get
// socketpairs as before and the problem is reported once; pipes removed behind its back are
// made again after the retry delay; no fd of ours is left open after a child's output ends; the
// directory is 0700 and emptied at start and at close, a symlink there is removed, not followed.
// Real processes, real files; no ports.
import {
  closeSync,
  fstatSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import t, { type Test } from 'tap'
import { readPipe, type LogFlow } from '../../src/logging/read-pipe.js'
import { FifoPipes, type FifoPipesOptions } from '../../src/process/fifo-pipes.js'
import { spawnChild, type ChildHandle } from '../../src/process/spawn-child.js'
import { killGroup } from '../helpers/supervisor.js'

const until = async (what: string, cond: () => boolean, ms = 10_000): Promise<void> => {
  const deadline = Date.now() + ms
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

/** A state dir of the test's own; the pipes go in its `pipes` directory, as the supervisor's do. */
const stateDir = (t: Test): string => {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-fifo-test-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}
const pipesIn = (t: Test, options: Partial<FifoPipesOptions> = {}): FifoPipes => {
  const pipes = new FifoPipes({ dir: join(stateDir(t), 'pipes'), ...options }).start()
  t.teardown(() => pipes.close())
  return pipes
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

/** `sh -c script`, with `pipes` or (without) Node's socketpairs; killed at the test's end. */
const sh = (t: Test, pipes: FifoPipes | undefined, script: string, ...args: string[]) => {
  const child = spawnChild({
    argv: ['/bin/sh', '-c', script, ...args],
    cwd: process.cwd(),
    env: childEnv,
    ipc: false,
    parentDeathSignal: 'SIGKILL',
    ...(pipes ? { pipes } : {}),
  })
  t.teardown(() => killGroup(child.pid))
  return child
}

const run = (t: Test, pipes: FifoPipes | undefined, n: number): ChildHandle =>
  sh(t, pipes, CHILD, String(n))

const expected = (kind: string, n: number): string =>
  `stdout ${kind}\n${Array.from({ length: n }, (_, i) => `line ${i}\n`).join('')}`

const ownFds = (): number => readdirSync('/proc/self/fd').length

t.test('take() gives both ends of a real pipe, unlinked, and the batch refills', async (t) => {
  const dir = join(stateDir(t), 'pipes')
  const pipes = new FifoPipes({ dir, keep: 4 }).start()
  t.teardown(() => pipes.close())
  t.equal(pipes.ready, 4, 'a batch made at start')
  t.equal(statSync(dir).mode & 0o777, 0o700, 'in a directory only the supervisor can enter')
  const ends = pipes.take()!
  t.ok(ends, 'one taken')
  t.ok(fstatSync(ends.read).isFIFO() && fstatSync(ends.write).isFIFO(), 'both ends are a pipe')
  t.equal(readdirSync(dir).length, 3, 'its name is gone from the directory')
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
  // Taken faster than the background can make them: made on the spot, never a socketpair.
  const many = Array.from({ length: 12 }, () => pipes.take())
  t.ok(
    many.every((e) => e !== undefined && fstatSync(e.read).isFIFO()),
    '12 taken at once: all pipes',
  )
  for (const e of many) {
    closeSync(e!.read)
    closeSync(e!.write)
  }
  await until('a refill under way to end', () => pipes.ready >= 2)
  pipes.close()
  t.same(readdirSync(dir), [], 'close() empties the directory')
  t.equal(pipes.take(), undefined, 'none after close()')
})

t.test("a child's stdout and stderr are pipes; every line arrives, in order", async (t) => {
  const pipes = pipesIn(t)
  // A first child, so that fds libuv opens once (its signal pipe) are not counted against us.
  const warm = run(t, pipes, 1)
  await Promise.all([collect(warm.stdout), collect(warm.stderr), warm.exited])
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
  await until('our ends to close: no fd of ours left open', () => ownFds() <= fdsBefore)
})

t.test('a child can open /dev/stdout and /dev/stderr (a socketpair refuses: ENXIO)', async (t) => {
  const pipes = pipesIn(t)
  // nginx's `error_log /dev/stderr`, a script's `echo ... > /dev/stdout`.
  const script = 'echo to-stdout > /dev/stdout && echo to-stderr > /dev/stderr && echo done'
  const spawnSh = (withPipes: boolean) => {
    const child = sh(t, withPipes ? pipes : undefined, script)
    return Promise.all([collect(child.stdout), collect(child.stderr), child.exited])
  }
  const [out, err, exit] = await spawnSh(true)
  t.same([out, err, exit.code], ['to-stdout\ndone\n', 'to-stderr\n', 0], 'through the pipes')
  const [, plainErr, plainExit] = await spawnSh(false)
  t.not(plainExit.code, 0, 'with a socketpair the shell cannot open /dev/stdout')
  t.match(plainErr, /No such device or address/)
})

t.test(
  'readPipe reads them with back-pressure: every byte once, in order, the end once',
  async (t) => {
    const child = run(t, pipesIn(t), 50_000)
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
  const broken = pipesIn(t, { mkfifo: '/nonexistent/mkfifo', onProblem: (m) => problems.push(m) })
  t.equal(broken.take(), undefined, 'no pipe to take')
  const child = run(t, broken, 3)
  const [out, err] = await Promise.all([collect(child.stdout), collect(child.stderr)])
  t.equal(out, expected('socket', 3), 'the child still runs, its output read')
  t.equal(err, 'stderr socket\n')
  t.equal(problems.length, 1, 'the problem is reported once')
  t.match(problems[0], /cannot make pipes with \/nonexistent\/mkfifo in .*: .*socketpairs/)
})

t.test(
  'pipes removed behind its back: socketpairs, then pipes again after the delay',
  async (t) => {
    const problems: string[] = []
    const dir = join(stateDir(t), 'pipes')
    const pipes = new FifoPipes({ dir, keep: 4, retryMs: 300, onProblem: (m) => problems.push(m) })
    pipes.start()
    t.teardown(() => pipes.close())
    // What systemd-tmpfiles would do to old files in a temp directory.
    for (const name of readdirSync(dir)) rmSync(join(dir, name))
    t.equal(pipes.take(), undefined, 'a vanished pipe: none now')
    t.equal(problems.length, 1)
    t.match(problems[0], /cannot open the pipe .*ENOENT.*socketpairs.*tried again/)
    t.equal(pipes.take(), undefined, 'none until the delay has passed')
    t.equal(problems.length, 1, 'reported once')
    await until('the retry delay to pass', () => {
      const e = pipes.take()
      if (!e) return false
      closeSync(e.read)
      closeSync(e.write)
      return true
    })
    t.equal(problems.length, 2)
    t.match(problems[1], /children get pipes for their output again/)
  },
)

t.test(
  'start empties the directory of an earlier run; a symlink there is not followed',
  async (t) => {
    const state = stateDir(t)
    const dir = join(state, 'pipes')
    mkdirSync(join(dir, 'sub'), { recursive: true })
    writeFileSync(join(dir, 'p7'), 'left by a run that was killed')
    const pipes = new FifoPipes({ dir, keep: 2 }).start()
    t.teardown(() => pipes.close())
    t.same(readdirSync(dir).sort(), ['p0', 'p1'], 'only the new batch')

    // A symlink where the directory should be: removed, and what it points to left alone.
    const elsewhere = join(state, 'elsewhere')
    mkdirSync(elsewhere)
    writeFileSync(join(elsewhere, 'precious'), 'keep me')
    const linked = join(state, 'linked')
    symlinkSync(elsewhere, linked)
    const other = new FifoPipes({ dir: linked, keep: 2 }).start()
    t.teardown(() => other.close())
    t.ok(lstatSync(linked).isDirectory(), 'a directory of its own in place of the link')
    t.same(readdirSync(elsewhere), ['precious'], "the link's target untouched")
  },
)
