// Listening sockets held by tandem (issue 17): real supervisors, real children, real kills and
// real clients on real ports. Ports 29850-29999 (this file: 29850-29869).
import { spawnSync } from 'node:child_process'
import { readdirSync, readlinkSync } from 'node:fs'
import { request } from 'node:http'
import { createServer } from 'node:net'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import {
  alive,
  cli,
  FIXTURE,
  killGroup,
  ROOT,
  status,
  Supervisor,
  tempDir,
  waitUntil,
  writeConfig,
} from '../helpers/supervisor.js'

const SOCKET_SERVER = join(ROOT, 'test/fixtures/socket-server.js')
const PY_SOCKET_SERVER = join(ROOT, 'test/fixtures/socket-server.py')

const start = (
  t: Test,
  components: Record<string, unknown>,
): { config: string; sup: Supervisor } => {
  const dir = tempDir(t)
  const config = writeConfig(dir, components)
  const sup = new Supervisor(config)
  t.teardown(() => sup.kill())
  return { config, sup }
}

/** Restarts at once and never gives up: the tests kill on purpose, many times. */
const tireless = {
  backoff: { initialMs: 0, maxMs: 20 },
  crashLoop: { maxExits: 1000, windowMs: 1000 },
}

/** One GET: the body, or the error code (ECONNREFUSED, ECONNRESET, ...). */
const get = (port: number, path = '/'): Promise<{ body?: string; error?: string }> =>
  new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false, timeout: 20_000 }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => (body += d))
      res.on('end', () =>
        resolve(res.statusCode === 200 ? { body } : { error: `HTTP ${res.statusCode}` }),
      )
      res.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }))
    })
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })))
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }))
    req.end()
  })

/** Socket inodes (`socket:[N]`) among a process's open fds. */
const socketInodes = (pid: number): Set<string> => {
  const out = new Set<string>()
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const link = readlinkSync(`/proc/${pid}/fd/${fd}`)
      if (link.startsWith('socket:')) out.add(link)
    } catch {
      // closed meanwhile
    }
  }
  return out
}

const readyPid = async (config: string, id: string, not?: number): Promise<number> =>
  waitUntil(`${id} ready${not ? ` with a pid other than ${not}` : ''}`, async () => {
    const i = (await status(config)).instances.find((x) => x.id === id)
    return i?.state === 'ready' && i.pid !== undefined && i.pid !== not && i.pid
  })

/**
 * Kills the instance's process `rounds` times while a client sends requests one after another,
 * and, right after each kill, a burst of requests that can only be served by the next process.
 */
const killLoop = async (config: string, port: number, rounds: number) => {
  const outcomes = { served: 0, errors: new Map<string, number>() }
  const note = (r: { body?: string; error?: string }) => {
    if (r.error) outcomes.errors.set(r.error, (outcomes.errors.get(r.error) ?? 0) + 1)
    else outcomes.served++
  }
  let running = true
  const client = (async () => {
    while (running) note(await get(port))
  })()
  const burstErrors: string[] = []
  const servedBy = new Set<string>()
  let pid = await readyPid(config, 'web#0')
  for (let i = 0; i < rounds; i++) {
    killGroup(pid)
    const burst = await Promise.all(Array.from({ length: 5 }, () => get(port)))
    for (const r of burst) {
      note(r)
      if (r.error) burstErrors.push(r.error)
      else servedBy.add(r.body!.trim())
    }
    pid = await readyPid(config, 'web#0', pid)
  }
  running = false
  await client
  return { outcomes, burstErrors, servedBy }
}

t.test(
  'the child gets the held socket as fd 3 with LISTEN_* and its IPC channel as fd 4',
  async (t) => {
    const { config, sup } = start(t, {
      web: {
        command: [process.execPath, SOCKET_SERVER],
        port: 29850,
        socket: { activation: 'systemd', backlog: 77 },
        readiness: { type: 'ipc' },
        env: { IPC_READY: '1' },
        stop: { signal: 'SIGTERM', timeoutMs: 2000 },
      },
    })
    await sup.waitLog('ready', (r) => r.event === 'ready')
    const pid = await readyPid(config, 'web#0')
    const r = await get(29850, '/env')
    const seen = JSON.parse(r.body ?? '{}') as Record<string, unknown>
    t.match(seen, {
      pid,
      LISTEN_FDS: '1',
      LISTEN_PID: String(pid),
      LISTEN_FDNAMES: 'web',
      fd0: '/dev/null',
      ipc: true,
    })
    t.ok(
      socketInodes(sup.pid).has(seen.fd3 as string),
      'the supervisor holds the very socket the child has as fd 3',
    )
    const ss = spawnSync('ss', ['-Hltn', 'sport = :29850'], { encoding: 'utf8' }).stdout
    t.match(ss, /LISTEN\s+\d+\s+77\s/, 'listening with the configured backlog')
  },
)

t.test(
  'an instance SIGKILLed in a loop refuses no connection: they wait for the next process',
  async (t) => {
    const { config, sup } = start(t, {
      web: {
        command: [process.execPath, SOCKET_SERVER],
        port: 29851,
        socket: { activation: 'node' },
        readiness: { type: 'http', path: '/' },
        stop: { signal: 'SIGTERM', timeoutMs: 2000 },
        ...tireless,
      },
    })
    await sup.waitLog('ready', (r) => r.event === 'ready')
    const { outcomes, burstErrors, servedBy } = await killLoop(config, 29851, 20)
    t.equal(
      burstErrors.length,
      0,
      `every request sent right after a kill is served (${burstErrors.join(', ')})`,
    )
    t.ok(servedBy.size >= 20, `served by ${servedBy.size} processes started after kills`)
    t.notOk(outcomes.errors.has('ECONNREFUSED'), 'not one connection refused')
    // A request the killed process had already accepted dies with it (ECONNRESET): that much the
    // socket cannot save. Every other request waits in the backlog and is served.
    t.ok(outcomes.served > 100, `the steady client was served ${outcomes.served} times`)
    t.comment(`steady client errors: ${JSON.stringify([...outcomes.errors])}`)
    t.equal(
      sup.count((r) => r.event === 'failed'),
      0,
    )
  },
)

