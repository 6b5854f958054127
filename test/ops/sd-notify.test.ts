import { chmodSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import {
  CLOSE_WAIT_MS,
  type MessageKind,
  NOTIFY_TIMEOUT_MS,
  SdNotify,
  takeNotifyEnv,
} from '../../src/ops/sd-notify.js'
import { type InstanceView, NAMED_MAX, statusLine } from '../../src/ops/status-line.js'
import {
  READY_REPEAT_MS,
  startSystemdNotifier,
  type SystemdNotifierOptions,
} from '../../src/ops/systemd-notifier.js'
import { systemClock } from '../../src/seams/clock.js'
import { FakeClock } from '../helpers/fake-clock.js'
import { tempDir, waitUntil } from '../helpers/supervisor.js'

t.test('pins the helper timeouts', async (t) => {
  t.equal(NOTIFY_TIMEOUT_MS, 10_000, "twice systemd-notify's own 5 s wait for the manager")
  t.equal(CLOSE_WAIT_MS, 3_000)
  t.equal(
    READY_REPEAT_MS,
    2_000,
    'several chances within the start timeout left after the deadline',
  )
  t.equal(NAMED_MAX, 3, 'the status line stays one line')
})

t.test('takes the notify variables out of the environment that children inherit', async (t) => {
  const env: NodeJS.ProcessEnv = {
    NOTIFY_SOCKET: '/run/systemd/notify',
    WATCHDOG_USEC: '20000000',
    WATCHDOG_PID: '42',
    PATH: '/usr/bin',
  }
  t.same(takeNotifyEnv(env, 42), { socket: '/run/systemd/notify', watchdogUsec: 20_000_000 })
  t.same(env, { PATH: '/usr/bin' })
})

t.test('answers the watchdog only when WATCHDOG_PID is unset or names this process', async (t) => {
  t.same(takeNotifyEnv({ NOTIFY_SOCKET: '@sd', WATCHDOG_USEC: '1000' }, 7), {
    socket: '@sd',
    watchdogUsec: 1000,
  })
  t.same(takeNotifyEnv({ NOTIFY_SOCKET: '@sd', WATCHDOG_USEC: '1000', WATCHDOG_PID: '8' }, 7), {
    socket: '@sd',
    watchdogUsec: undefined,
    otherWatchdog: { pid: 8, usec: 1000 },
  })
  t.same(takeNotifyEnv({ NOTIFY_SOCKET: '@sd', WATCHDOG_USEC: 'soon' }, 7), {
    socket: '@sd',
    watchdogUsec: undefined,
  })
  t.equal(takeNotifyEnv({ WATCHDOG_USEC: '1000' }, 7), undefined, 'not a notify service')
})

t.test('status lines count wanted instances by state, with the phase and the role', async (t) => {
  const ready = (id: string): InstanceView => ({ id, state: 'ready', wanted: true })
  t.equal(statusLine('running', [ready('a#0'), ready('a#1')]), '2/2 ready')
  t.equal(
    statusLine(
      'starting',
      [
        ready('a#0'),
        { id: 'b#0', state: 'starting', wanted: true },
        { id: 'c#0', state: 'stopped', wanted: true },
        { id: 'd#0', state: 'stopped', wanted: false },
      ],
      'active, epoch 3',
    ),
    'starting: 1/3 ready, 1 starting, 1 waiting; active, epoch 3',
    'no names while starting: every instance is not ready yet',
  )
  t.equal(
    statusLine('reloading', [ready('a#0'), { id: 'b#0', state: 'failed', wanted: true }]),
    'reloading the config: 1/2 ready, 1 failed (not ready: b#0)',
  )
  t.equal(
    statusLine('running', [{ id: 'a#0', state: 'stopped', wanted: false }], 'standby, epoch 4'),
    'no instance to run; standby, epoch 4',
  )
  t.equal(
    statusLine('stopping', [
      { id: 'a#0', state: 'stopping', wanted: false },
      { id: 'b#0', state: 'stopped', wanted: false },
    ]),
    'stopping: 1 of 2 instances still running',
  )
})

t.test('status lines name the instances not ready, the first few of many', async (t) => {
  const view = (id: string, state: InstanceView['state']): InstanceView => ({
    id,
    state,
    wanted: true,
  })
  t.equal(
    statusLine(
      'running',
      [view('web#0', 'ready'), view('api#0', 'backoff'), view('api#1', 'failed')],
      'active, epoch 3',
    ),
    '1/3 ready, 1 backing off, 1 failed (not ready: api#0, api#1); active, epoch 3',
  )
  const many = ['a#0', 'a#1', 'a#2', 'a#3', 'a#4'].map((id) => view(id, 'starting'))
  t.equal(
    statusLine('running', [view('web#0', 'ready'), ...many]),
    '1/6 ready, 5 starting (not ready: a#0, a#1, a#2 and 2 more)',
  )
})

t.test('a completed one-shot instance is counted apart, not as missing', async (t) => {
  const job: InstanceView = { id: 'job#0', state: 'stopped', wanted: true, completed: true }
  t.equal(
    statusLine('running', [{ id: 'web#0', state: 'ready', wanted: true }, job]),
    '1/1 ready, 1 completed',
  )
  t.equal(statusLine('running', [job]), '1 completed')
})

/** A stand-in for systemd-notify that appends its arguments to a file, one run a line. */
const fakeNotify = (dir: string, body = 'printf "%s\\n" "$*" >> "$OUT"') => {
  const program = join(dir, 'fake-notify')
  writeFileSync(program, `#!/bin/sh\n${body}\n`)
  chmodSync(program, 0o755)
  return program
}

/** The lines the fake helper wrote, once there are `n` whole ones. */
const linesOf = (out: string, n: number) =>
  waitUntil(`${n} runs of the helper`, () => {
    let text = ''
    try {
      text = readFileSync(out, 'utf8')
    } catch {
      return false
    }
    const lines = text.split('\n').slice(0, -1)
    return lines.length >= n && lines
  })

t.test(
  'sends messages one run at a time in order, the latest status waiting, one watchdog ping at a time',
  async (t) => {
    const dir = tempDir(t)
    const out = join(dir, 'out')
    const problems: string[] = []
    const sd = new SdNotify({
      socket: '/run/test.sock',
      pid: 4242,
      clock: systemClock,
      env: { ...process.env, OUT: out },
      onProblem: (m) => problems.push(m),
      program: fakeNotify(dir),
    })
    sd.send({ READY: '1', STATUS: '2/2\nready' })
    sd.send({ STATUS: 'replaced by the next' }, 'status')
    sd.send({ STATUS: 'one line' }, 'status')
    sd.send({ WATCHDOG: '1' }, 'watchdog')
    sd.send({ WATCHDOG: '1' }, 'watchdog')
    sd.send({ STOPPING: '1' })
    const lines = await linesOf(out, 4)
    await sd.close()
    // The ping goes beside the others: only the order of the rest is kept.
    t.same(
      lines.filter((l) => !l.includes('WATCHDOG')),
      [
        '--pid=4242 READY=1 STATUS=2/2 ready',
        '--pid=4242 STATUS=one line',
        '--pid=4242 STOPPING=1',
      ],
    )
    t.same(
      lines.filter((l) => l.includes('WATCHDOG')),
      ['--pid=4242 WATCHDOG=1'],
      'the second ping was sent while the first was on its way',
    )
    t.same(problems, [])
    sd.send({ STATUS: 'after close' }, 'status')
    t.equal(readFileSync(out, 'utf8').trimEnd().split('\n').length, 4, 'nothing after close')
  },
)

t.test('a watchdog ping does not wait behind a slow message', async (t) => {
  const dir = tempDir(t)
  const out = join(dir, 'out')
  const clock = new FakeClock()
  const problems: string[] = []
  const sd = new SdNotify({
    socket: '/run/test.sock',
    pid: 4242,
    clock,
    env: { ...process.env, OUT: out },
    onProblem: (m) => problems.push(m),
    // A manager too busy to read a message: that run hangs until close() kills it.
    program: fakeNotify(
      dir,
      'case "$*" in *slow*) exec sleep 60;; esac; printf "%s\\n" "$*" >> "$OUT"',
    ),
  })
  sd.send({ STATUS: 'slow' }, 'status')
  sd.send({ WATCHDOG: '1' }, 'watchdog')
  t.same(await linesOf(out, 1), ['--pid=4242 WATCHDOG=1'])
  const closing = sd.close()
  await clock.advance(CLOSE_WAIT_MS)
  await closing
  t.same(problems, [], 'the run killed at close is not reported')
})

t.test('reports a failing helper once, with its stderr, and keeps sending', async (t) => {
  const dir = tempDir(t)
  const out = join(dir, 'out')
  const problems: string[] = []
  const sd = new SdNotify({
    socket: '/run/none.sock',
    pid: 1,
    clock: systemClock,
    env: { ...process.env, OUT: out },
    onProblem: (m) => problems.push(m),
    program: fakeNotify(
      dir,
      'printf "%s\\n" "$*" >> "$OUT"; echo "Failed to notify init system: No such file" >&2; exit 1',
    ),
  })
  sd.send({ READY: '1' })
  sd.send({ STATUS: 'x' }, 'status')
  sd.send({ STOPPING: '1' })
  t.equal((await linesOf(out, 3)).length, 3, 'every message was tried')
  await waitUntil('the problem', () => problems.length > 0)
  await sd.close()
  t.equal(problems.length, 1)
  t.match(problems[0], /READY exited with code 1: Failed to notify init system.*\/run\/none\.sock/)
})

t.test('turns itself off when the helper is missing, saying so once, as an error', async (t) => {
  const problems: string[] = []
  const sd = new SdNotify({
    socket: '/run/x.sock',
    pid: 1,
    clock: systemClock,
    env: { PATH: '/nonexistent' },
    onProblem: (m, level) => problems.push(`${level}: ${m}`),
  })
  sd.send({ READY: '1' })
  sd.send({ WATCHDOG: '1' }, 'watchdog')
  await waitUntil('the problem', () => problems.length > 0)
  sd.send({ STOPPING: '1' })
  await sd.close()
  t.equal(problems.length, 1)
  t.match(
    problems[0],
    /^error: systemd-notify not found on PATH \(\/nonexistent\).*systemd will time the start out/,
  )
})

/** A notifier over `views` (change them to move the instances), a fake clock and sender. */
const notifierOver = (views: InstanceView[], options: Partial<SystemdNotifierOptions> = {}) => {
  const clock = new FakeClock()
  const sent: { at: number; fields: Record<string, string>; kind: MessageKind }[] = []
  const logs: string[] = []
  const notifier = startSystemdNotifier({
    notify: { socket: '/run/test.sock', watchdogUsec: undefined },
    pid: 4242,
    clock,
    env: {},
    readyWithinMs: 10_000,
    startTimeoutMs: 30_000,
    sources: { instances: () => views, role: () => undefined },
    info: (m) => logs.push(`info: ${m}`),
    warn: (m) => logs.push(`warn: ${m}`),
    error: (m) => logs.push(`error: ${m}`),
    sender: {
      send: (fields, kind = 'state') => void sent.push({ at: clock.monotonic(), fields, kind }),
      close: () => Promise.resolve(),
    },
    ...options,
  })
  return { clock, sent, logs, notifier, start: clock.monotonic() }
}

t.test(
  "repeats READY=1 with the status until the unit's start timeout, and with every watchdog ping",
  async (t) => {
    const views: InstanceView[] = [{ id: 'web#0', state: 'starting', wanted: true }]
    const { clock, sent, notifier, start } = notifierOver(views, {
      notify: { socket: '/run/test.sock', watchdogUsec: 10_000_000 },
    })
    notifier.start()
    await clock.advance(1000)
    views[0]!.state = 'ready'
    notifier.update()
    await clock.advance(60_000)
    await notifier.close()
    const pings = sent.filter((m) => m.kind === 'watchdog')
    t.same(pings[0]?.fields, { WATCHDOG: '1' }, 'no READY=1 before the first')
    t.ok(
      pings.slice(1).every((m) => m.fields.READY === '1'),
      'READY=1 with every ping after it',
    )
    t.equal(pings.length, 13, 'every 5 s for 60 s')
    const ready = sent.filter((m) => m.kind !== 'watchdog' && m.fields.READY === '1')
    t.same(ready[0], {
      at: start + 1000,
      fields: { READY: '1', STATUS: '1/1 ready' },
      kind: 'state',
    })
    t.same(
      ready.slice(1).map((m) => m.at - start),
      Array.from({ length: 14 }, (_, i) => 1000 + (i + 1) * READY_REPEAT_MS),
      'every READY_REPEAT_MS until 30 s after start()',
    )
    t.ok(
      ready.slice(1).every((m) => m.kind === 'status' && m.fields.STATUS === '1/1 ready'),
      'with the status line, merged with a status line still waiting',
    )
  },
)

t.test('a degraded READY=1 names the instances not ready, in STATUS and the warning', async (t) => {
  const gaveUp = notifierOver([
    { id: 'web#0', state: 'ready', wanted: true },
    { id: 'api#0', state: 'failed', wanted: true, gaveUp: true },
  ])
  gaveUp.notifier.start()
  t.same(gaveUp.sent[0]?.fields, {
    READY: '1',
    STATUS: '1/2 ready, 1 failed (not ready: api#0)',
  })
  t.match(gaveUp.logs, [
    'warn: told systemd READY=1 with not every instance ready (the others have given up): 1/2 ready, 1 failed (not ready: api#0)',
  ])
  await gaveUp.notifier.close()

  const late = notifierOver([
    { id: 'web#0', state: 'ready', wanted: true },
    { id: 'api#0', state: 'backoff', wanted: true },
  ])
  late.notifier.start()
  t.same(late.sent, [
    { at: late.start, fields: { STATUS: 'starting: 1/2 ready, 1 backing off' }, kind: 'status' },
  ])
  await late.clock.advance(10_000)
  t.same(late.sent[1]?.fields, {
    READY: '1',
    STATUS: '1/2 ready, 1 backing off (not ready: api#0)',
  })
  t.match(late.logs, [/^warn: .*after 10000 ms.*\(not ready: api#0\)$/])
  await late.notifier.close()
})

t.test('a completed one-shot instance does not make READY=1 degraded', async (t) => {
  const { sent, logs, notifier } = notifierOver([
    { id: 'web#0', state: 'ready', wanted: true },
    // As the supervisor saw it before: stopped for good, so "given up".
    { id: 'migrate#0', state: 'stopped', wanted: true, completed: true, gaveUp: true },
  ])
  notifier.start()
  t.same(sent[0]?.fields, { READY: '1', STATUS: '1/1 ready, 1 completed' })
  t.same(logs, ['info: told systemd READY=1: 1/1 ready, 1 completed'])
  await notifier.close()
})

t.test('a config reload shows in STATUS alone, without RELOADING=1', async (t) => {
  const views: InstanceView[] = [{ id: 'web#0', state: 'starting', wanted: true }]
  const { sent, notifier } = notifierOver(views)
  notifier.start()
  notifier.reloading()
  t.same(
    sent.map((m) => m.fields.STATUS),
    ['starting: 0/1 ready, 1 starting'],
    'a reload during the start is part of the start',
  )
  views[0]!.state = 'ready'
  notifier.update()
  notifier.reloading()
  views[0]!.state = 'stopping'
  notifier.update()
  views[0]!.state = 'ready'
  notifier.reloaded()
  t.same(
    sent.slice(2).map((m) => m.fields),
    [
      { READY: '1', STATUS: 'reloading the config: 1/1 ready' },
      { READY: '1', STATUS: 'reloading the config: 0/1 ready, 1 stopping (not ready: web#0)' },
      { READY: '1', STATUS: '1/1 ready' },
    ],
  )
  await notifier.close()
})

t.test('STOPPING=1 ends the READY=1 repeats, in the pings too', async (t) => {
  const { clock, sent, notifier } = notifierOver([{ id: 'web#0', state: 'ready', wanted: true }], {
    notify: { socket: '/run/test.sock', watchdogUsec: 2_000_000 },
  })
  notifier.start()
  await clock.advance(3000)
  notifier.stopping()
  const stopping = sent.length - 1
  t.same(sent[stopping]?.fields, {
    STOPPING: '1',
    STATUS: 'stopping: 1 of 1 instances still running',
  })
  await clock.advance(10_000)
  t.notOk(
    sent.slice(stopping).some((m) => m.fields.READY),
    'no READY=1 once stopping',
  )
  t.ok(
    sent.slice(stopping).some((m) => m.fields.WATCHDOG),
    'the pings go on until close()',
  )
  await notifier.close()
})

t.test('warns that no one pings when WATCHDOG_PID names another process', async (t) => {
  const { sent, logs, notifier } = notifierOver([], {
    notify: {
      socket: '/run/test.sock',
      watchdogUsec: undefined,
      otherWatchdog: { pid: 8, usec: 20_000_000 },
    },
  })
  notifier.start()
  t.match(
    logs[0],
    /^warn: .*WATCHDOG_USEC=20000000.*pid 8 \(WATCHDOG_PID\), not tandem's pid 4242.*systemd will kill the service/,
  )
  t.notOk(sent.some((m) => m.fields.WATCHDOG))
  await notifier.close()
})

t.test('start() after close() does nothing: a shutdown came first', async (t) => {
  const { clock, sent, notifier } = notifierOver([{ id: 'web#0', state: 'ready', wanted: true }], {
    notify: { socket: '/run/test.sock', watchdogUsec: 2_000_000 },
  })
  notifier.stopping()
  await notifier.close()
  notifier.start()
  t.same(
    sent.map((m) => Object.keys(m.fields)),
    [['STOPPING', 'STATUS']],
  )
  t.equal(clock.nextIn(), undefined, 'no timer keeps the process alive')
})

t.test('logs an error when systemd-notify is missing: the start will time out', async (t) => {
  const { logs, notifier } = notifierOver([{ id: 'web#0', state: 'ready', wanted: true }], {
    env: { PATH: '/nonexistent' },
    sender: undefined,
  })
  notifier.start()
  await waitUntil('the error', () => logs.some((l) => l.startsWith('error: ')))
  await notifier.close()
  t.match(logs, [
    /^info: told systemd READY=1/,
    /^error: systemd-notify not found on PATH.*will time the start out/,
  ])
})
