import { spawn } from 'node:child_process'
import { get } from 'node:http'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { hostMonotonic } from '../../src/seams/clock.js'
import { killGroup, ROOT, waitUntil } from '../helpers/supervisor.js'

// The built helper (`tandem/child`, dist/child/index.js) in a real child program.
const FIXTURE = join(ROOT, 'test/fixtures/tandem-child.js')

interface Message {
  type?: string
  epoch?: number
  lapsedMs?: number
  active?: boolean
}

/** GET / on the child: its status code and body. */
const ask = (port: number): Promise<{ status: number; body: string }> =>
  new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => (body += c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    }).on('error', reject)
  })

/** The fixture in its own process group, with an IPC channel unless `ipc` is false. */
const start = (
  t: Test,
  port: number,
  env: Record<string, string>,
  options: { ipc?: boolean } = {},
) => {
  const child = spawn(process.execPath, [FIXTURE], {
    cwd: ROOT,
    env: {
      // Only the TANDEM_* variables of the test case (the test may itself run under tandem).
      ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TANDEM_'))),
      PORT: String(port),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'inherit', ...(options.ipc === false ? [] : ['ipc' as const])],
    detached: true,
  })
  t.teardown(() => killGroup(child.pid!))
  const messages: Message[] = []
  let out = ''
  child.on('message', (m: Message) => messages.push(m))
  child.stdout!.setEncoding('utf8')
  child.stdout!.on('data', (c: string) => (out += c))
  const send = (m: object) => child.send(m)
  return {
    messages,
    output: () => out,
    send,
    /**
     * The child's state after every message sent before (IPC keeps the order). Only once it
     * listens: a message that comes before the program's listeners is lost.
     */
    probe: async (): Promise<Message> => {
      const before = messages.length
      send({ type: 'probe' })
      return waitUntil('the probe answer', () =>
        messages.slice(before).find((m) => m.type === 'probe'),
      )
    },
    listening: () => waitUntil('the child to listen', () => out.includes('listening')),
  }
}

const far = () => hostMonotonic() + 60_000

t.test(
  'serves while its deadline is ahead, stops at the deadline, and a late lease cannot revive it',
  async (t) => {
    const port = 25301
    const c = start(t, port, {
      TANDEM_ROLE: 'active',
      TANDEM_EPOCH: '3',
      TANDEM_DEADLINE: String(far()),
      COOPERATIVE: '1',
    })
    await c.listening()
    t.same(await ask(port), { status: 200, body: 'active 3\n' })

    // The next deadline is close: once it passes the child deactivates by itself.
    const deadline = hostMonotonic() + 300
    c.send({ type: 'tandem:lease', epoch: 3, deadline })
    await waitUntil('the deactivation', () => c.output().includes('deactivated: '))
    t.ok(hostMonotonic() >= deadline, 'not before the deadline')
    t.same(await ask(port), { status: 503, body: 'standby\n' })

    // Delivered late: its deadline had already passed when it arrived.
    c.send({ type: 'tandem:lease', epoch: 3, deadline: hostMonotonic() - 1000 })
    t.same(await c.probe(), { type: 'probe', active: false, epoch: 3 })
    t.same(await ask(port), { status: 503, body: 'standby\n' })
    // A lease for another epoch does not concern it.
    c.send({ type: 'tandem:lease', epoch: 4, deadline: far() })
    t.same(await c.probe(), { type: 'probe', active: false, epoch: 3 })
    t.notOk(c.messages.some((m) => m.type === 'tandem:reactivated'))
    t.equal(c.output().match(/activated for epoch/g), null, 'no onActivate yet')
  },
)

