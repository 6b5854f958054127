// The partition proxy itself: it forwards; cut('refuse') resets open connections and refuses
// new ones; cut('blackhole') answers nothing on old or new connections; heal() forwards again.
// Ports 26590-26592.
import { connect, createServer, type Socket } from 'node:net'
import t, { type Test } from 'tap'
import { TcpProxy } from './tcp-proxy.js'
import { waitUntil } from './supervisor.js'

/** An echo server on `port`, closed at teardown. */
const echo = async (t: Test, port: number) => {
  const sockets = new Set<Socket>()
  const server = createServer((s) => {
    sockets.add(s)
    s.on('error', () => undefined)
    s.on('close', () => sockets.delete(s))
    s.pipe(s)
  })
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r))
  t.teardown(
    () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy()
        server.close(() => r())
      }),
  )
}

/** A connection to `port`, or the error code connecting gave. */
const open = (port: number): Promise<Socket | string> =>
  new Promise((resolve) => {
    const s = connect(port, '127.0.0.1')
    s.once('connect', () => resolve(s))
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'))
  })

/** Writes `text` on `s`: what came back within `ms`, or the error code, or '' for nothing. */
const roundTrip = (s: Socket, text: string, ms = 500): Promise<string> =>
  new Promise((resolve) => {
    let got = ''
    const done = (v: string) => {
      clearTimeout(timer)
      s.off('data', onData)
      resolve(v)
    }
    const onData = (d: Buffer) => {
      got += d.toString()
      if (got === text) done(got)
    }
    // Nothing within `ms` is the answer a black hole gives: this wait is the observation.
    const timer = setTimeout(() => done(got), ms)
    s.on('data', onData)
    s.once('error', (err: NodeJS.ErrnoException) => done(err.code ?? 'error'))
    s.once('close', () => done(got || 'closed'))
    s.write(text)
  })

t.test('forwards, refuses, black-holes and heals', async (t) => {
  await echo(t, 26590)
  const proxy = await TcpProxy.start(t, 26591, { host: '127.0.0.1', port: 26590 })
  const s1 = await open(26591)
  if (typeof s1 === 'string') return t.fail(`connect: ${s1}`)
  t.teardown(() => s1.destroy())
  t.equal(await roundTrip(s1, 'one'), 'one', 'forwarded')

  await proxy.cut('refuse')
  t.match(await roundTrip(s1, 'two'), /ECONNRESET|closed/, 'an open connection is reset')
  t.equal(await open(26591), 'ECONNREFUSED', 'a new one is refused')

  await proxy.heal()
  const s2 = await open(26591)
  if (typeof s2 === 'string') return t.fail(`connect after heal: ${s2}`)
  t.teardown(() => s2.destroy())
  t.equal(await roundTrip(s2, 'three'), 'three', 'forwarded again')

  await proxy.cut('blackhole')
  t.equal(await roundTrip(s2, 'four'), '', 'an open connection gets no answer')
  const s3 = await open(26591)
  if (typeof s3 === 'string') return t.fail(`connect in the black hole: ${s3}`)
  t.teardown(() => s3.destroy())
  t.equal(await roundTrip(s3, 'five'), '', 'a new one is accepted and gets no answer')

  await proxy.heal()
  await waitUntil(
    'connections cut by the black hole closed at the heal',
    () => s2.closed || s2.readableEnded,
  )
  const s4 = await open(26591)
  if (typeof s4 === 'string') return t.fail(`connect after the second heal: ${s4}`)
  t.teardown(() => s4.destroy())
  t.equal(await roundTrip(s4, 'six'), 'six', 'forwarded after the black hole')
})

t.test('an upstream that is down: the connection is closed, as a refusal would be', async (t) => {
  const proxy = await TcpProxy.start(t, 26592, { host: '127.0.0.1', port: 26590 })
  const s = await open(proxy.port)
  if (typeof s === 'string') return t.pass(`refused at once: ${s}`)
  t.teardown(() => s.destroy())
  t.match(await roundTrip(s, 'x'), /closed|ECONNRESET/)
})
