// The hook runner's queue with a fake command: one run at a time per hook, in event order,
// bounded (drops counted and logged once per burst), failures logged and harmless, close.
import t from 'tap'
import type { HookSpec } from '../../src/config/plan.js'
import type { CommandResult } from '../../src/process/run-command.js'
import type { EventName, TandemEvent } from '../../src/supervisor/event-stream.js'
import { hookEnv } from '../../src/supervisor/hook-env.js'
import { HookRunner, hookWants } from '../../src/supervisor/hook-runner.js'

const ev = (seq: number, event: EventName = 'failed', extra: Partial<TandemEvent> = {}) =>
  ({
    seq,
    time: '2026-12-05T00:00:00.000Z',
    node: 'n1',
    event,
    message: `m${seq}`,
    id: 'web#0',
    component: 'web',
    instance: 0,
    ...extra,
  }) as TandemEvent

const hook = (extra: Partial<HookSpec> = {}): HookSpec => ({
  on: ['failed', 'crashLoop'],
  command: ['/bin/page'],
  cwd: '/',
  timeoutMs: 1000,
  maxQueued: 2,
  ...extra,
})

const ok: CommandResult = { code: 0, signal: null, timedOut: false }

/** A fake run: each call waits until the test ends it. */
const harness = (hooks: HookSpec[]) => {
  const calls: { index: number; seq: number; end: (r?: CommandResult | Error) => void }[] = []
  const logs: { level: string; fields: Record<string, unknown>; msg: string }[] = []
  const at =
    (level: string) =>
    (fields: object, msg: string): void => {
      logs.push({ level, fields: fields as Record<string, unknown>, msg })
    }
  const log = { info: at('info'), warn: at('warn'), error: at('error') }
  const runner = new HookRunner(hooks, {
    log,
    run: (_h, index, e) =>
      new Promise((resolve, reject) =>
        calls.push({
          index,
          seq: e.seq,
          end: (r = ok) => (r instanceof Error ? reject(r) : resolve(r)),
        }),
      ),
  })
  return { runner, calls, logs }
}

const settle = () => new Promise((r) => setImmediate(r))

t.test('one run at a time per hook, in event order; hooks run side by side', async (t) => {
  const { runner, calls } = harness([hook(), hook({ on: ['failed'] })])
  runner.listener(ev(1))
  runner.listener(ev(2))
  t.same(calls, [], "not inside the publisher's call")
  await settle()
  t.same(
    calls.map((c) => [c.index, c.seq]),
    [
      [0, 1],
      [1, 1],
    ],
    'each hook runs the first event at once',
  )
  t.match(runner.status(), [
    { index: 0, running: 1, queued: 1 },
    { index: 1, running: 1, queued: 1 },
  ])
  calls[0]!.end()
  await settle()
  t.same(
    calls.map((c) => [c.index, c.seq]),
    [
      [0, 1],
      [1, 1],
      [0, 2],
    ],
    'the next of hook 0 once its run ended, hook 1 still busy',
  )
  calls[1]!.end()
  calls[2]!.end()
  await settle()
  calls[3]!.end()
  await settle()
  t.same(runner.status(), [
    { index: 0, queued: 0, ran: 2, failed: 0, dropped: 0 },
    { index: 1, queued: 0, ran: 2, failed: 0, dropped: 0 },
  ])
})

