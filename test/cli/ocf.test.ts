// The OCF agent's policy: its timeout margin and which instances must be ready for a monitor at
// OCF_CHECK_LEVEL 10 (the real agent against real supervisors: test/integration/ocf.test.ts).
// Runs nothing.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import type { StatusReply } from '../../src/status.js'
import { actionMarginMs, DEFAULT_ACTION_TIMEOUT_MS, notReady, OCF } from '../../src/cli/ocf.js'
import { loadConfig } from '../../src/config/load-config.js'
import { planInstances } from '../../src/config/plan.js'

t.test('OCF codes, the default timeout and the margin are pinned', async (t) => {
  t.same(OCF, {
    SUCCESS: 0,
    ERR_GENERIC: 1,
    ERR_ARGS: 2,
    ERR_UNIMPLEMENTED: 3,
    ERR_INSTALLED: 5,
    ERR_CONFIGURED: 6,
    NOT_RUNNING: 7,
    RUNNING_PROMOTED: 8,
    FAILED_PROMOTED: 9,
  })
  t.equal(DEFAULT_ACTION_TIMEOUT_MS, 20_000, "Pacemaker's default operation timeout")
  t.equal(actionMarginMs(20_000), 2_000, 'at least 2 s')
  t.equal(actionMarginMs(60_000), 6_000, 'a tenth')
  t.equal(actionMarginMs(3_000), 1_500, 'at most half')
})

t.test('level 10 wants the instances the reconciler wants ready', async (t) => {
  const file = join(t.testdir({}), 'tandem.json')
  const cmd = ['node', 'x.js']
  writeFileSync(
    file,
    JSON.stringify({
      components: {
        web: { command: cmd, port: 26380, instances: 2 },
        cold: { command: cmd, runOn: 'active' },
        hot: { command: cmd, runOn: 'active', standby: 'hot' },
        job: { command: cmd, restart: 'on-failure' },
      },
      ha: { name: 'x', backend: { type: 'external' } },
    }),
  )
  const specs = new Map(planInstances(loadConfig(file)).map((i) => [i.id, i]))
  const instance = (id: string, state: string, extra: Record<string, unknown> = {}) =>
    ({ id, state, stoppedByOperator: false, ...extra }) as unknown as StatusReply['instances'][0]
  const reply = (role: string, instances: StatusReply['instances']): StatusReply => ({
    node: 'n',
    role,
    pid: 1,
    config: file,
    instances,
  })
  const clean = { reason: 'exited', code: 0, signal: null }
  const standby = [
    instance('web#0', 'ready'),
    instance('web#1', 'stopped', { stoppedByOperator: true }),
    instance('cold#0', 'stopped'),
    instance('hot#0', 'ready'),
    instance('job#0', 'stopped', { lastExit: clean }),
  ]
  t.same(notReady(reply('standby', standby), specs), [], 'a healthy standby')
  t.same(
    notReady(reply('active', standby), specs),
    ['cold#0 stopped'],
    'active: the cold active-only instance is wanted',
  )
  t.same(
    notReady(
      reply('standby', [
        instance('web#0', 'backoff'),
        instance('hot#0', 'starting'),
        instance('job#0', 'stopped'),
        instance('gone#0', 'ready'),
        instance('gone#1', 'failed'),
      ]),
      specs,
    ),
    ['web#0 backoff', 'hot#0 starting', 'job#0 stopped', 'gone#1 failed'],
    'restarting, not yet run, and an instance the file no longer names judged by its state',
  )
})
