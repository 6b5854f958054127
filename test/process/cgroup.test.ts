// cgroup v2 per instance: detection of a delegated subtree and the refusal without one; where
// this host has a writable cgroup v2 hierarchy, the real cgroups of a supervisor and its
// instances. Ports 29600-29649 (of 29500-29799, issue 14's range).
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { cgroupProblem, ownCgroup } from '../../src/process/cgroup.js'
import {
  alive,
  cli,
  fixture,
  status,
  Supervisor,
  tempDir,
  waitUntil,
  writeConfig,
} from '../helpers/supervisor.js'

/** A fake /proc/self: mountinfo with a cgroup2 mount at `mount` (or none), and its cgroup file. */
const fakeProc = (t: Test, mount: string | undefined, path: string) => {
  const proc = tempDir(t)
  writeFileSync(
    join(proc, 'mountinfo'),
    [
      '22 1 0:21 / /proc rw,nosuid - proc proc rw',
      ...(mount ? [`30 22 0:26 / ${mount} rw,nosuid - cgroup2 cgroup2 rw`] : []),
      '31 22 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory',
    ].join('\n') + '\n',
  )
  writeFileSync(join(proc, 'cgroup'), `4:memory:/x\n0::${path}\n`)
  return proc
}

t.test('the reasons a host has no delegated cgroup v2 subtree', async (t) => {
  const v1 = fakeProc(t, undefined, '/')
  t.equal(cgroupProblem(['memory'], v1), 'no cgroup v2 hierarchy is mounted (a cgroup v1 host)')
  const mount = tempDir(t)
  t.match(
    cgroupProblem(['memory'], fakeProc(t, mount, '/')),
    `the supervisor runs in the root cgroup of ${mount}, which is not delegated to it`,
  )
  t.match(
    cgroupProblem([], fakeProc(t, mount, '/system.slice/gone.service')),
    `the supervisor's cgroup ${mount}/system.slice/gone.service is not writable by it: not delegated`,
  )
  const own = join(mount, 'tandem.service')
  mkdirSync(own)
  for (const f of ['cgroup.subtree_control', 'cgroup.procs']) writeFileSync(join(own, f), '')
  writeFileSync(join(own, 'cgroup.controllers'), 'cpu pids\n')
  const proc = fakeProc(t, mount, '/tandem.service')
  t.same(ownCgroup(proc), { cgroup: { mount, path: '/tandem.service', dir: own } })
  t.equal(cgroupProblem(['cpu', 'pids'], proc), undefined, 'offered: no problem')
  t.equal(
    cgroupProblem(['memory', 'cpu'], proc),
    `the supervisor's cgroup ${own} does not offer the memory controller (it offers: cpu, pids); the host does not delegate it (a cgroup v2 host, systemd Delegate=yes)`,
  )
})

t.test(
  'on this host, a config with cgroup settings is refused at load with the reason',
  async (t) => {
    const reason = cgroupProblem(['memory', 'cpu', 'pids'])
    if (!reason) {
      t.comment('this host delegates memory, cpu and pids to this process: nothing to refuse here')
      return
    }
    t.comment(`this host: ${reason}`)
    const dir = tempDir(t)
    const config = writeConfig(dir, {
      app: fixture({ port: 29600, cgroup: { memoryMax: 268435456, cpuWeight: 50, pidsMax: 64 } }),
    })
    for (const command of ['validate', 'start']) {
      const r = await cli([command, '-c', config])
      t.equal(r.code, 78, `${command}: a config error`)
      t.match(r.err, `components.app.cgroup: app asks for cgroup settings, but ${reason}`)
    }
    t.notOk(existsSync(join(dir, 'state')), 'nothing started')
    // The unit that would give the delegation is still generated, with Delegate=yes.
    const unit = await cli(['unit', 'systemd', '-c', config])
    t.equal(unit.code, 0, unit.err)
    t.match(unit.out, /^Delegate=yes$/m)
    const plain = writeConfig(tempDir(t), { app: fixture({ port: 29601 }) })
    t.notMatch((await cli(['unit', 'systemd', '-c', plain])).out, /Delegate=/, 'only when used')
  },
)

