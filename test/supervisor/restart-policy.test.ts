import t from 'tap'
import type { InstanceSpec } from '../../src/config/plan.js'
import { DEFAULTS } from '../../src/config/schema.js'
import {
  isFailure,
  nextFailureCount,
  recordFailure,
  restartDelay,
  shouldRestart,
} from '../../src/supervisor/restart-policy.js'
import type { EndReason, ExitRecord } from '../../src/status.js'

type Backoff = InstanceSpec['backoff']
type CrashLoop = InstanceSpec['crashLoop']

const backoff = (over: Partial<Backoff> = {}): Backoff => ({
  initialMs: 100,
  factor: 2,
  maxMs: 10_000,
  jitter: 0,
  resetAfterMs: 30_000,
  ...over,
})

const crashLoop = (over: Partial<CrashLoop> = {}): CrashLoop => ({
  maxExits: 5,
  windowMs: 60_000,
  retry: false,
  ...over,
})

const exit = (reason: EndReason, over: Partial<ExitRecord> = {}): ExitRecord => ({
  reason,
  code: null,
  signal: null,
  killedAfterTimeout: false,
  uptimeMs: 1000,
  ...over,
})

t.test('pins the restart and stop defaults', async (t) => {
  t.same(DEFAULTS, {
    readinessTimeoutMs: 60_000,
    readinessIntervalMs: 10,
    stopTimeoutMs: 10_000,
    backoffInitialMs: 250,
    backoffFactor: 2,
    backoffMaxMs: 30_000,
    backoffJitter: 0.2,
    backoffResetAfterMs: 30_000,
    crashLoopMaxExits: 5,
    crashLoopWindowMs: 60_000,
    logMaxLineBytes: 65_536,
    logRotateMaxBytes: 52_428_800,
    logRotateKeep: 5,
    syslogMaxBufferBytes: 4 * 1024 * 1024,
    metricsIntervalMs: 5_000,
    metricsIdleIntervalMs: 30_000,
    healthIntervalMs: 10_000,
    healthTimeoutMs: 2_000,
    healthFailures: 3,
    memorySamples: 3,
    socketBacklog: 511,
    rolloutProgressDeadlineMs: 120_000,
    haRenewMs: 250,
    haSelfFenceMs: 1000,
    haTakeoverMs: 2000,
    haPollMs: 100,
    haMinMarginMs: 500,
    hookTimeoutMs: 10_000,
    hookMaxQueued: 100,
  })
})

