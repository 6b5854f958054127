// HeapTrim: the policy (a full collection only after growth beyond the threshold, measured from
// the lowest level since the last one) on a scripted heap, and the real collector: V8's gc,
// reached at run time, frees garbage in the main thread and in a worker thread.
import t from 'tap'
import { spawn } from 'node:child_process'
import { Worker } from 'node:worker_threads'
import { fullCollection, inUseBytes, HeapTrim } from '../../src/seams/heap-trim.js'

const MB = 1024 * 1024

t.test('collects only after growth beyond the threshold, from the lowest level seen', async (t) => {
  let used = 20 * MB
  const runs: number[] = []
  const trim = new HeapTrim({
    growthBytes: 4 * MB,
    inUse: () => used,
    collect: () => {
      runs.push(used)
      used = 21 * MB
    },
  })
  used = 23 * MB
  t.equal(trim.check(), false, '3 MB of growth: no collection')
  used = 18 * MB
  t.equal(trim.check(), false, 'V8 collected by itself: the floor falls to 18 MB')
  used = 23 * MB
  t.equal(trim.check(), true, '5 MB above the new floor: a collection')
  t.same(runs, [23 * MB])
  t.equal(trim.collections, 1)
  used = 25 * MB
  t.equal(trim.check(), false, 'measured from what the collection left (21 MB): 4 MB is not more')
  used = 26 * MB
  t.equal(trim.check(), true)
  t.equal(trim.collections, 2)
})

t.test('a heap that does not grow is never collected', async (t) => {
  let calls = 0
  const trim = new HeapTrim({ inUse: () => 30 * MB, collect: () => calls++ })
  for (let i = 0; i < 100; i++) trim.check()
  t.equal(calls, 0)
})

t.test('no collector: never checks, never starts a timer', async (t) => {
  const trim = new HeapTrim({ inUse: () => 0, collect: null })
  t.equal(trim.check(), false)
  trim.start()
  t.equal(trim.started, false, 'no timer')
  trim.stop()
  t.equal(trim.collections, 0)
})

t.test('a started trim does not keep a process alive; stop clears its timer', async (t) => {
  const trim = new HeapTrim({ inUse: () => 0, collect: () => {} }).start()
  t.equal(trim.started, true, 'a timer while started')
  trim.stop()
  t.equal(trim.started, false, 'none after stop')
  // A process whose only work left is a started trim (an hour apart) ends at once.
  const url = new URL('../../dist/seams/heap-trim.js', import.meta.url).href
  const child = spawn(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `const { HeapTrim } = await import(${JSON.stringify(url)}); new HeapTrim({ everyMs: 3_600_000 }).start()`,
    ],
    { stdio: 'inherit' },
  )
  t.teardown(() => child.kill('SIGKILL'))
  const code = await new Promise((resolve) => child.once('exit', resolve))
  t.equal(code, 0, 'exited by itself')
})

t.test('the timer runs the check and does not keep the thread alive', async (t) => {
  let used = 10 * MB
  const trim = new HeapTrim({ everyMs: 5, growthBytes: MB, inUse: () => used, collect: () => {} })
  t.teardown(() => trim.stop())
  trim.start()
  used = 20 * MB
  await new Promise<void>((resolve) => {
    const poll = setInterval(() => {
      if (trim.collections > 0) {
        clearInterval(poll)
        resolve()
      }
    }, 5)
  })
  t.equal(trim.collections, 1)
})

/** Makes about 60 MB of garbage and returns what V8 holds then. */
const makeGarbage = (): number => {
  let keep: object[] | null = []
  for (let i = 0; i < 400_000; i++) keep.push({ s: 'x'.repeat(40) + i, n: i })
  keep = null
  return inUseBytes()
}

t.test('the real collector frees garbage in the main thread', async (t) => {
  const collect = fullCollection()
  t.type(collect, 'function', "V8's gc is reachable at run time")
  const trim = new HeapTrim({ growthBytes: 4 * MB })
  const before = makeGarbage()
  t.equal(trim.check(), true, 'the growth brought on a collection')
  const after = inUseBytes()
  t.ok(after < before - 8 * MB, `in use: ${before} bytes before, ${after} after`)
})

t.test('the real collector frees garbage in a worker thread', async (t) => {
  // The worker imports the built module (a worker does not load through tap's TypeScript
  // loader): `npm test` builds before it runs the tests.
  const url = new URL('../../dist/seams/heap-trim.js', import.meta.url).href
  const worker = new Worker(
    `import(${JSON.stringify(url)}).then(({ HeapTrim, inUseBytes }) => {
       const { parentPort } = require('node:worker_threads')
       const trim = new HeapTrim({ growthBytes: 4 * 1024 * 1024 })
       let keep = []
       for (let i = 0; i < 400000; i++) keep.push({ s: 'x'.repeat(40) + i, n: i })
       keep = null
       const before = inUseBytes()
       const collected = trim.check()
       parentPort.postMessage({ before, collected, after: inUseBytes() })
     })`,
    { eval: true },
  )
  t.teardown(() => worker.terminate())
  const r = await new Promise<{ before: number; collected: boolean; after: number }>(
    (resolve, reject) => {
      worker.once('message', resolve)
      worker.once('error', reject)
    },
  )
  t.equal(r.collected, true, 'the growth brought on a collection')
  t.ok(r.after < r.before - 8 * MB, `in use: ${r.before} bytes before, ${r.after} after`)
})
