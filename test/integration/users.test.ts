// Each component as its own user, with its own limits and secrets (issue 14), end to end:
// real children as `nobody` and as a user this file creates, read back from /proc.
// Ports 29500-29799 belong to this file (test files run in parallel).
import { execFileSync } from 'node:child_process'
import { chmodSync, chownSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { processLimits } from '../../src/process/own-limits.js'
import {
  alive,
  BIN,
  cli,
  fixture,
  status,
  Supervisor,
  tempDir,
  waitUntil,
  writeConfig,
} from '../helpers/supervisor.js'
import { cluster, HA, node } from '../helpers/ha-cluster.js'

const root = process.geteuid?.() === 0
if (!root) {
  t.comment('not root: switching users cannot be tested here (CI runs this file as root)')
}

/** A user (with a group of its own and a supplementary group) that exists for one test. */
const USER = 'tandem14u'
const EXTRA_GROUP = 'tandem14x'
const run = (cmd: string, args: string[]) => {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' })
  } catch {
    // already gone, or not there yet
  }
}
const createUser = (t: Test) => {
  run('userdel', [USER])
  run('groupdel', [USER])
  run('groupdel', [EXTRA_GROUP])
  execFileSync('groupadd', [EXTRA_GROUP])
  execFileSync('useradd', [
    '-M',
    '-U',
    '-d',
    `/home/${USER}`,
    '-s',
    '/bin/bash',
    '-G',
    EXTRA_GROUP,
    USER,
  ])
  t.teardown(() => {
    run('userdel', [USER])
    run('groupdel', [USER])
    run('groupdel', [EXTRA_GROUP])
  })
  const id = (flag: string, ...names: string[]) =>
    execFileSync('id', [flag, ...names], { encoding: 'utf8' }).trim()
  return {
    uid: Number(id('-u', USER)),
    gid: Number(id('-g', USER)),
    extraGid: Number(
      execFileSync('getent', ['group', EXTRA_GROUP], { encoding: 'utf8' }).split(':')[2],
    ),
  }
}

/** A directory every user may enter (mkdtemp makes it 0700), removed at teardown. */
const openDir = (t: Test) => {
  const dir = tempDir(t)
  chmodSync(dir, 0o755)
  return dir
}

/** Real uid, gid and supplementary groups of a process, from /proc/<pid>/status. */
const ids = (pid: number) => {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8')
  const field = (name: string) =>
    /^(\w+):\s*(.*)$/m.exec(s.split('\n').find((l) => l.startsWith(`${name}:`))!)![2]!
  return {
    uid: field('Uid').split(/\s+/).map(Number),
    gid: field('Gid').split(/\s+/).map(Number),
    groups: field('Groups')
      .split(/\s+/)
      .filter(Boolean)
      .map(Number)
      .sort((a, b) => a - b),
  }
}

const environ = (pid: number): Record<string, string> =>
  Object.fromEntries(
    readFileSync(`/proc/${pid}/environ`, 'utf8')
      .split('\0')
      .filter(Boolean)
      .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
  )

const pidOf = async (config: string, id: string) =>
  waitUntil(`${id} ready with a pid`, async () => {
    // Before the control socket is up, status fails: that is "not yet".
    const i = (await status(config).catch(() => undefined))?.instances.find((x) => x.id === id)
    return i?.state === 'ready' && i.pid
  })

