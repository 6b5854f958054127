// A rollout's progress as stream events: started, replaced per instance, done; or rolledBack
// (the rollback's own replacements not counted as replaced); reload first; config.rejected.
import t from 'tap'
import { ConfigError, TandemError } from '../../src/errors.js'
import type { EventInput } from '../../src/supervisor/event-stream.js'
import type { RolloutEvent } from '../../src/supervisor/rollout.js'
import { withRolloutEvents } from '../../src/supervisor/rollout-events.js'

const fields = (id: string) => ({ component: id.split('#')[0], instance: Number(id.split('#')[1]) })

const run = async (what: string, steps: Omit<RolloutEvent, 'event'>[], end?: Error) => {
  const published: EventInput[] = []
  const result = await withRolloutEvents(
    what,
    '/etc/tandem.json',
    (e) => published.push(e),
    fields,
    async (progress) => {
      for (const s of steps) progress({ event: 'rollout', ...s })
      if (end) throw end
      return 'ok'
    },
  ).catch((err: unknown) => err)
  return { published, result }
}

t.test('an upgrade that went through', async (t) => {
  const { published, result } = await run('upgrade', [
    { phase: 'plan', message: 'rollout: 2 to replace, 0 to remove, 0 to add' },
    { phase: 'stopping', id: 'web#0', message: 'web#0 stopping' },
    { phase: 'replaced', id: 'web#0', n: 1, of: 2, message: 'web#0 replaced: ready (pid 5)' },
    { phase: 'replaced', id: 'web#1', n: 2, of: 2, message: 'web#1 replaced: ready (pid 6)' },
    { phase: 'done', message: 'rollout done: 2 replaced' },
  ])
  t.equal(result, 'ok')
  t.same(published, [
    {
      event: 'rollout.started',
      message: 'upgrade: rollout: 2 to replace, 0 to remove, 0 to add',
      what: 'upgrade',
    },
    {
      event: 'rollout.replaced',
      message: 'web#0 replaced: ready (pid 5)',
      what: 'upgrade',
      id: 'web#0',
      component: 'web',
      instance: 0,
      n: 1,
      of: 2,
    },
    {
      event: 'rollout.replaced',
      message: 'web#1 replaced: ready (pid 6)',
      what: 'upgrade',
      id: 'web#1',
      component: 'web',
      instance: 1,
      n: 2,
      of: 2,
    },
    { event: 'rollout.done', message: 'upgrade: rollout done: 2 replaced', what: 'upgrade' },
  ])
})

t.test('a rollout that rolled back: the rollback is one event, after it', async (t) => {
  const err = new TandemError(
    'EROLLOUT',
    'web#1 exited during the rollout; rolled back web#1, web#0',
  )
  const { published, result } = await run(
    'reload',
    [
      { phase: 'plan', message: 'rollout: 2 to replace' },
      { phase: 'replaced', id: 'web#0', n: 1, of: 2, message: 'web#0 replaced' },
      { phase: 'failed', message: 'rollout stopped: web#1 exited' },
      { phase: 'rollback', id: 'web#1', message: 'web#1 rolling back' },
      { phase: 'replaced', id: 'web#1', message: 'web#1 replaced' },
      { phase: 'rollback', id: 'web#0', message: 'web#0 rolling back' },
      { phase: 'failed', id: 'web#0', message: 'rollback of web#0 failed too' },
    ],
    err,
  )
  t.equal(result, err, 'the error goes on to the caller')
  t.same(
    published.map((e) => e.event),
    ['reload', 'rollout.started', 'rollout.replaced', 'rollout.rolledBack'],
  )
  t.match(published[3], {
    what: 'reload',
    rolledBack: ['web#1', 'web#0'],
    message: `reload rolled back: ${err.message}`,
  })
  t.match(published[0], { config: '/etc/tandem.json', message: 'reload of /etc/tandem.json' })
})

t.test(
  'a config that does not validate: config.rejected in one line, with its problems',
  async (t) => {
    const err = new ConfigError('/etc/tandem.json', [
      { path: 'components.web.port', message: 'expected a number' },
    ])
    const { published } = await run('upgrade', [], err)
    t.equal(published.length, 1)
    t.match(published[0], {
      event: 'config.rejected',
      what: 'upgrade',
      problems: [{ path: 'components.web.port' }],
    })
    t.notMatch(published[0]!.message, /\n/)
    t.match(published[0]!.message, /^upgrade refused: .*components\.web\.port: expected a number/)
    const other = await run('upgrade', [], new TandemError('EBUSY', 'busy'))
    t.same(other.published, [], 'other refusals are not events')
  },
)
