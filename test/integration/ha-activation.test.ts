// The activation hook of a hot standby component (`activate: {type: "command"}`) runs as tandem
// runs every child: its own process group, a pid record while it runs, its output in the
// unified log under its own pid, and stopped (SIGTERM, then SIGKILL) at its timeoutMs without
// touching the instance it activates. Real supervisor, real hook processes.
// Ports 26700-26719 belong to this file (test files run in parallel).
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import t from 'tap'
import { groupAlive } from '../../src/process/process-group.js'
import { fixture, status, tempDir, waitUntil } from '../helpers/supervisor.js'
import { cluster, HA, leader, node } from '../helpers/ha-cluster.js'

/** A hook that says who it is, then (with HANG) ignores SIGTERM and never ends. */
const HOOK = [
  process.execPath,
  '-e',
  [
    'console.log(`hook for epoch ${process.env.TANDEM_EPOCH} of pid ${process.env.TANDEM_PID} as ${process.pid} in group ${process.pid}`)',
    // Whether the instance's env file reached the hook, without printing the secret.
    "if (process.env.HOOK_TOKEN) console.log('hook env file: ' + (process.env.HOOK_TOKEN === 'canary-41f7' ? 'read' : 'wrong'))",
    "if (process.env.HANG) { process.on('SIGTERM', () => console.log('hook ignores SIGTERM')); setInterval(() => {}, 1e6) }",
  ].join('\n'),
]

const pidRecords = (config: string): { id: string; pid: number }[] => {
  const file = join(dirname(config), 'state', 'pids.json')
  return existsSync(file)
    ? (JSON.parse(readFileSync(file, 'utf8')) as { id: string; pid: number }[])
    : []
}

t.test(
  'a hook that ends: its output in the log under its own pid, the instance activated',
  async (t) => {
    const shared = await cluster(t)
    // The instance's env file (a secret): the hook gets what the instance gets.
    const envFile = join(tempDir(t), 'svc.env')
    writeFileSync(envFile, 'HOOK_TOKEN=canary-41f7\n', { mode: 0o600 })
    const a = node(t, shared, 'a', 26700, HA, {
      svc: fixture({
        port: 26701,
        runOn: 'active',
        standby: 'hot',
        envFile,
        activate: { type: 'command', command: HOOK, timeoutMs: 5000 },
      }),
    })
    const said = await a.sup.waitLog('the hook spoke', (r) =>
      /^hook for epoch 1 of pid \d+/.test(String(r.msg)),
    )
    const svc = (await status(a.config)).instances.find((i) => i.id === 'svc#0')!
    t.match(said, { component: 'svc', instance: 0, stream: 'out' })
    t.equal(String(said.msg).split(' ')[6], String(svc.pid), 'TANDEM_PID is the instance')
    t.not(said.childPid, svc.pid, 'logged under the hook pid, not the instance')
    t.equal(String(said.msg).split(' ')[8], String(said.childPid))
    await a.sup.waitLog('the hook got the env file', (r) => r.msg === 'hook env file: read')
    t.notOk(
      a.sup.records.some((r) => JSON.stringify(r).includes('canary-41f7')),
      'the secret is in no log record',
    )
    await a.sup.waitLog('activated', (r) =>
      /svc#0 activated for epoch 1 \(command\)/.test(String(r.msg)),
    )
    await waitUntil('a on /leader answers 200', async () => (await leader(a)) === 200)
    await waitUntil(
      'the hook record gone',
      () => !pidRecords(a.config).some((r) => r.id === 'svc#0:activate'),
    )
    t.equal(
      a.sup.count((r) => /activation hook/.test(String(r.msg))),
      0,
      'no hook problem logged',
    )
  },
)

t.test('a hook that hangs is stopped at its timeoutMs; the instance stays ready', async (t) => {
  const shared = await cluster(t)
  const a = node(t, shared, 'a', 26710, HA, {
    svc: fixture({
      port: 26711,
      runOn: 'active',
      standby: 'hot',
      env: { PORT: '{port}', HANG: '1' },
      activate: { type: 'command', command: HOOK, timeoutMs: 800 },
    }),
  })
  const said = await a.sup.waitLog('the hook spoke', (r) => /^hook for epoch 1/.test(String(r.msg)))
  const hookPid = said.childPid as number
  const record = await waitUntil('a pid record for the running hook', () =>
    pidRecords(a.config).find((r) => r.id === 'svc#0:activate'),
  )
  t.equal(record.pid, hookPid)
  const stopped = await a.sup.waitLog('the hook stopped', (r) =>
    /activation hook .* still ran after timeoutMs 800: stopped/.test(String(r.msg)),
  )
  t.match(stopped, { event: 'activate', component: 'svc', epoch: 1 })
  await a.sup.waitLog('it got SIGTERM first', (r) => r.msg === 'hook ignores SIGTERM')
  t.notOk(groupAlive(hookPid), 'its group is gone (SIGKILL after the stop timeout)')
  t.notOk(
    pidRecords(a.config).some((r) => r.id === 'svc#0:activate'),
    'its pid record removed',
  )
  t.match(
    (await status(a.config)).instances.find((i) => i.id === 'svc#0'),
    { state: 'ready' },
  )
})