/** A fresh cgroup under the cgroup2 mount's root for one test, or why there cannot be one. */
const testCgroup = (t: Test): string | undefined => {
  const own = ownCgroup()
  if ('problem' in own) return void t.comment(`skipped: ${own.problem}`)
  const dir = join(own.cgroup.mount, `tandem-test-${process.pid}`)
  try {
    mkdirSync(dir)
  } catch (err) {
    return void t.comment(`skipped: cannot create ${dir}: ${(err as Error).message}`)
  }
  // After the supervisor's own teardown (registered later, run earlier? not assumed): kill
  // whatever is left in the test's cgroups (only this test's processes), then remove them.
  t.teardown(async () => {
    const subs = ['supervisor', 'app.0', 'hog.0'].map((s) => join(dir, s))
    const procs = () =>
      [dir, ...subs].flatMap((d) => {
        try {
          return readFileSync(join(d, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)
        } catch {
          return []
        }
      })
    for (const pid of procs()) {
      try {
        process.kill(Number(pid), 'SIGKILL')
      } catch {
        // gone
      }
    }
    await waitUntil('the test cgroups empty', () => procs().length === 0)
    for (const d of [...subs, dir]) {
      try {
        rmdirSync(d)
      } catch {
        // not made
      }
    }
  })
  return dir
}

const cgroupOf = (pid: number) =>
  /^0::(.*)$/m.exec(readFileSync(`/proc/${pid}/cgroup`, 'utf8'))?.[1]

t.test(
  'a supervisor in a delegated cgroup moves into a leaf and gives each instance its own',
  async (t) => {
    const cg = testCgroup(t)
    if (!cg) return
    const name = cg.slice(cg.lastIndexOf('/'))
    const dir = tempDir(t)
    // The supervisor joins the test's cgroup first thing, as systemd would have started it there;
    // its children must not inherit that step.
    const join_ = join(dir, 'join-cgroup.mjs')
    writeFileSync(
      join_,
      "import { writeFileSync } from 'node:fs'\n" +
        'writeFileSync(process.env.JOIN_CGROUP, String(process.pid))\n' +
        'delete process.env.JOIN_CGROUP\ndelete process.env.NODE_OPTIONS\n',
    )
    const offered = readFileSync(join(cg, 'cgroup.controllers'), 'utf8').trim().split(/\s+/)
    const memory = offered.includes('memory')
    const config = writeConfig(dir, {
      app: fixture({ port: 29610, cgroup: {} }),
      plain: fixture({ port: 29611 }),
      ...(memory
        ? {
            hog: fixture(
              { port: 29612, restart: 'never', cgroup: { memoryMax: 64 * 1024 * 1024 } },
              { HOG_MB: '256' },
            ),
          }
        : {}),
    })
    const sup = new Supervisor(config, {
      JOIN_CGROUP: join(cg, 'cgroup.procs'),
      NODE_OPTIONS: `--import=${join_}`,
    })
    t.teardown(() => sup.kill())
    const app = await waitUntil('app#0 ready', async () => {
      const i = (await status(config).catch(() => undefined))?.instances.find(
        (x) => x.id === 'app#0',
      )
      return i?.state === 'ready' && i.pid
    })
    t.equal(cgroupOf(sup.pid), `${name}/supervisor`, 'the supervisor moved into its leaf')
    t.equal(cgroupOf(app), `${name}/app.0`, 'the instance is in a cgroup of its own')
    const plain = (await status(config)).instances.find((x) => x.id === 'plain#0')!.pid!
    t.equal(
      cgroupOf(plain),
      `${name}/supervisor`,
      'an instance without cgroup settings stays with it',
    )
    t.equal((await cli(['stop', 'app', '-c', config])).code, 0)
    await waitUntil('app#0 gone', () => !alive(app))
    await waitUntil('its cgroup removed', () => !existsSync(join(cg, 'app.0')))
    t.pass('its cgroup is removed once it is empty')
    if (memory) {
      const exited = await sup.waitLog(
        'hog exited',
        (r) => r.event === 'exited' && r.component === 'hog',
      )
      t.match(exited, { exit: { reason: 'oom' }, msg: /killed by the kernel's OOM killer/ })
    } else {
      t.comment(
        `no memory controller offered here (${offered.join(' ') || 'none'}): the OOM exit reason is not tested`,
      )
    }
  },
)
