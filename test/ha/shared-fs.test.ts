// The shared directory's seam: both implementations keep one contract on real files; the I/O
// process keeps a hung mount's threads away from ours, and dies with its supervisor.
//
// A hang without FUSE: open() of a FIFO for reading blocks in the kernel until a writer opens it,
// in whichever process's libuv thread called it.
import { execFileSync, spawn } from 'node:child_process'
import {
  closeSync,
  constants,
  existsSync,
  openSync,
  readdirSync,
  readFileSync,
  writeFileSync,
  writeSync,
} from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import t, { type Test } from 'tap'
import {
  DEFAULT_MAX_IN_FLIGHT,
  startSharedFsProcess,
  type SharedFsProcess,
} from '../../src/ha/shared-fs-process.js'
import { localSharedFs, type SharedFs } from '../../src/ha/shared-fs.js'
import { alive, tempDir, waitUntil } from '../helpers/supervisor.js'

const SOURCE = new URL('../../src/ha/', import.meta.url)

const implementations: [string, (root: string) => SharedFs][] = [
  ['localSharedFs', localSharedFs],
  ['startSharedFsProcess', (root) => startSharedFsProcess(root)],
]

const fifo = (dir: string, name: string): string => {
  execFileSync('mkfifo', [join(dir, name)])
  return name
}

/** Lets a reader hung in open() of the FIFO go on, with `data`; false when no reader waits. */
const release = (dir: string, name: string, data = 'released'): boolean => {
  let fd: number
  try {
    fd = openSync(join(dir, name), constants.O_WRONLY | constants.O_NONBLOCK)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENXIO') return false
    throw err
  }
  writeSync(fd, data)
  closeSync(fd)
  return true
}

/** Threads of a process blocked in open() of a FIFO (Linux: the kernel's wait_for_partner). */
const threadsInFifoOpen = (pid: number): number => {
  try {
    return readdirSync(`/proc/${pid}/task`).filter((tid) => {
      try {
        return readFileSync(`/proc/${pid}/task/${tid}/wchan`, 'utf8').includes('wait_for_partner')
      } catch {
        return false
      }
    }).length
  } catch {
    return 0
  }
}

