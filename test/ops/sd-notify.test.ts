import { chmodSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import {
  CLOSE_WAIT_MS,
  NOTIFY_TIMEOUT_MS,
  SdNotify,
  takeNotifyEnv,
} from '../../src/ops/sd-notify.js'
import { statusLine } from '../../src/ops/status-line.js'
import { systemClock } from '../../src/seams/clock.js'
import { tempDir, waitUntil } from '../helpers/supervisor.js'

t.test('pins the helper timeouts', async (t) => {
  t.equal(NOTIFY_TIMEOUT_MS, 10_000, "twice systemd-notify's own 5 s wait for the manager")
  t.equal(CLOSE_WAIT_MS, 3_000)
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
  })
  t.same(takeNotifyEnv({ NOTIFY_SOCKET: '@sd', WATCHDOG_USEC: 'soon' }, 7), {
    socket: '@sd',
    watchdogUsec: undefined,
  })
  t.equal(takeNotifyEnv({ WATCHDOG_USEC: '1000' }, 7), undefined, 'not a notify service')
})

t.test('status lines count wanted instances by state, with the phase and the role', async (t) => {
  const ready = { state: 'ready' as const, wanted: true }
  t.equal(statusLine('running', [ready, ready]), '2/2 ready')
  t.equal(
    statusLine(
      'starting',
      [
        ready,
        { state: 'starting', wanted: true },
        { state: 'stopped', wanted: true },
        { state: 'stopped', wanted: false },
      ],
      'active, epoch 3',
    ),
    'starting: 1/3 ready, 1 starting, 1 waiting; active, epoch 3',
  )
  t.equal(
    statusLine('reloading', [ready, { state: 'failed', wanted: true }]),
    'reloading: 1/2 ready, 1 failed',
  )
  t.equal(
    statusLine('running', [{ state: 'stopped', wanted: false }], 'standby, epoch 4'),
    'no instance to run; standby, epoch 4',
  )
  t.equal(
    statusLine('stopping', [
      { state: 'stopping', wanted: false },
      { state: 'stopped', wanted: false },
    ]),
    'stopping: 1 of 2 instances still running',
  )
})

/** A stand-in for systemd-notify that appends its arguments to a file, one run a line. */
const fakeNotify = (dir: string, body = 'printf "%s\\n" "$*" >> "$OUT"') => {
  const program = join(dir, 'fake-notify')
  writeFileSync(program, `#!/bin/sh\n${body}\n`)
  chmodSync(program, 0o755)
  return program
}

t.test(
  'sends messages one run at a time in order, the latest status and one watchdog ping waiting',
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
    await sd.close()
    t.same(readFileSync(out, 'utf8').trimEnd().split('\n'), [
      '--pid=4242 READY=1 STATUS=2/2 ready',
      '--pid=4242 STATUS=one line',
      '--pid=4242 WATCHDOG=1',
      '--pid=4242 STOPPING=1',
    ])
    t.same(problems, [])
    sd.send({ STATUS: 'after close' }, 'status')
    t.equal(readFileSync(out, 'utf8').trimEnd().split('\n').length, 4, 'nothing after close')
  },
)

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
  await sd.close()
  t.equal(readFileSync(out, 'utf8').trimEnd().split('\n').length, 3, 'every message was tried')
  t.equal(problems.length, 1)
  t.match(problems[0], /READY exited with code 1: Failed to notify init system.*\/run\/none\.sock/)
})

t.test('turns itself off when the helper is missing, saying so once', async (t) => {
  const problems: string[] = []
  const sd = new SdNotify({
    socket: '/run/x.sock',
    pid: 1,
    clock: systemClock,
    env: { PATH: '/nonexistent' },
    onProblem: (m) => problems.push(m),
  })
  sd.send({ READY: '1' })
  sd.send({ WATCHDOG: '1' }, 'watchdog')
  await waitUntil('the problem', () => problems.length > 0)
  sd.send({ STOPPING: '1' })
  await sd.close()
  t.equal(problems.length, 1)
  t.match(problems[0], /systemd-notify not found on PATH \(\/nonexistent\).*notifications/)
})