t.test('restartDelay', async (t) => {
  t.test('restarts at once after the first failure of a series', async (t) => {
    t.equal(restartDelay(backoff({ jitter: 0.5 }), 1, 0), 0)
    t.equal(restartDelay(backoff({ jitter: 0.5 }), 1, 0.999), 0)
    t.equal(restartDelay(backoff(), 0, 0.5), 0, 'no failures yet: no delay')
  })

  t.test('waits initialMs * factor^(n-2) from the second failure on', async (t) => {
    const b = backoff()
    t.same(
      [2, 3, 4, 5, 6].map((n) => restartDelay(b, n, 0.5)),
      [100, 200, 400, 800, 1600],
    )
    const b3 = backoff({ initialMs: 10, factor: 3 })
    t.same(
      [2, 3, 4].map((n) => restartDelay(b3, n, 0.5)),
      [10, 30, 90],
    )
    t.same(
      [2, 3, 10].map((n) => restartDelay(backoff({ factor: 1 }), n, 0.5)),
      [100, 100, 100],
      'factor 1 is a constant delay',
    )
  })

  t.test('caps the delay at maxMs', async (t) => {
    const b = backoff({ maxMs: 1000 })
    t.same(
      [5, 6, 7, 8, 50].map((n) => restartDelay(b, n, 0.5)),
      [800, 1000, 1000, 1000, 1000],
    )
    t.equal(
      restartDelay(b, 10_000, 0.5),
      1000,
      'a huge failure count (factor^n = Infinity) is still capped',
    )
    t.equal(
      restartDelay(backoff({ initialMs: 5000, maxMs: 1000 }), 2, 0.5),
      1000,
      'initialMs above maxMs is capped',
    )
  })

  t.test('uses the defaults as documented: 0, 250, 500, ... capped at 30 s', async (t) => {
    const b = backoff({
      initialMs: DEFAULTS.backoffInitialMs,
      factor: DEFAULTS.backoffFactor,
      maxMs: DEFAULTS.backoffMaxMs,
      jitter: 0,
    })
    t.same(
      [1, 2, 3, 4, 8, 9, 10].map((n) => restartDelay(b, n, 0.5)),
      [0, 250, 500, 1000, 16_000, 30_000, 30_000],
    )
  })

  t.test('is exact with jitter 0, whatever random is', async (t) => {
    const b = backoff({ jitter: 0 })
    for (const r of [0, 0.25, 0.5, 0.999999]) t.equal(restartDelay(b, 4, r), 400, `random ${r}`)
  })

  t.test('spreads the delay by +-jitter', async (t) => {
    const b = backoff({ jitter: 0.2 })
    t.equal(restartDelay(b, 4, 0), 320, 'random 0: raw * (1 - jitter)')
    t.equal(restartDelay(b, 4, 0.5), 400, 'random 0.5: raw')
    t.equal(restartDelay(b, 4, 0.999999), 480, 'random ~1: raw * (1 + jitter)')
    for (let r = 0; r < 1; r += 0.01) {
      const d = restartDelay(b, 4, r)
      if (d < 320 || d > 480) t.fail(`random ${r} gave ${d}, outside [320, 480]`)
    }
    t.equal(restartDelay(backoff({ jitter: 1 }), 4, 0), 0, 'jitter 1 can go down to 0, never below')
  })

  t.test('never exceeds maxMs, even with jitter', async (t) => {
    const b = backoff({ maxMs: 1000, jitter: 0.2 })
    t.equal(restartDelay(b, 20, 0.999999), 1000)
    t.equal(restartDelay(b, 20, 0), 800, 'jitter still spreads downwards at the cap')
    t.equal(restartDelay(b, 5, 0.999999), 960, 'below the cap, jitter may add up to the cap')
    t.equal(restartDelay(b, 6, 0.999999), 1000, 'raw at the cap: no upward spread')
  })

  t.test('returns whole milliseconds', async (t) => {
    const d = restartDelay(backoff({ initialMs: 333, factor: 1.5, jitter: 0.3 }), 3, 0.123)
    t.equal(d, Math.round(d))
  })
})

t.test('nextFailureCount', async (t) => {
  const b = backoff({ resetAfterMs: 30_000 })
  t.test('counts consecutive failures of short runs', async (t) => {
    t.equal(nextFailureCount(b, 0, 100), 1)
    t.equal(nextFailureCount(b, 1, 100), 2)
    t.equal(nextFailureCount(b, 7, 29_999), 8)
  })
  t.test('starts a new series after a run of resetAfterMs or more', async (t) => {
    t.equal(nextFailureCount(b, 7, 30_000), 1, 'exactly resetAfterMs counts as healthy')
    t.equal(nextFailureCount(b, 7, 3_600_000), 1)
    t.equal(nextFailureCount(b, 0, 30_000), 1)
  })
  t.test('makes the first restart after a healthy run immediate again', async (t) => {
    const n = nextFailureCount(b, 6, 45_000)
    t.equal(restartDelay(b, n, 0.5), 0)
  })
})

t.test('recordFailure', async (t) => {
  t.test('keeps failures inside the window and drops older ones', async (t) => {
    const c = crashLoop({ maxExits: 5, windowMs: 60_000 })
    const r = recordFailure(c, [0, 10_000, 50_000], 70_000)
    t.same(r.times, [50_000, 70_000], 'failures 60 s or more old drop out')
    t.equal(r.looping, false)
    t.same(
      recordFailure(c, [10_001], 70_000).times,
      [10_001, 70_000],
      'a failure just under windowMs old stays',
    )
    t.same(
      recordFailure(c, [10_000], 70_000).times,
      [70_000],
      'a failure exactly windowMs old drops out',
    )
  })

  t.test('does not change the array it is given', async (t) => {
    const times = Object.freeze([1, 2, 3])
    recordFailure(crashLoop(), times, 4)
    t.same(times, [1, 2, 3])
  })

  t.test('loops at maxExits failures inside the window', async (t) => {
    const c = crashLoop({ maxExits: 3, windowMs: 1000 })
    let times: number[] = []
    const looping: boolean[] = []
    for (const now of [0, 100, 200]) {
      const r = recordFailure(c, times, now)
      times = r.times
      looping.push(r.looping)
    }
    t.same(looping, [false, false, true])
  })

  t.test('loops whatever the uptime: a server that dies every 12 s loops too', async (t) => {
    const c = crashLoop({
      maxExits: DEFAULTS.crashLoopMaxExits,
      windowMs: DEFAULTS.crashLoopWindowMs,
    })
    let times: number[] = []
    const looping: boolean[] = []
    for (let now = 1_000_000; looping.length < 5; now += 12_000) {
      const r = recordFailure(c, times, now)
      times = r.times
      looping.push(r.looping)
    }
    t.same(looping, [false, false, false, false, true])
  })

  t.test('does not loop when failures are spread wider than the window', async (t) => {
    const c = crashLoop({ maxExits: 5, windowMs: 60_000 })
    let times: number[] = []
    for (let i = 0; i < 50; i++) {
      const r = recordFailure(c, times, i * 15_000)
      times = r.times
      if (r.looping) t.fail(`looped at failure ${i}`)
      t.ok(times.length <= 4, 'at most four failures stay in the window')
    }
  })

  t.test('with maxExits 1 the first failure loops', async (t) => {
    t.equal(recordFailure(crashLoop({ maxExits: 1 }), [], 5).looping, true)
  })
})