for (const [name, make] of implementations) {
  t.test(`${name} keeps the SharedFs contract`, async (t) => {
    const dir = tempDir(t)
    const fs = make(dir)
    t.teardown(() => fs.close())
    t.equal(fs.root, dir)

    t.test('a missing file reads and stats as undefined', async (t) => {
      t.equal(await fs.read('missing'), undefined)
      t.equal(await fs.stat('missing'), undefined)
    })

    t.test('write creates a file and replaces all of its content', async (t) => {
      await fs.write('w', 'a long first content\n')
      t.equal(readFileSync(join(dir, 'w'), 'utf8'), 'a long first content\n')
      await fs.write('w', 'short\n')
      t.equal(await fs.read('w'), 'short\n', 'truncated before writing')
    })

    t.test('an exclusive write creates, and fails with EEXIST on an existing file', async (t) => {
      await fs.write('x', 'first', { exclusive: true })
      await t.rejects(fs.write('x', 'second', { exclusive: true }), {
        code: 'EEXIST',
        message: new RegExp(`write ${join(dir, 'x')}`),
      })
      t.equal(await fs.read('x'), 'first')
    })

    t.test('a write into a missing directory fails with ENOENT naming the path', async (t) => {
      await t.rejects(fs.write('no-dir/f', 'data'), {
        code: 'ENOENT',
        message: new RegExp(`write ${join(dir, 'no-dir/f')}`),
      })
    })

    t.test('overwrite creates a missing file and never truncates', async (t) => {
      await fs.overwrite('o', 'aaaaaa\n')
      t.equal(await fs.read('o'), 'aaaaaa\n')
      await fs.overwrite('o', 'bb')
      t.equal(await fs.read('o'), 'bbaaaa\n', 'written at offset 0, the rest kept')
      // Fixed-width records rewritten while another process reads: never an empty file.
      const full = join(dir, 'o')
      let writing = true
      const seen = new Set<string>()
      const reader = (async () => {
        while (writing) seen.add(await readFile(full, 'utf8'))
      })()
      for (let i = 0; i < 50; i++) await fs.overwrite('o', `${String(i % 10).repeat(6)}\n`)
      writing = false
      await reader
      t.notOk(seen.has(''), 'no read saw an empty file')
      t.ok(
        [...seen].every((s) => s.length === 7),
        'every read saw one whole record',
      )
    })

    t.test('mkdir: plain, existing (EEXIST), recursive', async (t) => {
      await fs.mkdir('d')
      t.same(await fs.stat('d'), { isDirectory: true, mode: (await fs.stat('d'))!.mode })
      t.ok((await fs.stat('d'))!.isDirectory)
      await t.rejects(fs.mkdir('d'), { code: 'EEXIST', message: new RegExp(join(dir, 'd')) })
      await fs.mkdir('r/s/t', { recursive: true })
      await fs.mkdir('r/s/t', { recursive: true })
      t.ok((await fs.stat('r/s/t'))!.isDirectory)
      await t.rejects(fs.mkdir('u/v'), { code: 'ENOENT' })
    })

    t.test('rename: a file, and a directory onto a non-empty one fails', async (t) => {
      await fs.write('from', 'moved')
      await fs.rename('from', 'to')
      t.equal(await fs.read('from'), undefined)
      t.equal(await fs.read('to'), 'moved')
      await fs.mkdir('tmp-claim')
      await fs.write('tmp-claim/owner', 'mine')
      await fs.mkdir('claim')
      await fs.write('claim/owner', 'theirs')
      const err = await fs.rename('tmp-claim', 'claim').then(
        () => undefined,
        (e: { code: string; message: string }) => e,
      )
      t.match(err?.code, /^(ENOTEMPTY|EEXIST)$/, 'refused: the epoch exists')
      t.match(err?.message, `rename ${join(dir, 'tmp-claim')} -> ${join(dir, 'claim')}`)
      t.equal(await fs.read('claim/owner'), 'theirs')
    })

    t.test('readdir lists names; a missing directory is ENOENT', async (t) => {
      await fs.mkdir('list')
      await fs.write('list/b', '')
      await fs.write('list/a', '')
      await fs.mkdir('list/c')
      t.same((await fs.readdir('list')).sort(), ['a', 'b', 'c'])
      await t.rejects(fs.readdir('no-list'), { code: 'ENOENT', message: /no-list/ })
    })

    t.test('stat says directory or not, and the mode', async (t) => {
      writeFileSync(join(dir, 's'), 'x', { mode: 0o640 })
      const s = await fs.stat('s')
      t.equal(s?.isDirectory, false)
      t.equal(s!.mode & 0o777, 0o640)
      t.equal((await fs.stat('.'))?.isDirectory, true)
    })

    t.test('an aborted signal rejects with EABORTED and its reason', async (t) => {
      const reason = new Error('fenced')
      await t.rejects(fs.read('w', { signal: AbortSignal.abort(reason) }), {
        code: 'EABORTED',
        message: /read .*fenced/,
        cause: reason,
      })
    })
  })

  t.test(`${name}: after close every call rejects with ECLOSED`, async (t) => {
    const fs = make(tempDir(t))
    fs.close()
    fs.close()
    await t.rejects(fs.read('a'), { code: 'ECLOSED', message: /read / })
    await t.rejects(fs.mkdir('a'), { code: 'ECLOSED' })
  })
}

const processFs = (
  t: Test,
  root: string,
  options?: Parameters<typeof startSharedFsProcess>[1],
): SharedFsProcess => {
  const fs = startSharedFsProcess(root, options)
  t.teardown(() => fs.close())
  return fs
}

t.test('at most 6 operations in flight by default', async (t) => {
  t.equal(DEFAULT_MAX_IN_FLIGHT, 6, 'the lease, presence, requests, a roll slot: none waits')
})

