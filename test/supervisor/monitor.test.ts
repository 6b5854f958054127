// Memory-limit and liveness policy of the Monitor on an injected clock. The samples and probes
// are scripted here; the real ones (/proc, HTTP, TCP) run in test/process/group-usage.test.ts
// and test/integration/monitor.test.ts.
import t from 'tap'
import type { Instance } from '../../src/supervisor/instance.js'
import { Monitor, type SampleGroups, type Usage } from '../../src/supervisor/monitor.js'
import { MetricHistory } from '../../src/supervisor/metric-history.js'
import { FakeClock } from '../helpers/fake-clock.js'

const MB = 1024 * 1024

/** A sampler that answers `usage()` for every group it is asked about. */
const each =
  (usage: () => Usage): SampleGroups =>
  (pgids) =>
    Promise.resolve(new Map(pgids.map((p) => [p, usage()])))

/** The part of an Instance the Monitor reads, recording what it is told to do. */
const instance = (spec: Partial<Instance['spec']>) => {
  const failures: string[] = []
  const inst = {
    id: 'web#0',
    pid: 100 as number | undefined,
    state: 'ready',
    usage: undefined as Usage | undefined,
    recordUsage(u: Usage | undefined) {
      this.usage = u
    },
    spec: { host: '127.0.0.1', port: 8000, ...spec },
    fail: (reason: string, detail: string) => failures.push(`${reason}: ${detail}`),
  }
  return { inst, failures, asInstance: inst as unknown as Instance }
}

t.test(
  'memory: a restart after 3 samples in a row above maxMemoryMb; a dip resets the count',
  async (t) => {
    const clock = new FakeClock()
    const { inst, failures, asInstance } = instance({ maxMemoryMb: 100 })
    const rss: number[] = [150, 150, 50, 150, 150, 150]
    const monitor = new Monitor(() => [asInstance], {
      intervalMs: 1000,
      clock,
      sample: each(() => ({ cpuPercent: 1, rssBytes: (rss.shift() ?? 0) * MB })),
      probe: () => Promise.resolve(),
      onError: (m) => t.fail(m),
    })
    monitor.start()
    for (let i = 0; i < 5; i++) await clock.advance(1000)
    t.same(failures, [], 'above, above, below, above, above: not yet')
    t.same(
      inst.usage,
      { cpuPercent: 1, rssBytes: 150 * MB },
      'the latest sample is kept for status',
    )
    await clock.advance(1000)
    t.same(failures, ['memory: RSS 150 MB above maxMemoryMb 100 in 3 samples 1000 ms apart'])
    monitor.stop()
  },
)

t.test('memory: a new process starts a new count', async (t) => {
  const clock = new FakeClock()
  const { inst, failures, asInstance } = instance({ maxMemoryMb: 100 })
  const monitor = new Monitor(() => [asInstance], {
    intervalMs: 1000,
    clock,
    sample: each(() => ({ cpuPercent: 1, rssBytes: 150 * MB })),
    probe: () => Promise.resolve(),
    onError: (m) => t.fail(m),
  })
  monitor.start()
  await clock.advance(2000)
  inst.pid = 101 // restarted
  await clock.advance(2000)
  t.same(failures, [], '2 + 2 samples of two processes')
  await clock.advance(1000)
  t.equal(failures.length, 1)
  monitor.stop()
})

t.test(
  'health: restart after `failures` misses in a row, only while ready; a success resets',
  async (t) => {
    const clock = new FakeClock()
    const { inst, failures, asInstance } = instance({
      health: { type: 'http', path: '/health', intervalMs: 500, timeoutMs: 100, failures: 3 },
    })
    const answers = [false, false, true, false, false, false]
    const probed: string[] = []
    const monitor = new Monitor(() => [asInstance], {
      intervalMs: 60_000,
      clock,
      sample: () => Promise.resolve(new Map()),
      probe: (health, host, port, timeoutMs) => {
        probed.push(`${health.type} ${host}:${port} ${timeoutMs}`)
        return answers.shift()
          ? Promise.resolve()
          : Promise.reject(new Error('GET /health answered 503'))
      },
      onError: (m) => t.fail(m),
    })
    monitor.start()
    inst.state = 'starting'
    await clock.advance(500)
    t.same(probed, [], 'not probed before it is ready')
    inst.state = 'ready'
    for (let i = 0; i < 5; i++) await clock.advance(500)
    t.same(failures, [], 'miss, miss, success, miss, miss')
    await clock.advance(500)
    t.same(failures, [
      'unhealthy: http health check failed 3 times in a row, last: GET /health answered 503',
    ])
    t.equal(probed[0], 'http 127.0.0.1:8000 100')
    monitor.stop()
    const before = probed.length
    await clock.advance(5000)
    t.equal(probed.length, before, 'stopped: no more probes')
  },
)

t.test('the first sample comes after a second, then every intervalMs', async (t) => {
  const clock = new FakeClock()
  const { inst, asInstance } = instance({})
  let samples = 0
  const monitor = new Monitor(() => [asInstance], {
    intervalMs: 5000,
    clock,
    sample: each(() => ({ cpuPercent: 2, rssBytes: ++samples * MB })),
    probe: () => Promise.resolve(),
    onError: (m) => t.fail(m),
  })
  monitor.start()
  await clock.advance(999)
  t.equal(inst.usage, undefined, 'not before')
  await clock.advance(1)
  t.same(inst.usage, { cpuPercent: 2, rssBytes: 1 * MB }, 'status has figures after 1 s')
  await clock.advance(4999)
  t.equal(samples, 1)
  await clock.advance(1)
  t.equal(samples, 2, 'then every intervalMs')
  monitor.stop()
})

