// `npm run screenshot`: regenerates docs/status-page.png (desktop) and
// docs/status-page-phone.png (a phone's width) from a real two-node cluster: nodes zos-a and
// zos-b sharing a directory, each with discovery, three gateways and an active-only api
// (examples/server.js), requests sent to the gateways so that their CPU moves, gateway#1 killed
// twice and discovery#0 restarted through the page's action. Headless Chromium from Debian
// (/usr/bin/chromium) through playwright-core, as in the tests. Takes about a minute; uses
// ports 29380-29399. Leaves nothing running.
import { spawn, spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const CHROMIUM = JSON.parse(readFileSync(join(ROOT, 'scripts/chromium.json'), 'utf8'))
const BIN = join(ROOT, 'bin/tandem.js')
const SERVER = join(ROOT, 'examples/server.js')
const RUN_MS = Number(process.env.SCREENSHOT_RUN_MS ?? 45_000)

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const dir = mkdtempSync(join(tmpdir(), 'tandem-screenshot-'))
const shared = join(dir, 'shared')
const procs = []

const config = (node, base) => {
  const file = join(dir, `${node}.json`)
  const server = (name, extra) => ({
    command: [process.execPath, SERVER, name],
    env: { PORT: '{port}' },
    readiness: { type: 'http', path: '/health' },
    ...extra,
  })
  writeFileSync(
    file,
    JSON.stringify({
      node,
      stateDir: join(dir, `${node}-state`),
      logs: { dir: join(dir, `${node}-logs`), stdout: false },
      ha: { name: 'zowe', sharedDir: shared },
      metrics: { intervalMs: 1000 },
      control: { http: { port: base } },
      components: {
        discovery: server('discovery', { port: base + 1 }),
        gateway: server('gateway', { instances: 3, port: base + 2 }),
        api: server('api', { port: base + 5, runOn: 'active' }),
      },
    }),
  )
  return file
}

const start = (file) => {
  const p = spawn(process.execPath, [BIN, 'start', '-c', file], {
    detached: true,
    stdio: ['ignore', 'ignore', 'inherit'],
  })
  procs.push(p)
  return p
}

const status = async (port) => (await fetch(`http://127.0.0.1:${port}/status`)).json()

const waitFor = async (what, check, ms = 60_000) => {
  const end = Date.now() + ms
  for (;;) {
    try {
      if (await check()) return
    } catch {
      // not up yet
    }
    if (Date.now() > end) throw new Error(`screenshot: timed out waiting for ${what}`)
    await sleep(200)
  }
}

const allReady = async (port) => {
  const s = await status(port)
  return s.instances.every(
    (i) => i.state === 'ready' || (i.component === 'api' && s.role === 'standby'),
  )
}

let load = true
const traffic = async () => {
  // Bursts of requests to the gateways of node a, heavier now and then, so the CPU lines move.
  while (load) {
    const n = Math.random() < 0.2 ? 200 : 20
    await Promise.allSettled(
      Array.from({ length: n }, (_, k) =>
        fetch(`http://127.0.0.1:${29382 + (k % 3)}/`).then((r) => r.text()),
      ),
    )
    await sleep(150)
  }
}

const main = async () => {
  mkdirSync(shared)
  const a = config('zos-a', 29380)
  const b = config('zos-b', 29390)
  const init = spawnSync(process.execPath, [BIN, 'cluster', 'init', '-c', a], { encoding: 'utf8' })
  if (init.status !== 0) throw new Error(`tandem cluster init failed: ${init.stderr}`)
  start(a)
  await waitFor(
    'zos-a active',
    async () => (await fetch('http://127.0.0.1:29380/leader')).status === 200,
  )
  start(b)
  await waitFor('zos-a ready', () => allReady(29380))
  await waitFor('zos-b ready', () => allReady(29390))
  const traffic$ = traffic()
  const token = readFileSync(join(dir, 'zos-a-state', 'http.token'), 'utf8').trim()
  const began = Date.now()
  const kill = async (id) => {
    const inst = (await status(29380)).instances.find((i) => i.id === id)
    process.kill(inst.pid, 'SIGKILL')
  }
  await sleep(RUN_MS * 0.25)
  await kill('gateway#1')
  await sleep(RUN_MS * 0.2)
  const res = await fetch('http://127.0.0.1:29380/restart', {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ targets: ['discovery#0'] }),
  })
  if (!res.ok) throw new Error(`restart through control.http: ${res.status} ${await res.text()}`)
  await sleep(RUN_MS * 0.2)
  await kill('gateway#1')
  await sleep(Math.max(0, RUN_MS - (Date.now() - began)))
  await waitFor('zos-a ready again', () => allReady(29380))

  const profile = join(dir, 'chromium')
  const browser = await chromium.launchPersistentContext(profile, {
    // Debian's Chromium and the flags the tests use (test/helpers/browser.ts).
    executablePath: CHROMIUM.executablePath,
    args: CHROMIUM.args,
    viewport: { width: 1280, height: 900 },
    colorScheme: 'light',
  })
  try {
    const page = await browser.newPage()
    // The token through the address's fragment: the page keeps it in this tab and drops it from
    // the address.
    await page.goto(`http://127.0.0.1:29380/#token=${encodeURIComponent(token)}`)
    await page.waitForSelector('#conn.s-live')
    await page.waitForFunction(() => document.querySelectorAll('#nodes tbody tr').length === 2)
    await page.waitForFunction(() => document.querySelectorAll('#charts svg path').length > 0)
    await sleep(1500)
    await page.screenshot({ path: join(ROOT, 'docs/status-page.png'), fullPage: true })
    await page.setViewportSize({ width: 390, height: 844 })
    await sleep(500)
    await page.screenshot({ path: join(ROOT, 'docs/status-page-phone.png'), fullPage: false })
  } finally {
    await browser.close()
  }
  load = false
  await traffic$
}

const cleanup = async () => {
  load = false
  for (const p of procs) {
    try {
      process.kill(p.pid, 'SIGTERM')
    } catch {
      // gone
    }
  }
  await Promise.race([
    Promise.all(
      procs.map((p) => (p.exitCode !== null ? null : new Promise((r) => p.once('exit', r)))),
    ),
    sleep(15_000),
  ])
  for (const p of procs) {
    try {
      process.kill(-p.pid, 'SIGKILL')
    } catch {
      // gone
    }
  }
  rmSync(dir, { recursive: true, force: true })
}

main().then(
  async () => {
    await cleanup()
    console.log('docs/status-page.png and docs/status-page-phone.png written')
  },
  async (err) => {
    await cleanup()
    console.error(err)
    process.exitCode = 1
  },
)
