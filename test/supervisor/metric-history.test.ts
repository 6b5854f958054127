import t from 'tap'
import {
  HISTORY_BUCKET_MS,
  HISTORY_WINDOW_MS,
  MetricHistory,
} from '../../src/supervisor/metric-history.js'

/** A wall clock the test moves. */
const clockAt = (start: number) => {
  const c = { t: start, now: () => c.t }
  return c
}

t.test('policy constants: an hour in 5 s buckets', async (t) => {
  t.equal(HISTORY_WINDOW_MS, 3_600_000)
  t.equal(HISTORY_BUCKET_MS, 5_000)
  t.equal(new MetricHistory({ clock: clockAt(0) }).maxPoints, 721)
})

t.test('keeps one point per instance per sample, in order', async (t) => {
  const clock = clockAt(1_000_000)
  const h = new MetricHistory({ clock })
  h.record([
    { id: 'a#0', cpuPercent: 5, rssBytes: 100, restarts: 0 },
    { id: 'b#0', restarts: 2 },
  ])
  clock.t += 5000
  h.record([{ id: 'a#0', cpuPercent: 7, rssBytes: 120, restarts: 1 }])
  t.same(h.series(), {
    'a#0': [
      [1_000_000, 5, 100, 0, 0],
      [1_005_000, 7, 120, 1, 0],
    ],
    'b#0': [[1_000_000, null, null, 2, 2]],
  })
})

t.test('samples within one bucket merge: highest CPU and RSS, latest restarts', async (t) => {
  const clock = clockAt(1_000_000)
  const h = new MetricHistory({ clock })
  h.record([{ id: 'a', cpuPercent: 50, rssBytes: 100, restarts: 0 }])
  clock.t += 1000
  h.record([{ id: 'a', cpuPercent: 10, rssBytes: 300, restarts: 1 }])
  clock.t += 1000
  h.record([{ id: 'a', restarts: 1 }])
  t.same(
    h.series().a,
    [[1_002_000, 50, 300, 1, 0]],
    'the time of the latest sample; the restart within the bucket counted from before it',
  )
})

t.test('a lower restart count (the instance replaced) starts afresh', async (t) => {
  const clock = clockAt(0)
  const h = new MetricHistory({ clock })
  h.record([{ id: 'a', restarts: 4 }])
  clock.t += 5000
  h.record([{ id: 'a', restarts: 0 }])
  clock.t += 5000
  h.record([{ id: 'a', restarts: 1 }])
  t.same(
    h.series().a!.map((p) => p[3] - p[4]),
    [0, 0, 1],
  )
})

t.test('bounded: nothing older than the window, however long it runs', async (t) => {
  const clock = clockAt(0)
  const h = new MetricHistory({ clock, windowMs: 60_000, bucketMs: 1000 })
  for (let k = 0; k < 10_000; k++) {
    h.record([{ id: 'a', cpuPercent: k, rssBytes: k, restarts: k }])
    clock.t += 250 // four samples a bucket
  }
  const a = h.series().a!
  t.ok(a.length <= h.maxPoints, `${a.length} points, at most ${h.maxPoints}`)
  t.ok(a.length >= 60, 'the whole window')
  t.ok(a[0]![0] >= clock.t - 60_000, 'oldest point within the window')
  t.equal(a[a.length - 1]![1], 9999, 'the last sample is there')
  t.ok(
    a.every((p, i) => i === 0 || p[0] - a[i - 1]![0] === 1000),
    "one point a bucket, oldest first, across the ring's wrap",
  )
})

t.test('a series of an instance no longer sampled ages out', async (t) => {
  const clock = clockAt(0)
  const h = new MetricHistory({ clock, windowMs: 10_000, bucketMs: 1000 })
  h.record([{ id: 'gone', cpuPercent: 1, rssBytes: 1, restarts: 0 }])
  clock.t += 5000
  h.record([{ id: 'kept', cpuPercent: 1, rssBytes: 1, restarts: 0 }])
  t.same(Object.keys(h.series()).sort(), ['gone', 'kept'])
  clock.t += 6000
  t.same(Object.keys(h.series()), ['kept'], 'read alone prunes')
})

t.test('series() gives copies', async (t) => {
  const h = new MetricHistory({ clock: clockAt(0) })
  h.record([{ id: 'a', cpuPercent: 1, rssBytes: 1, restarts: 0 }])
  h.series().a![0]![1] = 99
  t.equal(h.series().a![0]![1], 1)
})

t.test(
  'listeners get each pass; one that throws is reported, the others still get it',
  async (t) => {
    const errors: unknown[] = []
    const clock = clockAt(42)
    const h = new MetricHistory({ clock, onListenerError: (e) => errors.push(e) })
    const got: unknown[] = []
    h.subscribe(() => {
      throw new Error('boom')
    })
    const off = h.subscribe((at, samples) => got.push([at, samples]))
    const pass = [{ id: 'a', cpuPercent: 1, rssBytes: 2, restarts: 3 }]
    h.record(pass)
    off()
    h.record(pass)
    t.same(got, [[42, pass]])
    t.equal(errors.length, 2)
  },
)

t.test('bad sizes are refused, naming them', async (t) => {
  t.throws(
    () => new MetricHistory({ clock: clockAt(0), windowMs: 0 }),
    /windowMs: expected a positive integer, got 0/,
  )
  t.throws(
    () => new MetricHistory({ clock: clockAt(0), bucketMs: 1.5 }),
    /bucketMs: expected a positive integer/,
  )
  t.throws(
    () => new MetricHistory({ clock: clockAt(0), windowMs: 1000, bucketMs: 2000 }),
    /bucketMs: expected at most windowMs \(1000\), got 2000/,
  )
})
