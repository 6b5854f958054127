// The status page of control.http in a real browser (headless Chromium from Debian, driven by
// playwright-core): its table against `status --json`, a SIGKILLed instance's restart shown
// live (no reload), the standby node of a two-node cluster and a switchover from the page,
// actions refused without the token and done with it, a page of another origin refused, the
// phone layout, and (on endpoints in this process) rollouts, resume and a supervisor restart.
// Ports 29300-29399 belong to this file (test files run in parallel).
import { readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { dirname, join } from 'node:path'
import type { Page } from 'playwright-core'
import t, { type Test } from 'tap'
import { startHttpEndpoints } from '../../src/control/http-endpoints.js'
import { systemClock } from '../../src/seams/clock.js'
import { EventStream } from '../../src/supervisor/event-stream.js'
import { chromiumCheck, launchBrowser } from '../helpers/browser.js'
import { statusInstance } from '../helpers/status.js'
import { cluster, node } from '../helpers/ha-cluster.js'
import { noActions } from '../helpers/sse.js'
import { needTool } from '../helpers/need-tool.js'
import {
  fixture,
  status,
  Supervisor,
  tempDir,
  waitUntil,
  WAIT_MS,
  writeConfig,
} from '../helpers/supervisor.js'

interface Row {
  id: string
  state: string
  port: string
  pid: string
  restarts: string
}

/** The instances table as the page shows it. */
const rows = (page: Page): Promise<Row[]> =>
  page.$$eval('#instances tbody tr', (trs) =>
    trs.map((tr) => {
      const cell = (k: string) => tr.querySelector(`[data-k=${k}]`)?.textContent ?? ''
      return {
        id: cell('id'),
        state: (tr as HTMLElement).dataset.state ?? '',
        port: cell('port'),
        pid: cell('pid'),
        restarts: cell('restarts'),
      }
    }),
  )

/** A standalone supervisor with two web instances and control.http on `base`. */
const standalone = async (t: Test, base: number) => {
  const dir = tempDir(t)
  const config = writeConfig(
    dir,
    { web: fixture({ instances: 2, port: base + 1 }) },
    { control: { http: { port: base } }, metrics: { intervalMs: 1000 } },
  )
  const sup = new Supervisor(config)
  t.teardown(() => sup.kill())
  await sup.waitLog('all ready', (r) => r.event === 'all-ready')
  const token = readFileSync(join(dir, 'state', 'http.token'), 'utf8').trim()
  return { dir, config, sup, token, url: `http://127.0.0.1:${base}/` }
}

t.test('the page in Chromium', async (t) => {
  if (!needTool(t, chromiumCheck())) return
  const s = await standalone(t, 29300)
  const browser = await launchBrowser(t)
  const page = await browser.newPage()
  const errors: string[] = []
  page.on('pageerror', (e) => errors.push(e.message))
  // A Content-Security-Policy violation or a failed request shows up here, not as a page error.
  page.on('console', (m) => {
    // (The 401 this test asks for on purpose is logged by the browser too.)
    if (m.type() === 'error' && !/status of 401/.test(m.text())) errors.push(m.text())
  })
  let navigations = 0
  page.on('framenavigated', (f) => {
    if (f === page.mainFrame()) navigations++
  })
  await page.goto(s.url)
  await page.waitForSelector('#conn.s-live', { timeout: WAIT_MS })

  await t.test('the table has the same rows as status --json', async (t) => {
    const st = await status(s.config)
    const want = st.instances.map((i) => ({
      id: i.id,
      state: i.state,
      port: String(i.port),
      pid: String(i.pid),
      restarts: String(i.restarts),
    }))
    const got = await waitUntil('the page shows them', async () => {
      const r = await rows(page)
      return JSON.stringify(r) === JSON.stringify(want) && r
    })
    t.same(got, want)
    t.equal(
      await page.textContent('#nodes tbody tr[data-role=standalone] td'),
      `${st.node} (this one)`,
    )
  })

  await t.test('a SIGKILLed instance shows its restart without a reload', async (t) => {
    await page.evaluate(() => ((window as unknown as { marker: string }).marker = 'same page'))
    const before = navigations
    const victim = (await status(s.config)).instances.find((i) => i.id === 'web#1')!
    process.kill(victim.pid!, 'SIGKILL')
    const handle = await page.waitForFunction(
      (pid) => {
        const tr = document.querySelector<HTMLElement>('#instances tr[data-id="web#1"]')
        return (
          tr &&
          tr.dataset.state === 'ready' &&
          tr.dataset.pid !== String(pid) &&
          tr.querySelector('[data-k=restarts]')?.textContent === '1' &&
          tr.querySelector('[data-k=exit]')?.textContent
        )
      },
      victim.pid,
      { timeout: WAIT_MS, polling: 50 },
    )
    t.match(await handle.jsonValue(), /^killed by SIGKILL after/, 'its last exit')
    t.equal(
      await page.evaluate(() => (window as unknown as { marker?: string }).marker),
      'same page',
      'the page was not reloaded',
    )
    t.equal(navigations, before, 'no navigation')
    const now = (await status(s.config)).instances.find((i) => i.id === 'web#1')!
    t.equal(
      await page.textContent('#instances tr[data-id="web#1"] [data-k=pid]'),
      String(now.pid),
      'the new pid, as status has it',
    )
    await page.waitForSelector('#events li[data-event=exited]')
    t.match(await page.textContent('#events'), /web#1 exited/)
  })

  await t.test('charts: one card per instance, drawn as inline SVG', async (t) => {
    await page.waitForFunction(
      () => document.querySelectorAll('#charts .chart svg path').length >= 4,
      undefined,
      { timeout: WAIT_MS },
    )
    t.same(
      await page.$$eval('#charts .chart', (cs) => cs.map((c) => (c as HTMLElement).dataset.id)),
      ['web#0', 'web#1'],
    )
    await page.waitForFunction(
      () =>
        document.querySelector('#charts .chart[data-id="web#1"] [data-k=restarts-hour]')
          ?.textContent === '1 in the last hour',
      undefined,
      { timeout: WAIT_MS },
    )
    t.pass('the restart is in the hour chart')
  })

  await t.test('actions: refused without the token (401), done with it', async (t) => {
    t.ok(await page.isDisabled('#instances tr[data-id="web#0"] button[data-action=restart]'))
    const refused = await page.evaluate(async () => {
      const res = await fetch('restart', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ targets: ['web#0'] }),
      })
      return res.status
    })
    t.equal(refused, 401)
    await s.sup.waitLog(
      'the refusal logged with its source',
      (r) => r.event === 'http-action' && r.status === 401 && r.from === '127.0.0.1',
    )
    t.equal((await status(s.config)).instances.find((i) => i.id === 'web#0')!.restarts, 0)
    await page.fill('#token', s.token)
    await page.click('#unlock')
    await page.waitForSelector('#lock:not([hidden])')
    t.equal(
      await page.evaluate(() => sessionStorage.getItem('tandem.token')),
      s.token,
      'kept in this tab',
    )
    await page.click('#instances tr[data-id="web#0"] button[data-action=restart]')
    await page.waitForFunction(
      () =>
        document.querySelector('#instances tr[data-id="web#0"] [data-k=restarts]')?.textContent ===
          '1' &&
        document.querySelector<HTMLElement>('#instances tr[data-id="web#0"]')?.dataset.state ===
          'ready',
      undefined,
      { timeout: WAIT_MS },
    )
    t.match(await page.textContent('#notice'), 'restart web#0: done')
    const logged = await s.sup.waitLog(
      'the action logged',
      (r) => r.event === 'http-action' && r.outcome === 'done',
    )
    t.match(logged, { action: 'restart', targets: ['web#0'], from: '127.0.0.1', status: 200 })
    t.notMatch(JSON.stringify(s.sup.records), s.token, 'the token is never logged')
  })

  await t.test('a page of another origin is refused, token or not', async (t) => {
    const other = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' })
      res.end('<!doctype html><title>elsewhere</title>')
    })
    await new Promise<void>((r) => other.listen(29310, '127.0.0.1', r))
    t.teardown(() => other.close())
    const evil = await browser.newPage()
    await evil.goto('http://127.0.0.1:29310/')
    const outcome = await evil.evaluate(
      async ({ url, token }) => {
        const results: string[] = []
        // With the token: a preflight, refused, so the browser never sends the POST.
        try {
          const r = await fetch(`${url}restart`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
            body: JSON.stringify({ targets: ['web#1'] }),
          })
          results.push(`answered ${r.status}`)
        } catch (e) {
          results.push(`blocked: ${(e as Error).message}`)
        }
        // A simple request (what a form could send): it arrives, and is refused.
        await fetch(`${url}restart`, {
          method: 'POST',
          mode: 'no-cors',
          headers: { 'content-type': 'text/plain' },
          body: JSON.stringify({ targets: ['web#1'] }),
        })
        results.push('sent')
        return results
      },
      { url: s.url, token: s.token },
    )
    t.match(outcome, [/^blocked/, 'sent'])
    await s.sup.waitLog(
      'the preflight refused',
      (r) => r.event === 'http-action' && r.action === 'OPTIONS /restart' && r.status === 403,
    )
    const simple = await s.sup.waitLog(
      'the simple request refused',
      (r) => r.event === 'http-action' && r.action === 'restart' && r.status === 403,
    )
    t.match(simple, { from: '127.0.0.1', reason: /Sec-Fetch-Site is same-site|Origin/ })
    t.equal(
      (await status(s.config)).instances.find((i) => i.id === 'web#1')!.restarts,
      1,
      'only the kill restarted it',
    )
    await evil.close()
  })

  await t.test('on a phone: one column, nothing wider than the screen', async (t) => {
    const phone = await browser.newPage()
    await phone.setViewportSize({ width: 360, height: 740 })
    await phone.goto(s.url)
    await phone.waitForSelector('#instances tr[data-id="web#1"] [data-k=pid]:not(:empty)')
    await phone.waitForFunction(() => document.querySelectorAll('#charts .chart').length === 2)
    const widths = await phone.evaluate(() => ({
      page: document.documentElement.scrollWidth,
      screen: window.innerWidth,
      header: getComputedStyle(document.querySelector('#instances thead')!).display,
      label: getComputedStyle(document.querySelector('#instances td[data-k=state]')!, '::before')
        .content,
    }))
    t.ok(
      widths.page <= widths.screen,
      `page ${widths.page} px wide on a ${widths.screen} px screen`,
    )
    t.equal(widths.header, 'none', 'no table header: each cell is labelled instead')
    t.equal(widths.label, '"state"')
    await phone.close()
  })

  t.same(errors, [], 'no script error on the page')
})

