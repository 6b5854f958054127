// A flood of child output does not hold up the supervisor's main thread: the log has a thread of
// its own. Generous bounds only (the machine is shared); the tight figures are bench:logs'.
// Uses no ports.
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import t from 'tap'
import { controlRequest } from '../../src/control/client.js'
import { ROOT, Supervisor, tempDir, waitUntil, writeConfig } from '../helpers/supervisor.js'

const FLOODER = join(ROOT, 'test/fixtures/flooder.js')
/** Generous: a main thread that did the log's work took over a second under a flood. */
const STATUS_MAX_MS = 2000
const LAG_P99_MAX_MS = 250

interface Reply {
  instances: { id: string; state: string; lastExit?: { code: number | null } }[]
  supervisor?: { eventLoopLagMs: { p50: number; p99: number; max: number } }
}

t.test(
  'four children writing at full speed: status answers promptly and the main loop keeps turning',
  async (t) => {
    const dir = tempDir(t)
    const config = writeConfig(
      dir,
      {
        flood: {
          command: [process.execPath, FLOODER],
          env: { FLOOD_MS: '4000' },
          instances: 4,
          readiness: { type: 'none' },
          restart: 'never',
        },
      },
      // Rotation bounds the disk the flood takes (and rotates under it).
      {
        logs: { dir: join(dir, 'logs'), stdout: false, rotate: { maxBytes: 20_000_000, keep: 1 } },
      },
    )
    const sup = new Supervisor(config)
    t.teardown(() => sup.kill())
    const stateDir = join(dir, 'state')
    const ask = () => controlRequest(stateDir, 'GET', '/status') as Promise<Reply>
    await waitUntil('the control socket', () =>
      ask().then(
        () => true,
        () => false,
      ),
    )
    const latencies: number[] = []
    let last: Reply | undefined
    for (;;) {
      const t0 = performance.now()
      last = await ask()
      latencies.push(performance.now() - t0)
      // Stopped after an exit (before the start they are stopped too, without one).
      if (last.instances.every((i) => i.state === 'stopped' && i.lastExit)) break
      await new Promise((r) => setTimeout(r, 100))
    }
    t.ok(latencies.length >= 20, `status asked ${latencies.length} times during the flood`)
    const worst = Math.max(...latencies)
    t.ok(
      worst < STATUS_MAX_MS,
      `every status answered within ${STATUS_MAX_MS} ms: worst ${worst.toFixed(1)} ms`,
    )
    const lag = last.supervisor?.eventLoopLagMs
    t.ok(lag, 'status shows the event-loop lag')
    t.ok(
      lag!.p99 < LAG_P99_MAX_MS,
      `event-loop lag p99 under ${LAG_P99_MAX_MS} ms: ${JSON.stringify(lag)}`,
    )
    t.same(
      last.instances.map((i) => i.lastExit?.code),
      [0, 0, 0, 0],
      'every child flooded to its end and exited 0',
    )
    process.kill(sup.pid, 'SIGTERM')
    await sup.ended
  },
)