t.test(
  'a later lease with a future deadline for the same epoch reactivates it and says so',
  async (t) => {
    const port = 25302
    const c = start(t, port, {
      TANDEM_ROLE: 'active',
      TANDEM_EPOCH: '5',
      TANDEM_DEADLINE: String(hostMonotonic() + 300),
    })
    await c.listening()
    await waitUntil('the deactivation', () => c.output().includes('deactivated: '))
    t.same(await ask(port), { status: 503, body: 'standby\n' })

    c.send({ type: 'tandem:lease', epoch: 5, deadline: far() })
    const back = await waitUntil('tandem:reactivated', () =>
      c.messages.find((m) => m.type === 'tandem:reactivated'),
    )
    t.equal(back.epoch, 5)
    t.type(back.lapsedMs, 'number')
    t.ok(back.lapsedMs! >= 0)
    await waitUntil('onActivate', () => c.output().includes('activated for epoch 5'))
    t.same(await ask(port), { status: 200, body: 'active 5\n' })
    // Once only: the next renewal is no reactivation.
    c.send({ type: 'tandem:lease', epoch: 5, deadline: far() })
    await c.probe()
    t.equal(c.messages.filter((m) => m.type === 'tandem:reactivated').length, 1)
  },
)

t.test(
  'a standby activates for the epoch and deadline of tandem:activate, not for a late one',
  async (t) => {
    const port = 25303
    const c = start(t, port, { TANDEM_ROLE: 'standby', TANDEM_EPOCH: '2' })
    await c.listening()
    t.same(await ask(port), { status: 503, body: 'standby\n' })

    c.send({ type: 'tandem:activate', epoch: 3, deadline: hostMonotonic() - 1 })
    t.same(await c.probe(), { type: 'probe', active: false, epoch: 3 })
    t.notOk(c.output().includes('activated for epoch'), 'no onActivate for a lapsed activation')

    c.send({ type: 'tandem:activate', epoch: 4, deadline: far() })
    await waitUntil('onActivate', () => c.output().includes('activated for epoch 4'))
    t.same(await ask(port), { status: 200, body: 'active 4\n' })
    // A message of an older epoch, delivered late, changes nothing.
    c.send({ type: 'tandem:activate', epoch: 3, deadline: hostMonotonic() - 1 })
    t.same(await c.probe(), { type: 'probe', active: true, epoch: 4 })
  },
)

t.test('says tandem:cooperative once, and only when the program opts in', async (t) => {
  const opted = start(t, 25304, { TANDEM_ROLE: 'active', TANDEM_EPOCH: '1', COOPERATIVE: '1' })
  await opted.listening()
  await opted.probe()
  t.same(
    opted.messages.filter((m) => m.type !== 'probe'),
    [{ type: 'tandem:cooperative' }],
  )
  // Leases are not acknowledged.
  opted.send({ type: 'tandem:lease', epoch: 1, deadline: far() })
  opted.send({ type: 'tandem:activate', epoch: 1, deadline: far() })
  await opted.probe()
  t.same(
    opted.messages.filter((m) => m.type !== 'probe'),
    [{ type: 'tandem:cooperative' }],
  )

  const silent = start(t, 25305, { TANDEM_ROLE: 'active', TANDEM_EPOCH: '1' })
  await silent.listening()
  silent.send({ type: 'tandem:lease', epoch: 1, deadline: far() })
  await silent.probe()
  t.same(silent.messages, [{ type: 'probe', active: true, epoch: 1 }])
})

t.test('without an IPC channel or a deadline it stays active', async (t) => {
  // Started by a node without ha: active in epoch 0, no deadline.
  const standalone = start(t, 25306, { TANDEM_ROLE: 'active', TANDEM_EPOCH: '0' })
  await standalone.listening()
  t.same(await ask(25306), { status: 200, body: 'active 0\n' })
  t.same(await standalone.probe(), { type: 'probe', active: true, epoch: 0 })

  // Run by hand: no TANDEM_* at all and no IPC channel.
  const byHand = start(t, 25307, {}, { ipc: false })
  await byHand.listening()
  t.same(await ask(25307), { status: 200, body: 'active 0\n' })
  t.match(byHand.output(), /listening as active/)
})