t.test('a hung shared dir holds the I/O process, not the supervisor', async (t) => {
  const dir = tempDir(t)
  const fifos = ['f1', 'f2', 'f3'].map((f) => fifo(dir, f))
  t.teardown(() => fifos.forEach((f) => release(dir, f)))
  const fs = processFs(t, dir, { maxInFlight: 3 })
  const pid = fs.pid!
  t.ok(pid > 0)
  const hung = fifos.map((f) => fs.read(f).catch((e: { code: string }) => e.code))
  t.equal(fs.inFlight, 3)
  await waitUntil('3 I/O threads hung in open()', () => threadsInFifoOpen(pid) === 3)

  // (a) our own thread pool and event loop are free: 4 reads of local files at once.
  const local = join(dir, 'local')
  writeFileSync(local, 'ours')
  t.same(await Promise.all([1, 2, 3, 4].map(() => readFile(local, 'utf8'))), [
    'ours',
    'ours',
    'ours',
    'ours',
  ])

  // (b) a 4th call waits here, unsent, and an abort withdraws it.
  const ac = new AbortController()
  const fourth = fs.write('marker', 'x', { signal: ac.signal })
  t.equal(fs.queued, 1, 'queued')
  t.equal(fs.inFlight, 3, 'not sent')
  ac.abort(new Error('gave up'))
  await t.rejects(fourth, { code: 'EABORTED', message: /write .*marker.*gave up/ })
  t.equal(fs.queued, 0, 'withdrawn')

  // (c) close returns at once; the hung calls are told so.
  fs.close()
  t.same(await Promise.all(hung), ['ECLOSED', 'ECLOSED', 'ECLOSED'])
  t.equal(fs.pid, undefined)
  fifos.forEach((f) => release(dir, f))
  await waitUntil('the I/O process gone', () => !alive(pid))
  t.notOk(existsSync(join(dir, 'marker')), 'the withdrawn write never ran')
})

t.test('queued calls run in order as slots free; a withdrawn one never runs', async (t) => {
  const dir = tempDir(t)
  const fs = processFs(t, dir, { maxInFlight: 1 })
  fifo(dir, 'slow')
  const slow = fs.read('slow')
  const ac = new AbortController()
  const dropped = fs.write('dropped', 'x', { signal: ac.signal })
  const kept = fs.write('kept', 'y')
  t.equal(fs.queued, 2)
  ac.abort()
  await t.rejects(dropped, { code: 'EABORTED' })
  await waitUntil('the slow read hung', () => threadsInFifoOpen(fs.pid!) === 1)
  t.ok(release(dir, 'slow', 'late'))
  t.equal(await slow, 'late')
  await kept
  t.equal(readFileSync(join(dir, 'kept'), 'utf8'), 'y')
  t.notOk(existsSync(join(dir, 'dropped')), 'withdrawn before it was sent')
})

t.test('an aborted call in flight keeps its slot until the I/O process answers', async (t) => {
  const dir = tempDir(t)
  const fs = processFs(t, dir, { maxInFlight: 1 })
  fifo(dir, 'slow')
  const ac = new AbortController()
  const slow = fs.read('slow', { signal: ac.signal })
  const next = fs.read('next')
  ac.abort()
  await t.rejects(slow, { code: 'EABORTED' })
  t.equal(fs.inFlight, 1, 'the hung open still holds a thread there')
  t.equal(fs.queued, 1, 'so the next call waits')
  await waitUntil('the slow read hung', () => threadsInFifoOpen(fs.pid!) === 1)
  t.ok(release(dir, 'slow'))
  t.equal(await next, undefined, 'runs once the dropped answer came')
  t.equal(fs.inFlight, 0)
})

t.test(
  'when the I/O process dies, its calls fail with EIO and the next call starts another',
  async (t) => {
    const dir = tempDir(t)
    const problems: string[] = []
    const fs = processFs(t, dir, { onProblem: (m) => problems.push(m) })
    fifo(dir, 'slow')
    const first = fs.pid!
    const slow = fs.read('slow')
    await waitUntil('the slow read hung', () => threadsInFifoOpen(first) === 1)
    process.kill(first, 'SIGKILL')
    await t.rejects(slow, { code: 'EIO', message: /read .*slow.*I\/O process exited/ })
    t.match(problems, [/I\/O process \d+ exited .*1 operation\(s\) failed/])
    await fs.write('after', 'ok')
    t.equal(await fs.read('after'), 'ok')
    t.not(fs.pid, first)
    t.ok(fs.pid && alive(fs.pid))
  },
)

