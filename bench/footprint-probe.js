// Loaded into the supervisor by bench/footprint.js's soak (`node --import`), never by tandem
// itself: tandem has no request that reports its heap or its timers. Every 10 s it appends
// {t, thread, heapUsed, heapTotal, external, arrayBuffers, rss, timers, handles, resources, spaces} to the
// file named by FOOTPRINT_PROBE (heapTotal: what V8 has committed for the heap; external and
// arrayBuffers: Buffers and the like, outside it; spaces: each heap space's [committed, used] bytes): timers are the active Timeouts of process.getActiveResourcesInfo() (this probe's own interval is one of
// them), handles every active resource (sockets, pipes, child processes, timers, pending
// requests). Its interval is unref'd: it never keeps the supervisor alive. `--import` loads it in
// every thread, the log thread included: each line says which (`thread`: main or log), and the
// heap, timers and handles are that thread's own (rss is the process's).
import { appendFileSync } from 'node:fs'
import { getHeapSpaceStatistics } from 'node:v8'
import { isMainThread } from 'node:worker_threads'

const file = process.env.FOOTPRINT_PROBE
if (file) {
  const t0 = Date.now()
  const timer = setInterval(() => {
    // FOOTPRINT_PROBE_GC=1 with NODE_OPTIONS=--expose-gc: a full collection first, so that what
    // is measured is what is still referenced, not garbage waiting for the next major GC.
    if (process.env.FOOTPRINT_PROBE_GC === '1') globalThis.gc?.()
    const resources = process.getActiveResourcesInfo()
    const counts = {}
    for (const r of resources) counts[r] = (counts[r] ?? 0) + 1
    const m = process.memoryUsage()
    const spaces = {}
    for (const sp of getHeapSpaceStatistics())
      spaces[sp.space_name.replace(/_space$/, '')] = [sp.space_size, sp.space_used_size]
    try {
      appendFileSync(
        file,
        JSON.stringify({
          t: Math.round((Date.now() - t0) / 1000),
          thread: isMainThread ? 'main' : 'log',
          heapUsed: m.heapUsed,
          heapTotal: m.heapTotal,
          external: m.external,
          arrayBuffers: m.arrayBuffers,
          rss: m.rss,
          timers: counts.Timeout ?? 0,
          handles: resources.length,
          resources: counts,
          spaces,
        }) + '\n',
      )
    } catch {
      // the benchmark's temp dir is gone: it is ending
    }
  }, 10_000)
  timer.unref()
}