t.test(
  'instances run as nobody and as a created user, with its groups, HOME, limits and umask',
  { skip: !root && 'needs root' },
  async (t) => {
    const u = createUser(t)
    const dir = openDir(t)
    const outNobody = join(dir, 'out-nobody')
    const outUser = join(dir, 'out-user')
    mkdirSync(outNobody)
    mkdirSync(outUser)
    chownSync(outNobody, 65534, 65534)
    chownSync(outUser, u.uid, u.gid)
    const config = writeConfig(dir, {
      low: fixture(
        {
          port: 29500,
          user: 'nobody',
          umask: '077',
          limits: { nofile: [1024, 2048], core: 0, cpu: ['unlimited', 'unlimited'] },
        },
        { TOUCH_FILE: join(outNobody, 'made') },
      ),
      own: fixture(
        {
          port: 29501,
          user: USER,
          umask: '0027',
          limits: { nproc: [500, 1000], memlock: 65536 },
          stop: { signal: 'SIGTERM', timeoutMs: 500 },
        },
        { TOUCH_FILE: join(outUser, 'made'), IGNORE_TERM: '1', HOME: '{component}-override' },
      ),
      mine: fixture({ port: 29502 }),
      // Not a Node program: Node raises its own soft nofile limit to the hard one at start.
      sleeper: {
        command: ['/bin/sleep', '600'],
        user: 'nobody',
        limits: { nofile: [1024, 2048] },
        stop: { signal: 'SIGTERM', timeoutMs: 2000 },
      },
    })
    const sup = new Supervisor(config)
    t.teardown(() => sup.kill())

    const low = await pidOf(config, 'low#0')
    const own = await pidOf(config, 'own#0')
    const mine = await pidOf(config, 'mine#0')

    t.same(ids(low), {
      uid: [65534, 65534, 65534, 65534],
      gid: [65534, 65534, 65534, 65534],
      groups: [65534],
    })
    t.same(ids(own).uid, [u.uid, u.uid, u.uid, u.uid], 'own runs as the created user')
    t.same(ids(own).gid, [u.gid, u.gid, u.gid, u.gid], 'in its own group')
    t.same(
      ids(own).groups,
      [u.gid, u.extraGid].sort((a, b) => a - b),
      'with its supplementary group',
    )
    t.equal(ids(mine).uid[0], 0, 'a component without user runs as the supervisor')

    t.match(environ(low), {
      HOME: '/nonexistent',
      USER: 'nobody',
      LOGNAME: 'nobody',
      SHELL: '/usr/sbin/nologin',
    })
    t.match(
      environ(own),
      { HOME: 'own-override', USER, LOGNAME: USER, SHELL: '/bin/bash' },
      "the user's variables, under what env sets",
    )

    const sleeper = await pidOf(config, 'sleeper#0')
    t.match(processLimits(sleeper), { nofile: [1024, 2048] }, 'soft and hard')
    t.equal(ids(sleeper).uid[0], 65534)
    t.match(processLimits(low), {
      nofile: [2048, 2048],
      core: [0, 0],
      cpu: ['unlimited', 'unlimited'],
    })
    t.match(processLimits(own), { nproc: [500, 1000], memlock: [65536, 65536] })
    t.same(processLimits(mine), processLimits('self'), "no limits: the supervisor's own")

    const made = (f: string) => statSync(f)
    await waitUntil('the files the children create', () => {
      try {
        return made(join(outNobody, 'made')) && made(join(outUser, 'made'))
      } catch {
        return false
      }
    })
    t.equal(made(join(outNobody, 'made')).mode & 0o777, 0o600, 'umask 077')
    t.equal(made(join(outNobody, 'made')).uid, 65534)
    t.equal(made(join(outUser, 'made')).mode & 0o777, 0o640, 'umask 0027')
    t.equal(made(join(outUser, 'made')).uid, u.uid)

    const table = await cli(['status', '-c', config])
    t.match(table.out, /INSTANCE +PORT +PID +STATE +RESTARTS +UPTIME +CPU +MEM +USER/)
    t.match(table.out, /low#0 +29500 +\d+ +ready .* nobody /)
    t.match(table.out, new RegExp(`own#0 +29501 +\\d+ +ready .* ${USER} `))
    t.match((await status(config)).instances, [
      { id: 'low#0', user: 'nobody' },
      { id: 'own#0', user: USER },
      { id: 'mine#0' },
    ])

    // Pid records hold the real children.
    const records = readFileSync(join(dir, 'state', 'pids.json'), 'utf8')
    t.match(records, String(low))
    t.match(records, String(own))

    // Stop escalation reaches a child of another user: it ignores SIGTERM, so SIGKILL after 500 ms.
    const stop = await cli(['stop', 'own', '-c', config])
    t.equal(stop.code, 0, stop.err)
    const exited = await sup.waitLog(
      'own stopped',
      (r) => r.event === 'stopped' && r.component === 'own',
    )
    t.match(exited, { exit: { killedAfterTimeout: true } })
    t.notOk(alive(own), 'its process is gone')

    // The parent-death signal survives the change of ids: a SIGKILLed supervisor takes it along.
    process.kill(sup.pid, 'SIGKILL')
    await waitUntil('nobody child gone with its supervisor', () => !alive(low))
    t.pass('low#0 died with its supervisor')
  },
)

const CANARY_FILE = 'canary-file-5b1d0'
const CANARY_ROTATED = 'canary-rotated-77c2e'
const CANARY_KEY = 'canary-key-a3f11'
const CANARY_MARKED = 'canary-marked-0e9d4'
const CANARY_TOP = 'canary-top-91c3a'

t.test(
  'secrets from env files and secret env keys reach the child and appear in no output of tandem',
  async (t) => {
    const dir = openDir(t)
    const appEnv = join(dir, 'app.env')
    const topEnv = join(dir, 'top.env')
    writeFileSync(appEnv, `# the database\nDB_PASSWORD="${CANARY_FILE}"\n`, { mode: 0o600 })
    writeFileSync(topEnv, `SHARED=${CANARY_TOP}\n`, { mode: 0o600 })
    const components = {
      app: fixture(
        {
          port: 29520,
          envFile: 'app.env',
          secretEnv: ['OPAQUE'],
          ...(root ? { user: 'nobody' } : {}),
        },
        { API_TOKEN: CANARY_KEY, OPAQUE: CANARY_MARKED, PLAIN: 'shown' },
      ),
    }
    const extra = { envFile: 'top.env', control: { http: { port: 29521 } } }
    const config = writeConfig(dir, components, extra)
    const sup = new Supervisor(config)
    t.teardown(() => sup.kill())
    const pid = await pidOf(config, 'app#0')
    t.match(environ(pid), {
      DB_PASSWORD: CANARY_FILE,
      SHARED: CANARY_TOP,
      API_TOKEN: CANARY_KEY,
      OPAQUE: CANARY_MARKED,
      PLAIN: 'shown',
    })

    // A rotated secret needs a restart, not a config change.
    writeFileSync(appEnv, `DB_PASSWORD=${CANARY_ROTATED}\n`, { mode: 0o600 })
    t.equal((await cli(['restart', 'app', '-c', config])).code, 0)
    const rotated = await waitUntil('a new app#0', async () => {
      const p = await pidOf(config, 'app#0')
      return p !== pid && p
    })
    t.equal(environ(rotated).DB_PASSWORD, CANARY_ROTATED, 'the new process has the new secret')

    // Reload with an unsafe env file: refused, nothing changes.
    chmodSync(appEnv, 0o640)
    const reload = await cli(['reload', '-c', config])
    t.equal(reload.code, 78, 'a config error')
    t.match(
      reload.err,
      `components.app.envFile: app: env file ${appEnv} has mode 0640, readable by its group`,
    )
    t.equal(await pidOf(config, 'app#0'), rotated, 'the instance runs on untouched')

    // The env file gone at the next spawn: a failed instance with the reason, not a crash loop.
    chmodSync(appEnv, 0o600)
    execFileSync('rm', [appEnv])
    const failedRestart = await cli(['restart', 'app', '-c', config])
    const failed = await waitUntil('app#0 failed', async () => {
      const i = (await status(config)).instances[0]!
      return i.state === 'failed' && i
    })
    t.equal(failed.reason, `env file ${appEnv} does not exist (ENOENT)`)

    const http = async (path: string) => (await fetch(`http://127.0.0.1:29521${path}`)).text()
    const outputs: Record<string, string> = {
      status: (await cli(['status', '-c', config])).out,
      'status --json': (await cli(['status', '--json', '-c', config])).out,
      '/status': await http('/status'),
      '/metrics': await http('/metrics'),
      '/ready': await http('/ready'),
      validate: (await cli(['validate', '-c', config])).out,
      'lb-config': (await cli(['lb-config', 'haproxy', '-c', config])).out,
      'unit systemd': (await cli(['unit', 'systemd', '-c', config])).out,
      'tandem.log': readFileSync(join(dir, 'logs', 'tandem.log'), 'utf8'),
      'failed restart': failedRestart.out + failedRestart.err,
      stdout: sup.records.map((r) => JSON.stringify(r)).join('\n'),
      stderr: sup.stderr.join('\n'),
    }
    // validate --json needs the env file back (a missing one is a config error, exit 78).
    writeFileSync(appEnv, `DB_PASSWORD=${CANARY_ROTATED}\n`, { mode: 0o600 })
    const json = await cli(['validate', '--json', '-c', config])
    t.equal(json.code, 0, json.err)
    outputs['validate --json'] = json.out
    const plan = JSON.parse(json.out) as {
      components: { instances: { env: Record<string, string> }[] }[]
    }
    t.match(plan.components[0]!.instances[0]!.env, {
      API_TOKEN: '(secret)',
      OPAQUE: '(secret)',
      PLAIN: 'shown',
    })
    t.match(outputs.status, /app#0 .*failed/, 'the outputs were really collected')
    for (const [name, text] of Object.entries(outputs)) {
      for (const canary of [CANARY_FILE, CANARY_ROTATED, CANARY_KEY, CANARY_MARKED, CANARY_TOP]) {
        t.notMatch(text, canary, `${name} does not show ${canary}`)
      }
    }
  },
)

t.test(
  'a supervisor that may not switch users refuses such a config at load',
  { skip: !root && 'needs root to become nobody' },
  async (t) => {
    const dir = openDir(t)
    const config = writeConfig(dir, { app: fixture({ port: 29540, user: 'root' }) })
    chmodSync(config, 0o644)
    for (const command of ['validate', 'start']) {
      const p = execFileSyncResult('/usr/bin/setpriv', [
        '--reuid=65534',
        '--regid=65534',
        '--clear-groups',
        '--',
        process.execPath,
        BIN,
        command,
        '-c',
        config,
      ])
      t.equal(p.code, 78, `${command}: a config error`)
      t.match(
        p.err,
        'components.app.user: app asks to run as user "root", but the supervisor runs as uid 65534 without CAP_SETUID and CAP_SETGID',
      )
    }
  },
)

/** Runs a program to completion: exit code and stderr. */
const execFileSyncResult = (cmd: string, args: string[]): { code: number; err: string } => {
  try {
    execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' })
    return { code: 0, err: '' }
  } catch (err) {
    const e = err as { status: number; stderr: string }
    return { code: e.status, err: e.stderr }
  }
}

t.test(
  'every bad account, limit and env file is a config error naming the component and the path',
  async (t) => {
    const dir = openDir(t)
    const file = (name: string, text: string, mode: number) => {
      writeFileSync(join(dir, name), text)
      chmodSync(join(dir, name), mode)
    }
    file('group.env', 'A=1\n', 0o640)
    file('world.env', 'A=1\n', 0o604)
    file('bad.env', 'A=1\n# fine\nB "2"\n', 0o600)
    file('theirs.env', 'A=1\n', 0o600)
    if (root) chownSync(join(dir, 'theirs.env'), 65534, 65534)
    mkdirSync(join(dir, 'adir'))
    const hard = processLimits('self').nofile![1]
    const c = (extra: Record<string, unknown>) => ({ command: ['/bin/true'], ...extra })
    const config = writeConfig(dir, {
      ...(root
        ? {
            nouser: c({ user: 'tandem-no-such-user' }),
            nogroup: c({ user: 'nobody', group: 'tandem-no-such-group' }),
            bareid: c({ user: 4242424 }),
          }
        : {}),
      limit: c({ limits: { nofile: hard === 'unlimited' ? 1 : [1, hard + 1], core: [10, 5] } }),
      files: c({
        envFile: [
          'missing.env',
          'adir',
          'group.env',
          'world.env',
          'bad.env',
          ...(root ? ['theirs.env'] : []),
        ],
      }),
    })
    const r = await cli(['start', '-c', config])
    t.equal(r.code, 78, 'exit 78')
    const expected = [
      ...(root
        ? [
            'components.nouser.user: nouser: unknown user "tandem-no-such-user"',
            'components.nogroup.group: nogroup: unknown group "tandem-no-such-group"',
            'components.bareid.group: bareid: uid 4242424 has no passwd entry, so it has no primary group; expected a group',
            `components.files.envFile[5]: files: env file ${join(dir, 'theirs.env')} is owned by uid 65534`,
          ]
        : []),
      ...(hard === 'unlimited'
        ? []
        : [
            `components.limit.limits.nofile: limit: hard limit ${hard + 1} is above the supervisor's own hard limit ${hard}; expected at most ${hard}`,
          ]),
      'components.limit.limits.core: expected the soft limit at most the hard limit; got [10, 5]',
      `components.files.envFile[0]: files: env file ${join(dir, 'missing.env')} does not exist (ENOENT)`,
      `components.files.envFile[1]: files: env file ${join(dir, 'adir')} is not a regular file (a directory)`,
      `components.files.envFile[2]: files: env file ${join(dir, 'group.env')} has mode 0640, readable by its group`,
      `components.files.envFile[3]: files: env file ${join(dir, 'world.env')} has mode 0604, readable by others`,
      `components.files.envFile[4]: files: env file ${join(dir, 'bad.env')}, line 3: expected KEY=VALUE`,
    ]
    for (const line of expected) t.match(r.err, line)
    t.notOk(
      statSync(join(dir, 'state'), { throwIfNoEntry: false }),
      'nothing was started or created',
    )
  },
)

t.test(
  "an activation hook runs as its instance's user, with its umask and limits",
  { skip: !root && 'needs root' },
  async (t) => {
    const shared = await cluster(t)
    const a = node(t, shared, 'a', 29560, HA, {
      svc: fixture({
        port: 29561,
        runOn: 'active',
        standby: 'hot',
        user: 'nobody',
        umask: '077',
        limits: { nofile: [512, 1024] },
        activate: {
          type: 'command',
          command: ['/bin/sh', '-c', 'echo "hook uid $(id -u) umask $(umask) nofile $(ulimit -n)"'],
          timeoutMs: 5000,
        },
      }),
    })
    const said = await a.sup.waitLog('the hook spoke', (r) => /^hook uid /.test(String(r.msg)))
    t.equal(said.msg, 'hook uid 65534 umask 0077 nofile 512')
  },
)