t.test('isFailure', async (t) => {
  const cases: [string, ExitRecord, boolean][] = [
    ['exit 0 is not a failure', exit('exited', { code: 0 }), false],
    ['exit 1 is a failure', exit('exited', { code: 1 }), true],
    ['exit 143 is a failure', exit('exited', { code: 143 }), true],
    ['death by a signal is a failure', exit('exited', { code: null, signal: 'SIGKILL' }), true],
    [
      'death by SIGTERM we did not send is a failure',
      exit('exited', { code: null, signal: 'SIGTERM' }),
      true,
    ],
    ['a stop we asked for is not a failure', exit('stopped', { signal: 'SIGTERM' }), false],
    [
      'a stop that needed SIGKILL is not a failure',
      exit('stopped', { signal: 'SIGKILL', killedAfterTimeout: true }),
      false,
    ],
    ['not becoming ready is a failure', exit('not-ready'), true],
    ['a port held by another process is a failure', exit('port-in-use', { uptimeMs: 0 }), true],
    ['a spawn error is a failure', exit('spawn-error', { uptimeMs: 0, detail: 'ENOENT' }), true],
  ]
  for (const [name, e, want] of cases) t.equal(isFailure(e), want, name)
})

t.test('shouldRestart', async (t) => {
  const ends: [string, ExitRecord][] = [
    ['exit 0', exit('exited', { code: 0 })],
    ['exit 1', exit('exited', { code: 1 })],
    ['signal', exit('exited', { signal: 'SIGSEGV' })],
    ['stopped', exit('stopped', { code: 0 })],
    ['not-ready', exit('not-ready')],
    ['port-in-use', exit('port-in-use', { uptimeMs: 0 })],
    ['spawn-error', exit('spawn-error', { uptimeMs: 0 })],
  ]
  const expected: Record<InstanceSpec['restart'], Record<string, boolean>> = {
    'on-failure': {
      'exit 0': false,
      'exit 1': true,
      signal: true,
      stopped: false,
      'not-ready': true,
      'port-in-use': true,
      'spawn-error': false,
    },
    always: {
      'exit 0': true,
      'exit 1': true,
      signal: true,
      stopped: false,
      'not-ready': true,
      'port-in-use': true,
      'spawn-error': false,
    },
    never: {
      'exit 0': false,
      'exit 1': false,
      signal: false,
      stopped: false,
      'not-ready': false,
      'port-in-use': true,
      'spawn-error': false,
    },
  }
  for (const policy of ['on-failure', 'always', 'never'] as const) {
    t.test(`restart "${policy}"`, async (t) => {
      for (const [name, e] of ends) {
        t.equal(
          shouldRestart(policy, e),
          expected[policy][name],
          `${name}: ${expected[policy][name] ? 'restarts' : 'does not restart'}`,
        )
      }
    })
  }
  t.test('never restarts what we stopped on purpose', async (t) => {
    for (const policy of ['on-failure', 'always', 'never'] as const) {
      t.equal(shouldRestart(policy, exit('stopped', { code: 1 })), false, policy)
    }
  })
  t.test('never restarts a program that cannot be started', async (t) => {
    for (const policy of ['on-failure', 'always', 'never'] as const)
      t.equal(shouldRestart(policy, exit('spawn-error')), false, policy)
  })
  t.test(
    'always retries a port held by another process (it never ran), whatever the policy',
    async (t) => {
      for (const policy of ['on-failure', 'always', 'never'] as const)
        t.equal(shouldRestart(policy, exit('port-in-use')), true, policy)
    },
  )
})
