// The OCF resource agent (`tandem ocf`, run through its script ocf/tandem as Pacemaker runs it)
// against real supervisors with ha.backend {"type": "external"}: resource-agents' ocf-tester, and
// each action by hand, with kill -9 of an instance and of the supervisor, a frozen supervisor and
// one that cannot start. Ports 26300-26399 belong to this file (test files run in parallel).
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { needTool, type ToolCheck } from '../helpers/need-tool.js'
import {
  accepting,
  alive,
  fixture,
  killGroup,
  ROOT,
  status,
  Supervisor,
  tempDir,
  waitUntil,
  writeConfig,
} from '../helpers/supervisor.js'

t.setTimeout(300_000)

const AGENT = join(ROOT, 'ocf/tandem')
const OCF_TESTER = '/usr/sbin/ocf-tester'
const XMLLINT = '/usr/bin/xmllint'
const RA_DIR = '/usr/share/resource-agents'

const tool = (path: string, pkg: string): ToolCheck =>
  existsSync(path) ? { ok: true } : { ok: false, why: `no ${path} (Debian package ${pkg})` }

/** The OCF exit codes the agent answers with. */
const OCF = { ok: 0, generic: 1, args: 2, unimplemented: 3, installed: 5, configured: 6 } as const
const NOT_RUNNING = 7
const PROMOTED = 8
const FAILED_PROMOTED = 9

