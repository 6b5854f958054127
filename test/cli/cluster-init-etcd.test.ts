// `tandem cluster init` on an etcd backend (issue 12): creates `<prefix>/config` and
// `<prefix>/epoch` once, is harmless run again, refuses other values (78) naming both, names the
// endpoint it cannot reach (1); `tandem start` never creates a cluster in etcd: on a prefix never
// initialized it refuses and starts nothing. With ha.backend external there is nothing to
// create (2). Real processes through bin/tandem.js and a real 1-member etcd (test/helpers/etcd.ts).
// Ports 26690-26699 belong to this file; nothing listens on them (26690 is the unreachable etcd,
// 26691 the web component's port in configs that never start it).
import { existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { b64, unb64 } from '../../src/ha/etcd-client.js'
import { padEpoch } from '../../src/ha/etcd-store.js'
import { EtcdCluster, needEtcd } from '../helpers/etcd.js'
import { accepting, cli, fixture, tempDir } from '../helpers/supervisor.js'

const TIMINGS = { renewMs: 250, selfFenceMs: 1000, takeoverMs: 2000, pollMs: 100 }
const NOBODY = 'http://127.0.0.1:26690'

const etcd = needEtcd(t) ? await EtcdCluster.start(t, 1) : undefined

let prefixes = 0
/** A prefix no other test of this file uses. */
const newPrefix = () => `/tandem/init-${process.pid}-${++prefixes}`

/** A config in a fresh dir whose ha.backend is etcd (`backend` merged in); nothing created. */
const setup = (t: Test, backend: Record<string, unknown>, extra: Record<string, unknown> = {}) => {
  const dir = tempDir(t)
  const config = join(dir, 'tandem.json')
  const write = (ha: Record<string, unknown> = {}, b: Record<string, unknown> = backend) =>
    writeFileSync(
      config,
      JSON.stringify({
        stateDir: 'state',
        ha: { name: 'c1', backend: { type: 'etcd', ...b }, ...ha },
        components: { web: fixture({ port: 26691 }) },
        ...extra,
      }),
    )
  write()
  return { dir, config, write }
}

const init = (config: string, ...args: string[]) => cli(['cluster', 'init', '-c', config, ...args])

/** A key as etcd holds it: its value and revisions, or undefined. */
const key = async (etcd: EtcdCluster, k: string) => {
  const r = (await etcd.call(0, '/v3/kv/range', { key: b64(k) })) as {
    kvs?: { value?: string; create_revision: string; mod_revision: string }[]
  }
  const kv = r.kvs?.[0]
  return kv && { value: unb64(kv.value ?? ''), mod: kv.mod_revision }
}

/** Every key under `prefix`/ (to check that nothing was written). */
const keysUnder = async (etcd: EtcdCluster, prefix: string) => {
  const start = Buffer.from(prefix + '/')
  const end = Buffer.from(start)
  end[end.length - 1] = end[end.length - 1]! + 1
  const r = (await etcd.call(0, '/v3/kv/range', {
    key: start.toString('base64'),
    range_end: end.toString('base64'),
    keys_only: true,
  })) as { kvs?: { key: string }[] }
  return (r.kvs ?? []).map((kv) => unb64(kv.key)).sort()
}

t.test('init puts <prefix>/config with the name and timings and <prefix>/epoch 0', async (t) => {
  if (!etcd) return
  const prefix = newPrefix()
  const s = setup(t, { endpoints: etcd.endpoints, prefix })
  const r = await init(s.config)
  t.equal(r.code, 0, r.err)
  t.match(
    r.out,
    `initialized cluster "c1" in etcd ${prefix} (${etcd.endpoints[0]}) (${prefix}/config: renewMs 250, selfFenceMs 1000, takeoverMs 2000, pollMs 100); start its nodes with \`tandem start\``,
  )
  t.same(JSON.parse((await key(etcd, `${prefix}/config`))!.value), { name: 'c1', ...TIMINGS })
  t.equal((await key(etcd, `${prefix}/epoch`))!.value, padEpoch(0), 'epoch record 0')
  t.same(await keysUnder(etcd, prefix), [`${prefix}/config`, `${prefix}/epoch`], 'nothing else')
})

t.test('init --json says what it created', async (t) => {
  if (!etcd) return
  const prefix = newPrefix()
  const s = setup(t, { endpoints: etcd.endpoints, prefix })
  const r = await init(s.config, '--json')
  t.equal(r.code, 0, r.err)
  t.same(JSON.parse(r.out), {
    cluster: 'c1',
    etcd: etcd.endpoints,
    prefix,
    file: `${prefix}/config`,
    created: true,
    config: { name: 'c1', ...TIMINGS },
  })
})

t.test('the prefix defaults to /tandem/<ha.name>', async (t) => {
  if (!etcd) return
  const name = `d${process.pid}`
  const s = setup(t, { endpoints: etcd.endpoints })
  s.write({ name })
  const r = await init(s.config, '--json')
  t.equal(r.code, 0, r.err)
  t.match(JSON.parse(r.out), { prefix: `/tandem/${name}`, file: `/tandem/${name}/config` })
  t.ok(await key(etcd, `/tandem/${name}/config`), 'the config key is there')
})

t.test('init again with the same values changes nothing and exits 0', async (t) => {
  if (!etcd) return
  const prefix = newPrefix()
  const s = setup(t, { endpoints: etcd.endpoints, prefix })
  s.write({ takeoverMs: 3000 })
  t.equal((await init(s.config)).code, 0)
  const before = [await key(etcd, `${prefix}/config`), await key(etcd, `${prefix}/epoch`)]
  const r = await init(s.config)
  t.equal(r.code, 0, r.err)
  t.match(
    r.out,
    `cluster "c1" is already initialized in etcd ${prefix} (${etcd.endpoints[0]}) with the same values (${prefix}/config: renewMs 250, selfFenceMs 1000, takeoverMs 3000, pollMs 100); nothing changed`,
  )
  const json = await init(s.config, '--json')
  t.equal(json.code, 0, json.err)
  t.same(JSON.parse(json.out), {
    cluster: 'c1',
    etcd: etcd.endpoints,
    prefix,
    file: `${prefix}/config`,
    created: false,
    config: { name: 'c1', ...TIMINGS, takeoverMs: 3000 },
  })
  t.same(
    [await key(etcd, `${prefix}/config`), await key(etcd, `${prefix}/epoch`)],
    before,
    'neither key rewritten (same mod revisions)',
  )
})

t.test('init with other timings or another name refuses (78) naming both values', async (t) => {
  if (!etcd) return
  const prefix = newPrefix()
  const s = setup(t, { endpoints: etcd.endpoints, prefix })
  t.equal((await init(s.config)).code, 0)
  const before = await key(etcd, `${prefix}/config`)
  s.write({ takeoverMs: 3000, pollMs: 200 })
  const timings = await init(s.config)
  t.equal(timings.code, 78, timings.err)
  t.match(
    timings.err,
    `${prefix}/config has takeoverMs 2000, pollMs 100, and this config has takeoverMs 3000, pollMs 200`,
  )
  s.write({ name: 'c2', selfFenceMs: 900 })
  const name = await init(s.config)
  t.equal(name.code, 78, name.err)
  t.match(
    name.err,
    `${prefix}/config has name "c1", selfFenceMs 1000, and this config has name "c2", selfFenceMs 900`,
  )
  t.match(name.err, 'another prefix for another cluster')
  t.same(await key(etcd, `${prefix}/config`), before, 'the config key never rewritten')
})

t.test('init refuses an epoch record without its config (keys deleted by hand)', async (t) => {
  if (!etcd) return
  const prefix = newPrefix()
  await etcd.call(0, '/v3/kv/put', { key: b64(`${prefix}/epoch`), value: b64(padEpoch(7)) })
  const s = setup(t, { endpoints: etcd.endpoints, prefix })
  const r = await init(s.config)
  t.equal(r.code, 1, r.err)
  t.match(r.err, `${prefix}/epoch exists but ${prefix}/config does not`)
  t.equal((await key(etcd, `${prefix}/epoch`))!.value, padEpoch(7), 'the epoch left as it was')
  t.notOk(await key(etcd, `${prefix}/config`), 'no config created')
})

t.test('init with etcd unreachable exits 1 naming the endpoint', async (t) => {
  t.notOk(await accepting(26690), 'nothing listens on 26690')
  const s = setup(t, { endpoints: [NOBODY], prefix: '/tandem/nowhere' })
  const r = await init(s.config)
  t.equal(r.code, 1, r.err)
  t.match(r.err, NOBODY)
  t.notMatch(r.err, /at .*\.js:\d+/, 'an error message, not a stack trace')
})

t.test(
  'start on a prefix never initialized refuses (1) telling to run cluster init, starts no child and creates nothing',
  async (t) => {
    if (!etcd) return
    const prefix = newPrefix()
    const marker = join(tempDir(t), 'started')
    const s = setup(
      t,
      { endpoints: etcd.endpoints, prefix },
      { components: { web: fixture({ port: 26691 }, { COUNT_FILE: marker }) } },
    )
    const r = await cli(['start', '-c', s.config])
    t.equal(r.code, 1, r.err)
    t.match(
      r.err,
      `etcd (${etcd.endpoints[0]}) has no ${prefix}/config: the cluster was never initialized at prefix ${prefix}, or these endpoints are another etcd; run \`tandem cluster init -c <file>\` once, on one node`,
    )
    t.notOk(existsSync(marker), 'no child started')
    t.same(await keysUnder(etcd, prefix), [], 'nothing created in etcd')
    // What the message says to do works on the same config.
    t.equal((await init(s.config)).code, 0)
    t.same(await keysUnder(etcd, prefix), [`${prefix}/config`, `${prefix}/epoch`])
  },
)

t.test('init with ha.backend external exits 2 saying why', async (t) => {
  const dir = tempDir(t)
  const config = join(dir, 'tandem.json')
  writeFileSync(
    config,
    JSON.stringify({
      stateDir: 'state',
      ha: { name: 'c1', backend: { type: 'external' } },
      components: { web: fixture({ port: 26691 }) },
    }),
  )
  const r = await init(config)
  t.equal(r.code, 2, r.err)
  t.match(
    r.err,
    `cluster init is for a shared dir or etcd: with ha.backend {"type": "external"} (${config}) the cluster manager (Pacemaker) holds the cluster; there is nothing to create`,
  )
  t.equal(r.out, '')
})
