// Metrics, memory limits and liveness checks, end to end with real children.
// Ports 24800-24899 belong to this file (test files run in parallel).
import t, { type Test } from 'tap'
import {
  cli,
  fixture,
  status,
  Supervisor,
  tempDir,
  waitUntil,
  writeConfig,
} from '../helpers/supervisor.js'

const start = (
  t: Test,
  components: Record<string, unknown>,
  extra: Record<string, unknown> = {},
) => {
  const config = writeConfig(tempDir(t), components, { metrics: { intervalMs: 200 }, ...extra })
  const sup = new Supervisor(config)
  t.teardown(() => sup.kill())
  return { config, sup }
}

type Usage = { cpuPercent?: number; rssBytes?: number; state: string; pid?: number }

t.test("status shows each instance's CPU and memory", async (t) => {
  const { config, sup } = start(t, { web: fixture({ port: 24800 }, { HOG_MB: '40' }) })
  await sup.waitLog('ready', (r) => r.event === 'ready')
  const s = await waitUntil('a sample', async () => {
    const i = (await status(config)).instances[0] as unknown as Usage
    return i.rssBytes !== undefined && i
  })
  t.ok(s.rssBytes! > 40 * 1024 * 1024, `RSS ${s.rssBytes} counts the 40 MB it holds`)
  t.type(s.cpuPercent, 'number')
  const table = await cli(['status', '-c', config])
  t.match(table.out, /INSTANCE +PORT +PID +STATE +RESTARTS +UPTIME +CPU +MEM/)
  t.match(table.out, /web#0 +24800 +\d+ +ready +0 +\S+ +\d+\.\d% +\d+\.\dM/)
})

t.test(
  'an instance that stays above maxMemoryMb is restarted with reason memory; others are not',
  async (t) => {
    const { sup } = start(t, {
      hog: fixture({ port: 24810, maxMemoryMb: 150 }, { HOG_MB: '250' }),
      lean: fixture({ port: 24811, maxMemoryMb: 150 }), // a small Node server: ~50 MB
    })
    const restart = await sup.waitLog('memory restart', (r) => r.event === 'restart')
    t.match(restart, {
      component: 'hog',
      msg: /^hog#0 restarting: memory: RSS \d+ MB above maxMemoryMb 150 in 3 samples 200 ms apart$/,
    })
    const exited = await sup.waitLog(
      'hog exited',
      (r) => r.event === 'exited' && r.component === 'hog',
    )
    t.match(
      exited,
      { exit: { reason: 'memory', code: 0 } },
      'stopped by its stop signal (the fixture exits 0 on SIGTERM)',
    )
    await sup.waitLog(
      'hog spawned again',
      (r) => r.event === 'spawned' && r.component === 'hog' && r.childPid !== restart.childPid,
    )
    t.equal(
      sup.count((r) => r.component === 'lean' && r.event === 'spawned'),
      1,
      'lean was spawned once',
    )
    t.notOk(
      sup.records.some(
        (r) => r.component === 'lean' && (r.event === 'restart' || r.event === 'exited'),
      ),
      'and runs on untouched',
    )
  },
)

t.test('a server that hangs without exiting fails its health check and is restarted', async (t) => {
  const { config, sup } = start(t, {
    web: fixture(
      {
        port: 24820,
        health: { type: 'http', path: '/', intervalMs: 200, timeoutMs: 300, failures: 3 },
        stop: { signal: 'SIGTERM', timeoutMs: 500 },
      },
      { HANG_AFTER_MS: '500' },
    ),
  })
  const first = await sup.waitLog('ready', (r) => r.event === 'ready')
  const restart = await sup.waitLog('unhealthy restart', (r) => r.event === 'restart')
  t.match(
    restart.msg,
    /^web#0 restarting: unhealthy: http health check failed 3 times in a row, last: GET \/ timed out/,
  )
  const exited = await sup.waitLog('exited', (r) => r.event === 'exited')
  t.match(
    exited,
    { exit: { reason: 'unhealthy', signal: 'SIGKILL', killedAfterTimeout: true } },
    'hung: SIGTERM could not run, SIGKILL did',
  )
  await sup.waitLog('ready again', (r) => r.event === 'ready' && r.childPid !== first.childPid)
  const s = (await status(config)).instances[0]!
  t.match(s, { state: 'ready', restarts: 1, lastExit: { reason: 'unhealthy' } })
})

t.test('a health check passes quietly while the server answers', async (t) => {
  const { sup } = start(t, {
    web: fixture({
      port: 24830,
      health: { type: 'tcp', intervalMs: 100, timeoutMs: 1000, failures: 1 },
    }),
  })
  await sup.waitLog('ready', (r) => r.event === 'ready')
  // An observation window of ten probe intervals (failures: 1, so one failed probe would
  // restart it). It can only pass wrongly on a machine too slow to probe, never fail wrongly.
  const ready = sup.records.find((r) => r.event === 'ready')!.time as number
  await waitUntil('ten probe intervals', () => Date.now() - ready > 1000)
  t.notOk(sup.records.some((r) => r.event === 'restart'))
})

t.test('control.http serves /health, /ready, /metrics and /status, read-only', async (t) => {
  const base = 'http://127.0.0.1:24850'
  const { config, sup } = start(
    t,
    {
      web: fixture({ port: 24840, instances: 2 }),
      slow: fixture({ port: 24845 }, { NO_LISTEN: '1' }), // never ready
    },
    { control: { http: { port: 24850 } } },
  )
  await waitUntil(
    'both web instances ready',
    () => sup.count((r) => r.event === 'ready' && r.component === 'web') === 2,
  )
  const notYet = await fetch(`${base}/ready`)
  t.equal(notYet.status, 503)
  t.match(await notYet.json(), { ready: false, notReady: ['slow#0'] }, 'names what is not ready')
  const stopped = await cli(['stop', 'slow', '-c', config])
  t.equal(stopped.code, 0, stopped.err)
  t.equal((await fetch(`${base}/ready`)).status, 200, 'ready once what is not wanted is left out')
  const health = await fetch(`${base}/health`)
  t.equal(health.status, 200)
  t.match(await health.json(), { status: 'ok' })
  const metrics = await waitUntil('a CPU/RSS sample in /metrics', async () => {
    const text = await (await fetch(`${base}/metrics`)).text()
    return text.includes('tandem_instance_rss_bytes{') && text
  })
  t.match(metrics, /tandem_instance_up\{node="[^"]+",component="web",index="1",id="web#1"\} 1/)
  t.match(metrics, /tandem_instance_up\{[^}]*id="slow#0"\} 0/)
  t.match(metrics, /tandem_supervisor_rss_bytes\{node="[^"]+"\} \d+/)
  const viaHttp = (await (await fetch(`${base}/status`)).json()) as { instances: { id: string }[] }
  const viaSocket = await status(config)
  t.same(
    viaHttp.instances.map((i) => i.id),
    viaSocket.instances.map((i) => i.id),
    'the same status as the control socket',
  )
  const post = await fetch(`${base}/status`, { method: 'POST' })
  t.equal(post.status, 405, 'nothing can be changed over HTTP')
})