/** Runs one action of the agent as Pacemaker does: parameters in OCF_RESKEY_*, the code back. */
const agent = (
  action: string,
  env: Record<string, string | undefined> = {},
): Promise<{ code: number | null; out: string; err: string }> =>
  new Promise((res, rej) => {
    const p = spawn(AGENT, [action], {
      env: { ...process.env, OCF_RESKEY_CRM_meta_timeout: '30000', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    let err = ''
    p.stdout.on('data', (d) => (out += d))
    p.stderr.on('data', (d) => (err += d))
    p.once('error', rej)
    p.once('close', (code) => res({ code, out, err }))
  })

/** The supervisor pid a state dir records (acquireStateLock), or undefined. */
const supervisorPid = (stateDir: string): number | undefined => {
  try {
    return Number(readFileSync(join(stateDir, 'supervisor.pid'), 'utf8').split(' ')[0]) || undefined
  } catch {
    return undefined
  }
}

/** The instance pids a state dir records. */
const instancePids = (stateDir: string): number[] => {
  try {
    return (JSON.parse(readFileSync(join(stateDir, 'pids.json'), 'utf8')) as { pid: number }[]).map(
      (r) => r.pid,
    )
  } catch {
    return []
  }
}

/**
 * A config of a node under Pacemaker in a fresh dir: web (2 instances, every node) on `port`,
 * api (active only) on port+5, /leader on port+9. Teardown kills whatever the agent started
 * there, by process group, whatever the test left.
 */
const node = (
  t: Test,
  port: number,
  opts: { web?: Record<string, string>; api?: Record<string, string>; instances?: number } = {},
) => {
  const dir = tempDir(t)
  const stateDir = join(dir, 'state')
  const seen = new Set<number>()
  const remember = () => {
    for (const pid of [supervisorPid(stateDir), ...instancePids(stateDir)]) if (pid) seen.add(pid)
  }
  t.teardown(() => {
    remember()
    for (const pid of seen) killGroup(pid)
  })
  const config = writeConfig(
    dir,
    {
      web: fixture({ port, instances: opts.instances ?? 2 }, opts.web),
      api: fixture({ port: port + 5, runOn: 'active' }, opts.api),
    },
    {
      control: { http: { port: port + 9 } },
      ha: { name: 'ocf', backend: { type: 'external' } },
    },
  )
  const env = { OCF_RESKEY_config: config }
  const run = async (action: string, extra: Record<string, string> = {}) => {
    const r = await agent(action, { ...env, ...extra })
    remember()
    return r
  }
  /** Runs an action that must succeed (0), saying what the agent said otherwise. */
  const succeed = async (action: string, what = action, extra: Record<string, string> = {}) => {
    const r = await run(action, extra)
    t.equal(r.code, OCF.ok, r.err ? `${what}: ${r.err}` : what)
    return r
  }
  const leader = async () => (await fetch(`http://127.0.0.1:${port + 9}/leader`)).status
  return { dir, stateDir, config, env, run, succeed, leader, remember }
}

t.test(
  'meta-data: OCF 1.1 XML valid under ra-api-1.dtd and metadata.rng, with both roles and depths',
  async (t) => {
    const r = await agent('meta-data', { OCF_RESKEY_config: undefined })
    t.equal(r.code, 0, r.err)
    t.match(r.out, /<resource-agent name="tandem" version="\d+\.\d+\.\d+/)
    t.match(r.out, /<version>1\.1<\/version>/)
    t.match(r.out, /<parameter name="config" unique="1" required="1">/)
    for (const name of ['start', 'stop', 'promote', 'demote', 'meta-data', 'validate-all'])
      t.match(r.out, new RegExp(`<action name="${name}" timeout="\\d+s" />`), name)
    for (const depth of ['0', '10'])
      for (const role of ['Promoted', 'Unpromoted'])
        t.match(r.out, new RegExp(`<action name="monitor" depth="${depth}" [^>]*role="${role}"`))
    if (!needTool(t, tool(XMLLINT, 'libxml2-utils'))) return
    // ocf-tester's own check: the DTD, found beside it by the DOCTYPE's relative name.
    const dtd = spawnSync(XMLLINT, ['--noout', '--valid', '-'], { cwd: RA_DIR, input: r.out })
    t.equal(dtd.status, 0, `ra-api-1.dtd: ${dtd.stderr.toString()}`)
    const rng = spawnSync(XMLLINT, ['--noout', '--relaxng', join(RA_DIR, 'metadata.rng'), '-'], {
      cwd: RA_DIR,
      input: r.out,
    })
    t.equal(rng.status, 0, `metadata.rng: ${rng.stderr.toString()}`)
  },
)

t.test('refuses what it cannot run with the OCF codes: 2, 5, 6, 3', async (t) => {
  const dir = tempDir(t)
  for (const action of ['validate-all', 'start', 'stop', 'monitor', 'promote', 'demote']) {
    const r = await agent(action, { OCF_RESKEY_config: undefined })
    t.equal(r.code, OCF.args, `${action} without config`)
    t.match(r.err, /OCF_RESKEY_config\) is not set/)
  }
  const missing = await agent('validate-all', { OCF_RESKEY_config: join(dir, 'nope.json') })
  t.equal(missing.code, OCF.installed, 'a config file missing on this node')
  t.match(missing.err, /nope\.json does not exist on this node/)

  const bad = join(dir, 'bad.json')
  writeFileSync(bad, JSON.stringify({ components: { web: { command: [] } } }))
  for (const action of ['validate-all', 'start']) {
    const r = await agent(action, { OCF_RESKEY_config: bad })
    t.equal(r.code, OCF.configured, `${action}: an invalid config`)
    t.match(r.err, /bad\.json/)
  }
  const plain = writeConfig(dir, { web: fixture({ port: 26300 }) })
  const standalone = await agent('validate-all', { OCF_RESKEY_config: plain })
  t.equal(standalone.code, OCF.configured, 'no ha section')
  t.match(standalone.err, /ha\.backend\.type must be "external".*no "ha" section/)
  writeFileSync(
    plain,
    JSON.stringify({
      stateDir: 'state',
      components: { web: fixture({ port: 26300 }) },
      ha: { name: 'x', backend: { type: 'dir', sharedDir: 'shared' } },
    }),
  )
  const dirBackend = await agent('validate-all', { OCF_RESKEY_config: plain })
  t.equal(dirBackend.code, OCF.configured, 'a lease backend')
  t.match(dirBackend.err, /got "dir"/)

  const { config } = node(t, 26310)
  t.equal((await agent('validate-all', { OCF_RESKEY_config: config })).code, OCF.ok)
  const noTandem = await agent('validate-all', {
    OCF_RESKEY_config: config,
    OCF_RESKEY_tandem: join(dir, 'tandem.js'),
  })
  t.equal(noTandem.code, OCF.installed, 'tandem missing')
  const noNode = { OCF_RESKEY_config: config, OCF_RESKEY_node: join(dir, 'node') }
  t.equal((await agent('start', noNode)).code, OCF.installed, 'node missing')
  t.equal(
    (await agent('monitor', { ...noNode, OCF_RESKEY_CRM_meta_interval: '0' })).code,
    NOT_RUNNING,
    'a probe without node: not running here',
  )
  const unknown = await agent('migrate_to', { OCF_RESKEY_config: config })
  t.equal(unknown.code, OCF.unimplemented)
})

t.test(
  'start is standby (0), promote is active (8, /leader 200), demote is standby again, stop ends it all; each idempotent',
  async (t) => {
    const n = node(t, 26320)
    t.equal((await n.run('monitor')).code, NOT_RUNNING, 'monitor before start')
    const started = await n.run('start')
    t.equal(started.code, OCF.ok, started.err)
    await n.succeed('monitor', 'started: standby')
    t.equal((await n.run('monitor', { OCF_CHECK_LEVEL: '10' })).code, OCF.ok, 'all wanted ready')
    t.equal(await n.leader(), 503, 'a standby is not the leader')
    t.notOk(await accepting(26325), 'the active-only api is not running on a standby')
    await n.succeed('start', 'starting a started resource')

    const promoted = await n.run('promote')
    t.equal(promoted.code, OCF.ok, promoted.err)
    t.equal((await n.run('monitor')).code, PROMOTED)
    t.equal((await n.run('monitor', { OCF_CHECK_LEVEL: '10' })).code, PROMOTED, 'api ready too')
    t.equal(await n.leader(), 200)
    t.ok(await accepting(26325), 'promote returned with the api serving')
    await n.succeed('promote', 'promoting a promoted resource')
    t.equal((await n.run('monitor')).code, PROMOTED)

    const demoted = await n.run('demote')
    t.equal(demoted.code, OCF.ok, demoted.err)
    await n.succeed('monitor')
    t.equal(await n.leader(), 503)
    t.notOk(await accepting(26325), 'demote returned after the api stopped')
    await n.succeed('demote', 'demoting a demoted resource')

    const pids = [supervisorPid(n.stateDir)!, ...instancePids(n.stateDir)]
    t.equal(pids.length, 3, 'a supervisor and two web instances')
    const stopped = await n.run('stop')
    t.equal(stopped.code, OCF.ok, stopped.err)
    t.same(
      pids.filter((p) => alive(p)),
      [],
      'the supervisor and its instances are gone when stop returns',
    )
    t.equal((await n.run('monitor')).code, NOT_RUNNING)
    await n.succeed('stop', 'stopping a stopped resource')
    for (const action of ['promote', 'demote'])
      t.equal((await n.run(action)).code, NOT_RUNNING, `${action} of a stopped resource`)
  },
)

t.test(
  'after kill -9 of an instance, monitor at level 10 answers 1 (standby) or 9 (active) until it is ready again',
  async (t) => {
    // A restart takes 3 s before the port opens: time for the agent to see it.
    const slow = { READY_DELAY_MS: '3000' }
    const n = node(t, 26330, { instances: 1, web: slow, api: slow })
    await n.succeed('start')
    const web = (await status(n.config)).instances.find((i) => i.id === 'web#0')!
    process.kill(web.pid!, 'SIGKILL')
    const deep = { OCF_CHECK_LEVEL: '10' }
    const failing = await waitUntil('level 10 to fail', async () => {
      const r = await n.run('monitor', deep)
      return r.code === OCF.generic && r
    })
    t.match(failing.err, /standby, not ready: web#0 (exited|backoff|starting)/)
    await waitUntil('level 10 to pass', async () => (await n.run('monitor', deep)).code === OCF.ok)
    await n.succeed('monitor', 'level 0 asks the supervisor only')

    await n.succeed('promote')
    const api = (await status(n.config)).instances.find((i) => i.id === 'api#0')!
    process.kill(api.pid!, 'SIGKILL')
    const failed = await waitUntil('level 10 to fail promoted', async () => {
      const r = await n.run('monitor', deep)
      return r.code === FAILED_PROMOTED && r
    })
    t.match(failed.err, /active, not ready: api#0/)
    await waitUntil('level 10 promoted again', async () => {
      return (await n.run('monitor', deep)).code === PROMOTED
    })
    await n.succeed('stop')
  },
)

t.test(
  'after kill -9 of the supervisor, monitor answers 7 once it and its instances are gone (orphan watchdog)',
  async (t) => {
    const n = node(t, 26340)
    await n.succeed('start')
    await n.succeed('promote')
    const sup = supervisorPid(n.stateDir)!
    const children = instancePids(n.stateDir)
    t.equal(children.length, 3, 'two web instances and the api')
    process.kill(sup, 'SIGKILL')
    const codes = new Set<number | null>()
    await waitUntil('monitor 7', async () => {
      const r = await n.run('monitor')
      codes.add(r.code)
      return r.code === NOT_RUNNING
    })
    t.same(
      [...codes].filter((c) => c !== NOT_RUNNING && c !== OCF.generic),
      [],
      'only 1 (instances left) before 7',
    )
    t.same(
      children.filter((p) => alive(p)),
      [],
      'not running means its instances are gone too',
    )
    t.equal(await n.leader().catch(() => 'refused'), 'refused', 'no /leader')
    await n.succeed('start', 'started again')
    await n.succeed('monitor', 'as standby: Pacemaker promotes')
    await n.succeed('stop')
  },
)

t.test(
  'a frozen active supervisor: its api is killed (orphan watchdog), monitor answers 1 within its timeout, stop kills the rest',
  async (t) => {
    const n = node(t, 26350)
    await n.succeed('start')
    await n.succeed('promote')
    const sup = supervisorPid(n.stateDir)!
    const children = instancePids(n.stateDir)
    const api = (await status(n.config)).instances.find((i) => i.id === 'api#0')!.pid!
    process.kill(sup, 'SIGSTOP')
    t.teardown(() => killGroup(sup))
    // Its own deadline lapses selfFenceMs after the last renewal: nothing active may outlive it.
    await waitUntil('the api killed while its supervisor is frozen', () => !alive(api))
    const r = await n.run('monitor', { OCF_RESKEY_CRM_meta_timeout: '5000' })
    t.equal(r.code, OCF.generic)
    t.match(r.err, new RegExp(`supervisor pid ${sup}: its control socket did not answer`))
    t.ok(
      children.filter((p) => p !== api).every((p) => alive(p)),
      'the instances of every node run on',
    )
    const stopped = await n.run('stop', { OCF_RESKEY_CRM_meta_timeout: '8000' })
    t.equal(stopped.code, OCF.ok, stopped.err)
    t.match(stopped.err, /did not stop in time.*killed/)
    t.notOk(alive(sup), 'the supervisor is gone')
    t.same(
      children.filter((p) => alive(p)),
      [],
      'its instances too',
    )
    t.equal((await n.run('monitor')).code, NOT_RUNNING)
  },
)

t.test('monitor of a supervisor that decides its role by itself: 6', async (t) => {
  const config = writeConfig(tempDir(t), { web: fixture({ port: 26380 }) })
  const sup = new Supervisor(config)
  t.teardown(() => sup.kill())
  await sup.waitLog('all ready', (r) => r.event === 'all-ready')
  const r = await agent('monitor', { OCF_RESKEY_config: config })
  t.equal(r.code, OCF.configured)
  t.match(r.err, /runs standalone, not under Pacemaker/)
})

t.test('a supervisor that exits during start: 1, with its last log lines', async (t) => {
  const n = node(t, 26360)
  // Its /leader port is taken: the supervisor gives up after loading the config.
  const holder = createServer()
  await new Promise<void>((r) => holder.listen(26369, '127.0.0.1', r))
  t.teardown(() => holder.close())
  const r = await n.run('start')
  t.equal(r.code, OCF.generic)
  t.match(r.err, /the supervisor exited \(code 1\) during start/)
  t.match(r.err, /26369/, 'its own words say why')
  t.equal((await n.run('monitor')).code, NOT_RUNNING, 'nothing left running')
})

t.test('ocf-tester passes the agent against a real tandem', async (t) => {
  if (!needTool(t, tool(OCF_TESTER, 'resource-agents'))) return
  if (!needTool(t, tool(XMLLINT, 'libxml2-utils'))) return
  const n = node(t, 26370)
  const r = await new Promise<{ code: number | null; out: string }>((res, rej) => {
    const p = spawn(OCF_TESTER, ['-n', 'tandem-test', '-o', `config=${n.config}`, AGENT], {
      // Without tap's process tracker (NODE_OPTIONS): ocf-tester runs the agent as nobody too,
      // who cannot write tap's records.
      env: {
        ...Object.fromEntries(
          Object.entries(process.env).filter(
            ([k]) => !/^(TAP|_TAPJS|NODE_OPTIONS$|NODE_V8_COVERAGE$)/i.test(k),
          ),
        ),
        PATH: `${process.env.PATH}:/usr/sbin:/usr/bin`,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    p.stdout.on('data', (d) => (out += d))
    p.stderr.on('data', (d) => (out += d))
    p.once('error', rej)
    p.once('close', (code) => res({ code, out }))
  })
  t.equal(r.code, 0, r.out)
  t.match(r.out, /passed all tests/)
  t.equal((await n.run('monitor')).code, NOT_RUNNING, 'ocf-tester stopped it')
})