t.test(
  'a two-node cluster: each page shows the standby as such; switchover from the page',
  async (t) => {
    if (!needTool(t, chromiumCheck())) return
    const shared = await cluster(t)
    const a = node(t, shared, 'a', 29320)
    await a.sup.waitLog('a promoted', (r) => r.event === 'promoted')
    const b = node(t, shared, 'b', 29330)
    await b.sup.waitLog('b web ready', (r) => r.event === 'ready' && r.component === 'web')
    const browser = await launchBrowser(t)
    const roles = async (url: string) => {
      const page = await browser.newPage()
      await page.goto(url)
      await page.waitForFunction(
        () => document.querySelectorAll('#nodes tbody tr').length === 2,
        undefined,
        { timeout: WAIT_MS },
      )
      const r = await page.$$eval('#nodes tbody tr', (trs) =>
        trs.map((tr) => [
          (tr as HTMLElement).dataset.node,
          (tr as HTMLElement).dataset.role,
          tr.querySelector('td:nth-child(2)')?.textContent,
        ]),
      )
      const title = await page.textContent('#title')
      await page.close()
      return { r, title }
    }
    const onB = await roles(`http://127.0.0.1:${b.http}/`)
    t.same(onB.r, [
      ['b', 'standby', '☆ standby'],
      ['a', 'active', '★ active'],
    ])
    t.equal(onB.title, 'node b · standby')
    const onA = await roles(`http://127.0.0.1:${a.http}/`)
    t.same(onA.r, [
      ['a', 'active', '★ active'],
      ['b', 'standby', '☆ standby'],
    ])

    // Switch over from a's page, with its token: a becomes the standby, b the active node.
    const anonymous = await fetch(`http://127.0.0.1:${a.http}/switchover`, { method: 'POST' })
    t.equal(anonymous.status, 401, 'not without the token')
    const token = readFileSync(join(dirname(a.config), 'state', 'http.token'), 'utf8').trim()
    const page = await browser.newPage()
    page.on('dialog', (d) => void d.accept())
    await page.goto(`http://127.0.0.1:${a.http}/#token=${token}`)
    t.equal(new URL(page.url()).hash, '', 'the token leaves the address at once')
    await page.click('#nodes tr[data-node=a] button[data-action=switchover]')
    await page.waitForFunction(
      () =>
        document.querySelector<HTMLElement>('#nodes tr[data-node=a]')?.dataset.role === 'standby' &&
        document.querySelector<HTMLElement>('#nodes tr[data-node=b]')?.dataset.role === 'active',
      undefined,
      { timeout: WAIT_MS },
    )
    t.equal(await page.textContent('#title'), 'node a · standby')
    t.equal(
      await page.$('#nodes button[data-action=switchover]'),
      null,
      'no switchover on a standby',
    )
    const logged = await a.sup.waitLog(
      'the switchover logged',
      (r) => r.event === 'http-action' && r.action === 'switchover' && r.status !== 401,
    )
    t.match(logged, { outcome: 'done', from: '127.0.0.1', status: 200 })
    await b.sup.waitLog('b promoted', (r) => r.event === 'promoted')
  },
)

