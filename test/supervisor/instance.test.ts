// Restart policy as the Instance state machine applies it, with an injected clock: backoff,
// healthy-uptime reset, crash-loop window, port-conflict retries, readiness timeout and stop
// escalation. The children are real processes killed with real signals; only time is faked.
// Port 24400-24499 belong to this file (test files run in parallel).
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { splitLines } from '../../src/logging/pipe-output.js'
import { buildPlan, validateConfig } from '../../src/config/load-config.js'
import { processAlive, signalGroup } from '../../src/process/process-group.js'
import { spawnChild } from '../../src/process/spawn-child.js'
import { Instance, type InstanceDeps, type InstanceEvent } from '../../src/supervisor/instance.js'
import { FakeClock } from '../helpers/fake-clock.js'
import { ROOT, sleep, tempDir, waitUntil } from '../helpers/supervisor.js'

/** A child that, once set up, says who it is on stderr, and runs until it is killed. */
const LIVE = [
  process.execPath,
  '-e',
  "if (process.env.IGNORE_TERM) process.on('SIGTERM', () => console.log('ignoring SIGTERM')); console.error('boom from ' + process.pid); setInterval(() => {}, 1e6)",
]

const make = (t: Test, component: Record<string, unknown>, deps: Partial<InstanceDeps> = {}) => {
  const file = '/tmp/tandem-instance-test.json'
  const config = validateConfig(
    { components: { c: { command: LIVE, readiness: { type: 'none' }, ...component } } },
    file,
  )
  const spec = buildPlan(config, file).components[0]!.instances[0]!
  const clock = new FakeClock()
  const events: InstanceEvent[] = []
  const lines: string[] = []
  let wakes = 0
  const inst = new Instance(spec, {
    clock,
    spawn: spawnChild,
    portFree: () => Promise.resolve(true),
    describePortHolder: (port) => `port ${port} is in use by pid 1`,
    random: () => 0.5, // jitter spreads by (2 * random - 1): none at 0.5
    baseEnv: process.env,
    onEvent: (e) => events.push(e),
    wake: () => wakes++,
    pipe: () =>
      splitLines(64 * 1024, (bytes, start, end) => lines.push(bytes.toString('utf8', start, end))),
    logFlow: { congested: false, whenDrained: (fn) => fn() },
    maxLineBytes: 64 * 1024,
    tracked: () => {},
    untracked: () => {},
    ...deps,
  })
  t.teardown(() => {
    if (inst.pid !== undefined) signalGroup(inst.pid, 'SIGKILL')
  })
  /** One run that lives `uptimeMs` on the clock, then is SIGKILLed; returns its last event. */
  const crashAfter = async (uptimeMs: number): Promise<InstanceEvent> => {
    const run = inst.start()
    const pid = await waitUntil('the child to be spawned', () => inst.pid)
    await waitUntil('the child to be ready', () => inst.state === 'ready')
    await waitUntil('the child to be set up', () => lines.includes(`boom from ${pid}`))
    await clock.advance(uptimeMs)
    process.kill(pid, 'SIGKILL')
    await run
    return events.at(-1)!
  }
  return { inst, clock, events, lines, wakes: () => wakes, crashAfter }
}

t.test(
  'backoff: first restart at once, then initialMs * factor^n up to maxMs, due only when the clock says',
  async (t) => {
    const { inst, clock, crashAfter, wakes } = make(t, {
      backoff: { initialMs: 100, factor: 2, maxMs: 1000, jitter: 0.5, resetAfterMs: 10_000 },
      crashLoop: { maxExits: 100, windowMs: 60_000 },
    })
    const delays: number[] = []
    for (let i = 0; i < 7; i++) {
      const e = await crashAfter(10)
      t.match(e, { event: 'backoff', reason: /signal SIGKILL after 10 ms/ })
      delays.push(e.delayMs!)
      t.equal(inst.state, 'backoff')
      if (e.delayMs === 0) {
        t.ok(inst.due, 'an immediate restart is due at once')
        continue
      }
      await clock.advance(e.delayMs! - 1)
      t.notOk(inst.due, `not due 1 ms before ${e.delayMs} ms`)
      const before = wakes()
      await clock.advance(1)
      t.ok(inst.due, `due after ${e.delayMs} ms`)
      t.equal(wakes(), before + 1, 'the reconciler is woken once')
    }
    t.same(delays, [0, 100, 200, 400, 800, 1000, 1000])
    t.equal(inst.restarts, 6)

    const healthy = await crashAfter(10_000)
    t.equal(
      healthy.delayMs,
      0,
      'a run that lasted resetAfterMs starts a new series: restart at once',
    )
    t.equal((await crashAfter(10)).delayMs, 100, 'and the series grows again from there')
  },
)

t.test(
  'crash loop: maxExits failures within windowMs at any age of the process; older ones slide out',
  async (t) => {
    const crashLoop = { maxExits: 3, windowMs: 60_000 }
    const backoff = { resetAfterMs: 10_000 } // every run here is "healthy": no backoff delay

    const sparse = make(t, { crashLoop, backoff })
    for (let i = 0; i < 5; i++) {
      const e = await sparse.crashAfter(31_000)
      t.equal(e.event, 'backoff', `failure ${i + 1}, 31 s apart: at most 2 inside 60 s`)
    }

    const dense = make(t, { crashLoop, backoff })
    t.equal((await dense.crashAfter(20_000)).event, 'backoff')
    t.equal((await dense.crashAfter(20_000)).event, 'backoff')
    const failed = await dense.crashAfter(20_000)
    t.match(failed, {
      event: 'failed',
      reason: /^crash loop: 3 failures within 60000 ms, last: signal SIGKILL after 20000 ms$/,
      exit: { reason: 'exited', signal: 'SIGKILL' },
    })
    t.match(failed.stderrTail, [/^boom from \d+$/], 'the report carries the last stderr lines')
    t.equal(dense.inst.state, 'failed')
    await dense.clock.advance(3_600_000)
    t.notOk(dense.inst.due, 'failed stays failed: no retry is scheduled')

    const again = await dense.crashAfter(20_000)
    t.equal(again.event, 'backoff', 'an operator start clears the crash-loop history')
    t.equal(again.delayMs, 0)
  },
)