t.test('a full queue drops and counts; the first drop and the burst are logged', async (t) => {
  const { runner, calls, logs } = harness([hook({ maxQueued: 2 })])
  for (let seq = 1; seq <= 7; seq++) runner.listener(ev(seq))
  await settle()
  // 1 runs, 2 and 3 wait, 4 to 7 are dropped.
  t.match(runner.status(), [{ running: 1, queued: 2, dropped: 4 }])
  const warns = logs.filter((l) => l.level === 'warn')
  t.equal(warns.length, 1, 'one line for the burst so far')
  t.match(
    warns[0]!.msg,
    /hook 0 \(\/bin\/page\): queue full \(2 events wait\): dropped event 4 \(failed web#0\)/,
  )
  calls[0]!.end()
  await settle()
  t.match(
    logs.at(-1)!.msg,
    /dropped 4 events \(4 to 7\) while its queue was full; 4 dropped since the start/,
  )
  runner.listener(ev(8))
  t.match(runner.status(), [{ running: 2, queued: 2, dropped: 4 }], 'room again: 8 waits')
  runner.listener(ev(9))
  t.match(runner.status(), [{ dropped: 5 }])
  t.equal(logs.filter((l) => /queue full/.test(l.msg)).length, 2, 'a new burst is told again')
  for (const seq of [2, 3, 8]) {
    t.equal(calls.at(-1)!.seq, seq, `then ${seq}`)
    calls.at(-1)!.end()
    await settle()
  }
  t.equal(calls.length, 4)
})

t.test('maxQueued 0: only what finds the hook idle runs', async (t) => {
  const { runner, calls } = harness([hook({ maxQueued: 0 })])
  runner.listener(ev(1))
  runner.listener(ev(2))
  await settle()
  t.match(runner.status(), [{ running: 1, queued: 0, dropped: 1 }])
  calls[0]!.end()
  await settle()
  t.equal(calls.length, 1)
})

t.test('failures, timeouts and throws are logged and counted; the queue goes on', async (t) => {
  const { runner, calls, logs } = harness([hook({ maxQueued: 10 })])
  for (let seq = 1; seq <= 5; seq++) runner.listener(ev(seq))
  await settle()
  const results: (CommandResult | Error)[] = [
    { code: 3, signal: null, timedOut: false },
    { code: null, signal: 'SIGKILL', timedOut: true },
    { code: null, signal: null, timedOut: false, spawnError: 'ENOENT: /bin/page' },
    new Error('boom'),
    ok,
  ]
  for (const r of results) {
    calls.at(-1)!.end(r)
    await settle()
  }
  t.equal(calls.length, 5)
  t.match(runner.status(), [{ ran: 5, failed: 4, queued: 0 }])
  t.same(
    logs.map((l) => [l.level, l.msg.replace(/^hook 0 \(\/bin\/page\) /, '')]),
    [
      ['error', 'for event 1 (failed web#0) failed: exit code 3'],
      ['error', 'for event 2 (failed web#0) still ran after timeoutMs 1000: stopped'],
      ['error', 'for event 3 (failed web#0) could not run: ENOENT: /bin/page'],
      ['error', 'for event 4 (failed web#0): boom'],
      ['info', 'ran for event 5 (failed web#0)'],
    ],
  )
  t.match(logs[0]!.fields, { event: 'hook', hook: 0, seq: 1, on: 'failed', code: 3 })
})

t.test('hooks run only for their events and target', async (t) => {
  const web1 = ev(1, 'ready', { id: 'web#1', instance: 1 })
  const api0 = ev(2, 'ready', { id: 'api#0', component: 'api', instance: 0 })
  const node = ev(3, 'promoted', { id: undefined, component: undefined, instance: undefined })
  const on = hook({ on: ['ready', 'promoted'] })
  t.ok(hookWants(on, web1))
  t.ok(hookWants(on, node))
  t.notOk(hookWants(on, ev(4, 'exited')))
  const web = { ...on, target: { component: 'web' } }
  t.ok(hookWants(web, web1))
  t.notOk(hookWants(web, api0))
  t.notOk(hookWants(web, node), "a target's hook does not run for the node's own events")
  const web0 = { ...on, target: { component: 'web', index: 0 } }
  t.notOk(hookWants(web0, web1))
  t.ok(hookWants(web0, ev(5, 'ready')))
})

t.test('close drops what waits, waits for what runs, and takes no more', async (t) => {
  const { runner, calls, logs } = harness([hook()])
  runner.listener(ev(1))
  runner.listener(ev(2))
  let closed = false
  const closing = runner.close().then(() => (closed = true))
  await settle()
  t.notOk(closed, 'waits for the run under way')
  t.match(logs.at(-1)!.msg, /1 waiting events not run: the supervisor is stopping/)
  runner.listener(ev(3))
  calls[0]!.end()
  await closing
  t.equal(calls.length, 1, 'nothing else ran')
})

t.test(
  "a hook's environment: the event and the instance variables, no inherited TANDEM_*",
  async (t) => {
    const e = ev(7, 'exited', { port: 8080, childPid: 4242 })
    const env = hookEnv(
      { PATH: '/usr/bin', TANDEM_COMPONENT: 'outer', TANDEM_ROLE: 'active', TANDEM_CONFIG: 'x' },
      e,
      '/etc/tandem.json',
    )
    t.same(env, {
      PATH: '/usr/bin',
      TANDEM_CONFIG: '/etc/tandem.json',
      TANDEM_EVENT: 'exited',
      TANDEM_EVENT_JSON: JSON.stringify(e),
      TANDEM_SEQ: '7',
      TANDEM_NODE: 'n1',
      TANDEM_COMPONENT: 'web',
      TANDEM_INSTANCE: '0',
      TANDEM_PORT: '8080',
      TANDEM_PID: '4242',
    })
    const nodeEnv = hookEnv(
      {},
      ev(8, 'promoted', { id: undefined, component: undefined, instance: undefined }),
      'c',
    )
    t.notOk('TANDEM_COMPONENT' in nodeEnv, 'a node event has no instance variables')
  },
)

t.test(
  'replace: an unchanged hook goes on as it was, a changed or removed one gets no more',
  async (t) => {
    const same = hook({ on: ['failed'] })
    const { runner, calls, logs } = harness([same, hook({ command: ['/bin/old'] }), hook()])
    runner.listener(ev(1))
    runner.listener(ev(2))
    await settle()
    t.same(
      calls.map((c) => [c.index, c.seq]),
      [
        [0, 1],
        [1, 1],
        [2, 1],
      ],
    )
    // Hook 0 unchanged, hook 1 changed (its command), hook 2 removed, hook 3 new.
    const changed = hook({ command: ['/bin/new'] })
    const added = hook({ on: ['ready'] })
    t.same(runner.replace([{ ...same }, changed, added]), { kept: 1, added: 2, removed: 2 })
    t.match(runner.status(), [
      { index: 0, running: 1, queued: 1 },
      { index: 1, queued: 0, ran: 0 },
      { index: 2, queued: 0, ran: 0 },
    ])
    t.equal(
      logs.filter((l) =>
        /1 waiting events not run: the reload changed or removed this hook/.test(l.msg),
      ).length,
      2,
      "the changed and the removed hook's waiting event is logged as not run",
    )
    runner.listener(ev(3))
    runner.listener(ev(4, 'ready'))
    await settle()
    t.same(
      calls.slice(3).map((c) => [c.index, c.seq]),
      [
        [1, 3],
        [2, 4],
      ],
      'the new definitions run from now on (the old hook 1 still runs its event 1 beside)',
    )
    // The old runs end; nothing more of theirs is run.
    calls[1]!.end()
    calls[2]!.end()
    await settle()
    t.equal(calls.length, 5, 'the replaced hooks ran nothing more')
    t.match(runner.status()[0], { index: 0, running: 1, queued: 2 }, 'hook 0 kept its queue')

    // close() waits for every run under way, the replaced hooks' included.
    const old = harness([hook({ command: ['/bin/slow'] })])
    old.runner.listener(ev(1))
    await settle()
    old.runner.replace([])
    let closed = false
    void old.runner.close().then(() => (closed = true))
    await settle()
    t.notOk(closed, 'close waits for the replaced hook that still runs')
    old.calls[0]!.end()
    await settle()
    await settle()
    t.ok(closed)
  },
)
