// Zero downtime, shown: a real HAProxy configured by `tandem lb-config haproxy` in front of 3
// instances, a constant request load through it, and rolling upgrades underneath: one that
// succeeds, one whose new version never comes up and is rolled back. Not one request may fail.
// Ports 24900-24999 belong to this file (test files run in parallel).
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import {
  Haproxy,
  haproxyBin,
  lbConfig,
  startLoad,
  versionsServed,
  type LoadResult,
} from '../helpers/haproxy.js'
import { cli, fixture, status, Supervisor, tempDir, waitUntil } from '../helpers/supervisor.js'
import { needTool } from '../helpers/need-tool.js'

const bin = haproxyBin()
if (
  needTool(t, bin ? { ok: true } : { ok: false, why: 'needs haproxy (Debian package haproxy)' }) &&
  bin
) {
  /** 3 instances of `web` behind HAProxy, under load; `base` is this test's first port. */
  const setup = async (t: Test, base: number, agent: boolean) => {
    const dir = tempDir(t)
    const config = join(dir, 'tandem.json')
    const write = (web: Record<string, unknown>) =>
      writeFileSync(
        config,
        JSON.stringify({
          stateDir: 'state',
          ...(agent ? { control: { agent: { port: base + 9 } } } : {}),
          components: { web },
        }),
      )
    const web = (env: Record<string, string>, extra: Record<string, unknown> = {}) =>
      fixture(
        {
          instances: 3,
          ports: [base, base + 1, base + 2],
          readiness: { type: 'http', path: '/' },
          rollout: {
            drainMs: agent ? 1000 : 0,
            minReadyMs: 500,
            progressDeadlineMs: 5000,
          },
          ...extra,
        },
        { RESPONSE_DELAY_MS: '5', ...env },
      )
    write(web({ VERSION: 'v1' }))
    const sup = new Supervisor(config)
    t.teardown(() => sup.kill())
    await sup.waitLog('all ready', (r) => r.event === 'all-ready')
    const lb = new Haproxy(bin, dir, await lbConfig(config), base + 10, 'tandem_web')
    t.teardown(() => lb.kill())
    await lb.waitAllUp('tandem_web', 3)
    const url = `http://127.0.0.1:${lb.port}/`
    /** Total requests HAProxy's backend has seen: the load is flowing when this grows. */
    const served = async () => {
      const csv = await lb.command('show stat')
      const head = csv.split('\n')[0]!.replace(/^# /, '').split(',')
      const row = csv.split('\n').find((l) => l.startsWith('tandem_web,BACKEND,'))
      return Number(row?.split(',')[head.indexOf('stot')] ?? 0)
    }
    const moreServed = async (n: number) => {
      const from = await served()
      await waitUntil(
        `${n} more requests through HAProxy`,
        async () => (await served()) >= from + n,
      )
    }
    /** Server states HAProxy shows while `during` runs, sampled every 50 ms. */
    const watchStates = async <T>(during: Promise<T>) => {
      const seen = new Set<string>()
      let done = false
      const sampling = (async () => {
        while (!done) {
          for (const [sv, st] of Object.entries(await lb.servers('tandem_web')))
            seen.add(`${sv} ${st.split(' ')[0]}`)
          await new Promise((r) => setTimeout(r, 50))
        }
      })()
      try {
        return { result: await during, seen }
      } finally {
        done = true
        await sampling
      }
    }
    return { config, sup, lb, url, write, web, moreServed, watchStates }
  }

  /** The load ran, and not one of its requests failed. */
  const noneFailed = (t: Test, r: LoadResult) => {
    t.ok(r.requests >= 400, `load ran (${r.requests} requests, p99 ${r.p99Ms} ms)`)
    t.equal(r.errors, 0, 'no request went unanswered')
    t.equal(r.non2xx, 0, 'no request got an error status')
  }

  for (const agent of [true, false]) {
    t.test(
      `upgrade under load: 0 failed requests, every instance on the new version (${agent ? 'agent drains first' : 'no agent: retries alone'})`,
      async (t) => {
        const s = await setup(t, agent ? 24900 : 24920, agent)
        const load = startLoad(s.url)
        await s.moreServed(200)
        s.write(s.web({ VERSION: 'v2' }))
        const { result: up, seen } = await s.watchStates(cli(['upgrade', '--json', '-c', s.config]))
        t.equal(up.code, 0, `upgrade exits 0: ${up.err}`)
        await s.lb.waitAllUp('tandem_web', 3)
        await s.moreServed(200)
        noneFailed(t, await load.stop())
        t.same(await versionsServed(s.url, 12), { '200 v2': 12 }, 'all serve v2')
        if (agent) {
          for (const i of [0, 1, 2])
            t.ok(seen.has(`web.${i} DRAIN`), `HAProxy drained web.${i} before it stopped`)
        }
        t.equal(
          s.sup.count((r) => r.event === 'backoff' || r.event === 'failed'),
          0,
          'no instance crashed meanwhile',
        )
      },
    )
  }

  t.test(
    'a new version that never comes up is rolled back under load: 0 failed requests, v1 serving all along',
    async (t) => {
      const s = await setup(t, 24940, true)
      const load = startLoad(s.url)
      await s.moreServed(200)
      // The new version's program is missing: node exits 1 with "Cannot find module".
      s.write({
        ...s.web({ VERSION: 'v2' }),
        command: [process.execPath, join(tempDir(t), 'missing-server.js')],
      })
      const up = await cli(['upgrade', '-c', s.config])
      t.equal(up.code, 1, 'upgrade exits 1')
      t.match(up.err, /web#0/, 'names the instance')
      t.match(up.err, /Cannot find module/, 'with its stderr')
      t.match(up.out, /rolling back|rollback|rolled back/i, 'says it rolls back')
      await s.lb.waitAllUp('tandem_web', 3)
      await s.moreServed(200)
      noneFailed(t, await load.stop())
      t.same(await versionsServed(s.url, 12), { '200 v1': 12 }, 'all serve v1 again')
      const web1 = (await status(s.config)).instances.filter((i) => i.id !== 'web#0')
      t.ok(
        web1.every((i) => i.state === 'ready'),
        'the instances the rollout never reached kept running',
      )
    },
  )
}
