// Ports 29100-29199 belong to this file (test files run in parallel).
// The HA events with two real supervisors on a shared dir: promoted, switchover, released on a
// handover, promoted on the other node, and a failover after kill -9, each once and in order;
// a hook on promoted runs on the node that takes over.
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import t, { type Test } from 'tap'
import { cluster, leader, nodeConfig, type Node } from '../helpers/ha-cluster.js'
import { accepting, cli, Supervisor, waitUntil } from '../helpers/supervisor.js'

interface Ev {
  seq: number
  node: string
  event: string
  epoch?: number
  id?: string
  why?: string
}

const events = async (config: string): Promise<Ev[]> => {
  const r = await cli(['events', '--json', '-c', config])
  if (r.code !== 0) throw new Error(`tandem events failed (${r.code}): ${r.err}`)
  return r.out
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Ev)
}

/** A node with a hook that appends each promoted event's JSON to `<its dir>/promoted.jsonl`. */
const hookedNode = (
  t: Test,
  shared: string,
  name: string,
  base: number,
): Node & { file: string } => {
  const config = nodeConfig(t, shared, name, base)
  const file = join(dirname(config), 'promoted.jsonl')
  const c = JSON.parse(readFileSync(config, 'utf8')) as Record<string, unknown>
  c.hooks = [
    {
      on: ['promoted'],
      command: [
        process.execPath,
        '-e',
        `require('fs').appendFileSync(${JSON.stringify(file)}, process.env.TANDEM_EVENT_JSON + '\\n')`,
      ],
    },
  ]
  writeFileSync(config, JSON.stringify(c))
  const sup = new Supervisor(config)
  t.teardown(() => sup.kill())
  return { name, config, sup, http: base, api: base + 2, file }
}

const hooked = (file: string): Ev[] =>
  existsSync(file)
    ? readFileSync(file, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Ev)
    : []

const roleEvents = (list: Ev[]) =>
  list
    .filter((e) => ['promoted', 'fenced', 'released', 'switchover'].includes(e.event))
    .map((e) => [e.event, e.epoch])

t.test(
  'a switchover and a failover: promoted, switchover, released, promoted again, each once and in order',
  async (t) => {
    const shared = await cluster(t)
    const a = hookedNode(t, shared, 'a', 29100)
    await a.sup.waitLog('a promoted', (r) => r.event === 'promoted')
    await waitUntil('a on /leader answers 200', async () => (await leader(a)) === 200)
    const b = hookedNode(t, shared, 'b', 29110)
    await b.sup.waitLog('b web ready', (r) => r.event === 'ready' && r.component === 'web')
    await waitUntil('b on /leader answers 503', async () => (await leader(b)) === 503)

    const r = await cli(['switchover', '-c', a.config])
    t.equal(r.code, 0, r.err)
    await waitUntil('b api up', () => accepting(b.api))
    // Then a failover back: b is killed, a takes over after takeoverMs.
    b.sup.proc.kill('SIGKILL')
    await waitUntil('a on /leader answers 200 again', async () => (await leader(a)) === 200)

    const onA = await events(a.config)
    t.same(roleEvents(onA), [
      ['promoted', 1],
      ['switchover', 1],
      ['released', 1],
      ['promoted', 3],
    ])
    t.match(
      onA.find((e) => e.event === 'released'),
      { node: 'a', why: /released/ },
    )
    t.match(onA.at(-1) && onA.filter((e) => e.event === 'promoted')[1], {
      why: /heartbeat of epoch 2 unchanged/,
    })
    // api#0 ran on a, stopped at the handover (not an operator's stop: no event), ran again.
    t.same(
      onA.filter((e) => e.id === 'api#0').map((e) => e.event),
      ['spawned', 'ready', 'spawned', 'ready'],
    )
    t.same(
      onA.map((e) => e.seq),
      onA.map((_, i) => i + 1),
    )
    const hookOnA = await waitUntil('the hook ran for both promotions on a', () => {
      const l = hooked(a.file)
      return l.length === 2 && l
    })
    t.same(
      hookOnA.map((e) => [e.event, e.epoch, e.node]),
      [
        ['promoted', 1, 'a'],
        ['promoted', 3, 'a'],
      ],
    )
    t.same(
      hooked(b.file).map((e) => [e.event, e.epoch, e.node]),
      [['promoted', 2, 'b']],
      "b's hook ran for its promotion",
    )
  },
)
