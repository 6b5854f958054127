// `tandem switchover` against a supervisor whose reply does not say how to follow the handover
// (one started by an earlier version): the CLI then takes the shared dir and timings from the
// config. The supervisor is a stand-in HTTP server on the control socket: what is tested is
// the command's side. No TCP ports.
import { mkdirSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { cli, fixture, tempDir } from '../helpers/supervisor.js'

/**
 * A node `a` whose shared dir shows epoch 2 claimed by `owner` (published in `epoch`), and a
 * stand-in supervisor on its control socket that answers a switchover as one started before
 * the reply said how to follow it. Resolves with the config and the requests it was asked.
 */
const standIn = async (t: Test, owner: string, port: number) => {
  const dir = tempDir(t)
  const shared = join(dir, 'shared')
  mkdirSync(join(shared, 'claims', '2'), { recursive: true })
  writeFileSync(
    join(shared, 'claims', '2', 'owner'),
    JSON.stringify({ node: owner, pid: 1, nonce: 'x' }) + '\n',
  )
  // The winner of epoch 2 published it: the CLI learns of it there, as the nodes do.
  writeFileSync(join(shared, 'epoch'), '2'.padEnd(19) + '\n')
  mkdirSync(join(dir, 'state'), { mode: 0o700 })
  const config = join(dir, 'tandem.json')
  writeFileSync(
    config,
    JSON.stringify({
      node: 'a',
      stateDir: 'state',
      ha: { name: 'c1', sharedDir: 'shared' },
      components: { web: fixture({ port }) },
    }),
  )
  const asked: string[] = []
  const server = createServer((req, res) => {
    asked.push(`${req.method} ${req.url}`)
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ released: 1, node: 'a', cluster: 'c1' }))
  })
  await new Promise<void>((r) => server.listen(join(dir, 'state', 'tandem.sock'), r))
  t.teardown(() => server.close())
  return { config, asked }
}

t.test(
  'switchover follows the handover with the config when the reply does not say how',
  async (t) => {
    const { config, asked } = await standIn(t, 'b', 24999)
    // The cluster as an operator makes it, once, before its first node starts.
    const init = await cli(['cluster', 'init', '-c', config])
    t.equal(init.code, 0, init.err)
    const r = await cli(['switchover', '-c', config])
    t.equal(r.code, 0, r.err)
    t.same(asked, ['POST /switchover'])
    t.match(r.out, /node a released epoch 1 of cluster c1\nnode b is active \(epoch 2\)/)
    const json = await cli(['switchover', '--json', '-c', config])
    t.same(JSON.parse(json.out), {
      released: 1,
      node: 'a',
      cluster: 'c1',
      next: { node: 'b', epoch: 2 },
    })
  },
)

t.test('switchover fails, saying so, when the releasing node took the role back', async (t) => {
  // Nobody else claimed: after takeoverMs the node that released claimed epoch 2 itself.
  const { config } = await standIn(t, 'a', 24998)
  const r = await cli(['switchover', '-c', config])
  t.equal(r.code, 1)
  t.match(r.err, /no standby took over: node a took the role back \(epoch 2\)/)
})