/**
 * A parent that starts an I/O process with 3 reads hung in it, prints its pid, and on a line
 * `close` on stdin closes it and must then exit by itself. `bare` spawns the I/O process
 * directly, without startSharedFsProcess's parent-death signal: only the closed IPC channel
 * tells it that its parent died.
 */
const startParent = (t: Test, dir: string, mode: 'seam' | 'bare') => {
  const seam = new URL('shared-fs-process.ts', SOURCE).href
  const main = new URL('shared-fs-main.ts', SOURCE).pathname
  const code = `
    import { spawn } from 'node:child_process'
    import { createInterface } from 'node:readline'
    const dir = ${JSON.stringify(dir)}
    const reads = ['f1', 'f2', 'f3']
    if (${JSON.stringify(mode)} === 'bare') {
      const io = spawn(process.execPath, [...process.execArgv, ${JSON.stringify(main)}, dir], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] })
      reads.forEach((f, id) => io.send({ id, op: 'read', args: [f] }))
      console.log(JSON.stringify({ pid: io.pid }))
    } else {
      const { startSharedFsProcess } = await import(${JSON.stringify(seam)})
      const fs = startSharedFsProcess(dir)
      const hung = reads.map((f) => fs.read(f).catch((e) => e.code))
      console.log(JSON.stringify({ pid: fs.pid }))
      createInterface({ input: process.stdin }).once('line', async () => {
        fs.close()
        console.log(JSON.stringify({ codes: await Promise.all(hung) }))
        process.stdin.destroy()
      })
    }`
  // A file, not -e: its execArgv (tap's TypeScript loader) is what the I/O process inherits.
  const script = join(dir, `parent-${mode}.mjs`)
  writeFileSync(script, code)
  const parent = spawn(process.execPath, [...process.execArgv, script], {
    stdio: ['pipe', 'pipe', 'inherit'],
    detached: true,
  })
  t.teardown(() => {
    try {
      process.kill(-parent.pid!, 'SIGKILL')
    } catch {
      // gone
    }
  })
  const lines: Record<string, unknown>[] = []
  createInterface({ input: parent.stdout }).on('line', (l) => lines.push(JSON.parse(l)))
  const exited = new Promise<number | null>((r) => parent.once('exit', (c) => r(c)))
  return { parent, lines, exited }
}

const hungIoProcess = async (t: Test, dir: string, lines: Record<string, unknown>[]) => {
  const pid = (await waitUntil('the I/O pid', () => lines[0]?.pid)) as number
  t.teardown(() => {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // gone
    }
  })
  await waitUntil('3 I/O threads hung in open()', () => threadsInFifoOpen(pid) === 3)
  return pid
}

t.test('close() lets the supervisor exit while the I/O process hangs', async (t) => {
  const dir = tempDir(t)
  const fifos = ['f1', 'f2', 'f3'].map((f) => fifo(dir, f))
  t.teardown(() => fifos.forEach((f) => release(dir, f)))
  const { parent, lines, exited } = startParent(t, dir, 'seam')
  const pid = await hungIoProcess(t, dir, lines)
  parent.stdin.write('close\n')
  t.equal(await exited, 0, 'the parent exited by itself')
  t.same(lines[1], { codes: ['ECLOSED', 'ECLOSED', 'ECLOSED'] })
  fifos.forEach((f) => release(dir, f))
  await waitUntil('the I/O process gone', () => !alive(pid))
})

for (const mode of ['seam', 'bare'] as const) {
  t.test(`the I/O process ends when its parent is SIGKILLed (${mode})`, async (t) => {
    const dir = tempDir(t)
    const fifos = ['f1', 'f2', 'f3'].map((f) => fifo(dir, f))
    t.teardown(() => fifos.forEach((f) => release(dir, f)))
    const { parent, lines, exited } = startParent(t, dir, mode)
    const pid = await hungIoProcess(t, dir, lines)
    process.kill(parent.pid!, 'SIGKILL')
    await exited
    // No FIFO released: it must end with its threads still hung in open().
    await waitUntil('the I/O process gone', () => !alive(pid))
  })
}