t.test(
  'idle: every idleIntervalMs after a quiet minute; a change brings a sample within a second; a memory limit keeps intervalMs',
  async (t) => {
    const clock = new FakeClock()
    const { asInstance } = instance({})
    const limited = instance({ maxMemoryMb: 100 })
    let withLimit = false
    const at: number[] = []
    const monitor = new Monitor(
      () => (withLimit ? [asInstance, limited.asInstance] : [asInstance]),
      {
        intervalMs: 5000,
        idleIntervalMs: 30_000,
        clock,
        sample: (pgids) => {
          at.push(clock.monotonic())
          return each(() => ({ cpuPercent: 1, rssBytes: MB }))(pgids)
        },
        probe: () => Promise.resolve(),
        onError: (m) => t.fail(m),
      },
    )
    const start = clock.monotonic()
    const gaps = () => at.slice(1).map((x, i) => x - at[i]!)
    monitor.start()
    await clock.advance(130_000)
    const since = at.map((x) => x - start)
    t.same(
      since.slice(0, 13),
      [1000, 6000, 11000, 16000, 21000, 26000, 31000, 36000, 41000, 46000, 51000, 56000, 61000],
    )
    t.same(gaps().slice(12), [30_000, 30_000], 'then every idleIntervalMs')
    const before = at.length
    const changedAt = clock.monotonic()
    monitor.changed()
    await clock.advance(1000)
    t.equal(at.length, before + 1, 'a change: a sample within a second')
    t.equal(at.at(-1)! - changedAt, 1000)
    await clock.advance(10_000)
    t.same(gaps().slice(-2), [5000, 5000], 'and every intervalMs again')
    withLimit = true
    await clock.advance(120_000)
    t.same(
      [...new Set(gaps().slice(-20))],
      [5000],
      'a running instance with maxMemoryMb: every intervalMs',
    )
    monitor.stop()
  },
)

t.test(
  'one sampler call a pass for every running instance; a group gone gives no figure',
  async (t) => {
    const clock = new FakeClock()
    const a = instance({})
    const b = instance({})
    const c = instance({})
    b.inst.pid = 200
    c.inst.pid = undefined // stopped
    for (const x of [a, b, c]) x.inst.recordUsage({ cpuPercent: 9, rssBytes: 9 })
    const calls: number[][] = []
    const monitor = new Monitor(() => [a.asInstance, b.asInstance, c.asInstance], {
      intervalMs: 1000,
      clock,
      sample: (pgids) => {
        calls.push([...pgids])
        // Group 200 vanished between the passes.
        return Promise.resolve(new Map([[100, { cpuPercent: 3, rssBytes: 5 * MB }]]))
      },
      probe: () => Promise.resolve(),
      onError: (m) => t.fail(m),
    })
    monitor.start()
    await clock.advance(1000)
    t.same(calls, [[100, 200]], 'one call naming both running groups')
    t.same(a.inst.usage, { cpuPercent: 3, rssBytes: 5 * MB })
    t.equal(b.inst.usage, undefined, 'no sample for the group that is gone')
    t.equal(c.inst.usage, undefined, 'none for a stopped instance')
    monitor.stop()
  },
)

t.test('a sample read while the instance restarted is not given to the new process', async (t) => {
  const clock = new FakeClock()
  const { inst, asInstance } = instance({})
  const monitor = new Monitor(() => [asInstance], {
    intervalMs: 1000,
    clock,
    sample: (pgids) => {
      inst.pid = 101 // restarted during the read
      return Promise.resolve(new Map(pgids.map((p) => [p, { cpuPercent: 1, rssBytes: MB }])))
    },
    probe: () => Promise.resolve(),
    onError: (m) => t.fail(m),
  })
  monitor.start()
  await clock.advance(1000)
  t.equal(inst.usage, undefined)
  monitor.stop()
})

t.test(
  'each sample pass is kept in the history: usage and restarts of every instance',
  async (t) => {
    const clock = new FakeClock()
    const history = new MetricHistory({ clock })
    const { inst, asInstance } = instance({})
    const restarts = { n: 0 }
    Object.defineProperty(inst, 'restarts', { get: () => restarts.n })
    const stopped = {
      id: 'web#1',
      pid: undefined,
      state: 'stopped',
      restarts: 3,
      recordUsage: () => {},
      spec: {},
    } as unknown as Instance
    let cpu = 0
    const monitor = new Monitor(() => [asInstance, stopped], {
      intervalMs: 5000,
      clock,
      sample: each(() => ({ cpuPercent: ++cpu, rssBytes: 10 * MB })),
      probe: () => Promise.resolve(),
      onError: (m) => t.fail(m),
      history,
    })
    monitor.start()
    await clock.advance(1000) // the first sample
    restarts.n = 1
    await clock.advance(5000)
    monitor.stop()
    const series = history.series()
    t.same(
      series['web#0']!.map(([, c, r, n]) => [c, r, n]),
      [
        [1, 10 * MB, 0],
        [2, 10 * MB, 1],
      ],
    )
    t.same(
      series['web#1']!.map(([, c, r, n]) => [c, r, n]),
      [
        [null, null, 3],
        [null, null, 3],
      ],
      'an instance without a process: no figures, its restarts',
    )
  },
)