t.test('without a held socket the same kills fail requests (the test can fail)', async (t) => {
  const { config, sup } = start(t, {
    web: {
      command: [process.execPath, FIXTURE],
      env: { PORT: '{port}' },
      port: 29852,
      readiness: { type: 'http', path: '/' },
      stop: { signal: 'SIGTERM', timeoutMs: 2000 },
      ...tireless,
    },
  })
  await sup.waitLog('ready', (r) => r.event === 'ready')
  const { burstErrors } = await killLoop(config, 29852, 5)
  // Refused, or reset by a listener that was dying: either way the client saw a failure.
  t.ok(burstErrors.length >= 5, `requests failed right after kills: ${burstErrors.join(', ')}`)
})

t.test(
  "a python3 program that takes its socket systemd's way is served through tandem",
  async (t) => {
    const { config, sup } = start(t, {
      py: {
        command: ['/usr/bin/python3', PY_SOCKET_SERVER],
        port: 29853,
        socket: { activation: 'systemd' },
        readiness: { type: 'http', path: '/' },
        stop: { signal: 'SIGTERM', timeoutMs: 2000 },
        ...tireless,
      },
    })
    await sup.waitLog('ready', (r) => r.event === 'ready')
    const pid = await readyPid(config, 'py#0')
    t.same(await get(29853), { body: `python ${pid}\n` })
    t.ok(
      sup.records.some((r) => r.msg.includes(`python ${pid} serving py`)),
      'LISTEN_FDNAMES names the component',
    )
    killGroup(pid)
    // Once it is gone (a process killed mid-accept resets the connection it took), the request
    // waits in the held socket's backlog until the next process accepts it.
    await waitUntil('the killed server gone', () => !alive(pid))
    const after = await get(29853)
    const next = await readyPid(config, 'py#0', pid)
    t.same(
      after,
      { body: `python ${next}\n` },
      'a request sent after the kill is served by the next one',
    )
  },
)

t.test('readiness tcp (given or by default) with a held socket is a config error', async (t) => {
  const dir = tempDir(t)
  const config = writeConfig(dir, {
    web: { command: ['x'], port: 29854, socket: { activation: 'systemd' } },
    api: {
      command: ['x'],
      port: 29855,
      socket: { activation: 'node' },
      readiness: { type: 'tcp' },
    },
  })
  const r = await cli(['validate', '-c', config])
  t.equal(r.code, 78)
  t.match(r.err, /components\.web\.readiness: web has a held socket .*got the default "tcp"/)
  t.match(
    r.err,
    /components\.api\.readiness\.type: api has a held socket .*readiness must be "http" or "ipc".*got "tcp"/,
  )
})

t.test('a port held by a stranger is reported with its holder and retried', async (t) => {
  const stranger = createServer()
  await new Promise<void>((r) => stranger.listen(29856, '127.0.0.1', () => r()))
  t.teardown(() => stranger.close())
  const { sup } = start(t, {
    web: {
      command: [process.execPath, SOCKET_SERVER],
      port: 29856,
      socket: { activation: 'systemd' },
      readiness: { type: 'http' },
      backoff: { initialMs: 50, maxMs: 200 },
      stop: { signal: 'SIGTERM', timeoutMs: 2000 },
    },
  })
  const blocked = await sup.waitLog('port in use', (r) => r.event === 'exited')
  t.match(blocked.msg, new RegExp(`port 29856 is in use by pid ${process.pid}`))
  t.match(blocked.exit, { reason: 'port-in-use' })
  t.equal(
    sup.count((r) => r.event === 'spawned'),
    0,
    'nothing spawned',
  )
  await new Promise<void>((r) => stranger.close(() => r()))
  await sup.waitLog('ready once the stranger left', (r) => r.event === 'ready', 60_000)
  t.same((await get(29856)).error, undefined)
})

t.test(
  'stdin passes the socket as fd 0 too; an operator stop closes it, a start binds it again',
  async (t) => {
    const { config, sup } = start(t, {
      web: {
        command: [process.execPath, SOCKET_SERVER],
        port: 29857,
        socket: { activation: 'systemd', stdin: true },
        readiness: { type: 'http' },
        stop: { signal: 'SIGTERM', timeoutMs: 2000 },
      },
    })
    await sup.waitLog('ready', (r) => r.event === 'ready')
    const seen = JSON.parse((await get(29857, '/env')).body ?? '{}') as Record<string, unknown>
    t.match(seen.fd3, /^socket:/)
    t.equal(seen.fd0, seen.fd3, 'fd 0 is the same socket')
    t.equal((await cli(['stop', 'web', '-c', config])).code, 0)
    await waitUntil(
      'the port refuses once the instance is stopped',
      async () => (await get(29857)).error === 'ECONNREFUSED',
    )
    t.equal((await cli(['start', 'web', '-c', config])).code, 0)
    await readyPid(config, 'web#0')
    t.equal((await get(29857)).error, undefined, 'served again')
  },
)
