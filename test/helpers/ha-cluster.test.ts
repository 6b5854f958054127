// The /leader sampler itself: it must see two actives when there are two, and none when terms
// follow each other. Stand-in servers answer as supervisors do (epoch in the body, the decision
// instant in x-tandem-at). Ports 25350-25351.
import { createServer, type Server } from 'node:http'
import t, { type Test } from 'tap'
import { sampleLeaders, type Node } from './ha-cluster.js'
import { waitUntil } from './supervisor.js'

const hostNow = () => Number(process.hrtime.bigint()) / 1e6

/** A stand-in /leader: 200 with `epoch()` while it returns a number, else 503. */
const standIn = async (t: Test, port: number, epoch: () => number | undefined) => {
  const server: Server = createServer((_req, res) => {
    const e = epoch()
    if (e === undefined) {
      res.writeHead(503).end('{"leader":false}')
      return
    }
    res.writeHead(200, { 'x-tandem-at': hostNow().toFixed(3) }).end(JSON.stringify({ epoch: e }))
  })
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r))
  t.teardown(() => new Promise<void>((r) => server.close(() => r())))
  return { name: String(port), http: port } as unknown as Node
}

t.test('two nodes answering 200 at once, in two epochs: overlaps found', async (t) => {
  const a = await standIn(t, 25350, () => 1)
  const b = await standIn(t, 25351, () => 2)
  const s = sampleLeaders([a, b])
  await waitUntil('a few answers', () => s.asked() >= 20)
  const { overlaps } = await s.stop()
  t.ok(overlaps.length > 0, `${overlaps.length} overlaps`)
})

t.test('a term, then the next: no overlap', async (t) => {
  let bStarted = false
  const a = await standIn(t, 25350, () => (bStarted ? undefined : 1))
  const b = await standIn(t, 25351, () => (bStarted ? 2 : undefined))
  const s = sampleLeaders([a, b])
  await waitUntil('a few answers', () => s.asked() >= 10)
  bStarted = true
  await waitUntil('more answers', () => s.asked() >= 30)
  const { overlaps, answers } = await s.stop()
  t.same(overlaps, [])
  t.ok(
    answers.some((x) => x.code === 200 && x.node === '25351'),
    'b answered 200',
  )
})