t.test(
  'a held port: retried with a growing delay, spawns nothing, counts no restart and no crash loop',
  async (t) => {
    let free = false
    const { inst, events, clock } = make(
      t,
      {
        port: 24400,
        backoff: { initialMs: 0, maxMs: 1000 },
        crashLoop: { maxExits: 2, windowMs: 60_000 },
      },
      { portFree: () => Promise.resolve(free) },
    )
    const delays: number[] = []
    for (let i = 0; i < 6; i++) {
      await inst.start()
      const e = events.at(-1)!
      t.match(e, { event: 'backoff', reason: 'port 24400 is in use by pid 1' })
      delays.push(e.delayMs!)
      await clock.advance(e.delayMs!)
      t.ok(inst.due)
    }
    t.same(
      delays,
      [100, 200, 400, 800, 1000, 1000],
      'never a busy loop, even with backoff.initialMs 0',
    )
    t.equal(inst.restarts, 0)
    t.equal(inst.lastExit?.reason, 'port-in-use')
    t.notOk(events.some((e) => e.event === 'spawned'))

    free = true
    void inst.start()
    await waitUntil('ready once the port is free', () => inst.state === 'ready')
    t.equal(inst.restarts, 0, 'the first process spawned is no restart')
  },
)

t.test(
  'not ready within readiness.timeoutMs: stopped with its stop signal, a failure, backed off',
  async (t) => {
    const { inst, events, clock } = make(t, {
      port: 24401, // nothing listens there: the child never does
      readiness: { type: 'tcp', timeoutMs: 2000, intervalMs: 100 },
    })
    const run = inst.start()
    await waitUntil('the child to be spawned', () => inst.pid)
    t.equal(inst.state, 'starting')
    await waitUntil('the readiness timeout to end the run', async () => {
      await clock.advance(100)
      return events.some((e) => e.event === 'exited')
    })
    await run
    const exited = events.find((e) => e.event === 'exited')!
    t.match(exited.exit, { reason: 'not-ready', signal: 'SIGTERM', detail: /24401/ })
    t.match(events.at(-1), { event: 'backoff', delayMs: 0 })
    t.equal(inst.state, 'backoff')
  },
)

t.test(
  'stop: the stop signal, then SIGKILL to the group after stop.timeoutMs on the clock',
  async (t) => {
    const { inst, lines, clock } = make(t, {
      env: { IGNORE_TERM: '1' },
      stop: { signal: 'SIGTERM', timeoutMs: 5000 },
    })
    void inst.start()
    const pid = await waitUntil('ready', () => inst.state === 'ready' && inst.pid)
    await waitUntil('the child to be set up', () => lines.includes(`boom from ${pid}`))
    const stopped = inst.stop()
    t.equal(inst.state, 'stopping')
    await waitUntil('the child to get SIGTERM', () => lines.includes('ignoring SIGTERM'))
    t.ok(processAlive(pid), 'it ignores SIGTERM')
    await clock.advance(5000)
    await stopped
    t.equal(inst.state, 'stopped')
    t.match(inst.lastExit, { reason: 'stopped', signal: 'SIGKILL', killedAfterTimeout: true })
    t.notOk(processAlive(pid))
  },
)

t.test(
  'a congested log stops the reading of the pipes: the child waits, nothing is lost',
  async (t) => {
    const LINES = 100_000 // about 5 MB: far more than a pipe holds
    const progressFile = join(tempDir(t), 'progress')
    let congested = true
    let drained: (() => void) | undefined
    const { inst, lines } = make(
      t,
      {
        command: [process.execPath, join(ROOT, 'test/fixtures/printer.js')],
        env: { LINES: String(LINES), PROGRESS_FILE: progressFile },
        restart: 'never',
      },
      {
        logFlow: {
          get congested() {
            return congested
          },
          whenDrained: (fn) => (drained = fn),
        },
      },
    )
    const run = inst.start()
    const progress = () => Number(existsSync(progressFile) ? readFileSync(progressFile, 'utf8') : 0)
    await waitUntil(
      'the first lines to be read, then reading to pause',
      () => drained && lines.length > 0,
    )
    await waitUntil('the child to fill the pipe', () => progress() > lines.length)
    // Whatever the machine's speed, the child can be ahead of what was read by no more than the
    // pipe's and its own buffers (well under 100 KB of 50-byte lines), however long we look.
    await sleep(500)
    const read = lines.length
    t.ok(progress() < LINES, `the child waits: ${progress()} of ${LINES} lines written`)
    t.ok(progress() - read < 10_000, `${progress() - read} lines in the pipe at most`)
    congested = false
    drained!()
    await run
    t.equal(inst.lastExit?.code, 0)
    t.same(
      lines.map((l) => Number(l.split(' ')[1])),
      Array.from({ length: LINES }, (_, i) => i),
      'every line once, in order',
    )
  },
)