/** control.http in this process, on a stream the test publishes to (as a supervisor would). */
const endpoints = async (port: number, pid: number, events: EventStream) =>
  startHttpEndpoints(
    { host: '127.0.0.1', port },
    {
      status: () => ({
        node: 'n1',
        role: 'standalone',
        pid,
        config: '/c.json',
        instances: [statusInstance('gateway#0'), statusInstance('gateway#1')],
      }),
      ready: () => true,
      leader: () => undefined,
      self: () => ({ rssBytes: 1, eventLoopLagMs: { p50: 0, p99: 0, max: 0 }, uptimeMs: 1 }),
    },
    () => {},
    {
      events,
      clock: systemClock,
      pid,
      node: 'n1',
      token: () => 'unused',
      actions: noActions(),
      onAction: () => {},
    },
  )

t.test(
  'rollouts from the events; a reconnect resumes; a new supervisor starts afresh',
  async (t) => {
    if (!needTool(t, chromiumCheck())) return
    const events = new EventStream({ node: 'n1', clock: systemClock })
    let close = await endpoints(29340, 1111, events)
    t.teardown(() => close())
    const browser = await launchBrowser(t)
    const page = await browser.newPage()
    await page.goto('http://127.0.0.1:29340/')
    await page.waitForSelector('#conn.s-live')
    events.publish({ event: 'rollout.started', message: 'upgrade of gateway begins', of: 2 })
    events.publish({ event: 'rollout.replaced', message: 'gateway#0 replaced', n: 1, of: 2 })
    const progress = () => page.textContent('#rollouts')
    await page.waitForFunction(() =>
      /1 of 2 replaced/.test(document.querySelector('#rollouts')!.textContent),
    )
    t.match(await progress(), /▶ in progress 1 of 2 replaced/)
    t.equal(await page.getAttribute('#rollouts [role=progressbar]', 'aria-valuenow'), '1')

    // The stream breaks (the listener closes); the browser reconnects with Last-Event-ID.
    await close()
    await page.waitForSelector('#conn.s-reconnecting')
    events.publish({ event: 'rollout.replaced', message: 'gateway#1 replaced', n: 2, of: 2 })
    // Meanwhile the port answers 503 (as a supervisor shutting down does): a browser gives up
    // on such a stream for good; the page starts a new one, resuming where it was.
    let refused = 0
    const busy = createServer((req, res) => {
      if (req.url?.startsWith('/events')) refused++
      res.writeHead(503, { 'content-type': 'application/json' })
      res.end('{"error":{"code":"EBUSY","message":"shutting down"}}')
    })
    await new Promise<void>((r) => busy.listen(29340, '127.0.0.1', r))
    await waitUntil('two streams refused: the browser and then the page tried', () => refused >= 2)
    t.match(await page.textContent('#conn'), /reconnecting/)
    await new Promise<void>((r) => {
      busy.close(() => r())
      busy.closeAllConnections()
    })
    events.publish({ event: 'rollout.done', message: 'upgrade done' })
    close = await endpoints(29340, 1111, events)
    await page.waitForFunction(
      () => /✔ done/.test(document.querySelector('#rollouts')!.textContent),
      undefined,
      {
        timeout: WAIT_MS,
      },
    )
    t.match(await progress(), /✔ done 2 of 2 replaced/)
    const seqs = await page.$$eval('#events li', (lis) =>
      lis.map((li) => (li as HTMLElement).dataset.seq),
    )
    t.same(seqs, ['4', '3', '2', '1'], 'each event once, newest first, none missed while away')

    // Another supervisor on the port (a restart: sequence numbers begin again), which has
    // published more events (6) than the page had seen (4): the page must get all 6, not only
    // those after its seq 4.
    await close()
    const fresh = new EventStream({ node: 'n1', clock: systemClock })
    fresh.publish({ event: 'spawned', message: 'gateway#0 spawned', id: 'gateway#0' })
    for (let i = 1; i < 6; i++)
      fresh.publish({ event: 'ready', message: `gateway#0 ready ${i}`, id: 'gateway#0' })
    close = await endpoints(29340, 2222, fresh)
    await page.waitForFunction(
      () => /supervisor restarted/.test(document.querySelector('#notice')!.textContent),
      undefined,
      {
        timeout: WAIT_MS,
      },
    )
    await page.waitForFunction(
      () => document.querySelectorAll('#events li').length === 6,
      undefined,
      {
        timeout: WAIT_MS,
      },
    )
    t.same(
      await page.$$eval('#events li', (lis) => lis.map((li) => (li as HTMLElement).dataset.seq)),
      ['6', '5', '4', '3', '2', '1'],
      "the new supervisor's events, every one, and only those",
    )
    t.match(await progress(), /none among/, 'the old rollout is gone with them')
    t.match(await page.textContent('#events'), /gateway#0 spawned/)
  },
)
