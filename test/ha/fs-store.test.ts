// The lease's files in a real directory: claims by mkdir (lost replies, races between
// processes), lookups of new claims by name, owners and heartbeats as written and closed.
import { spawn } from 'node:child_process'
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { FsLeaseStore } from '../../src/ha/fs-store.js'
import { ROOT, tempDir } from '../helpers/supervisor.js'

const owner = (node: string) => ({ node, pid: 1, nonce: `nonce-${node}` })

t.test('claims, owners and heartbeats', async (t) => {
  const dir = tempDir(t)
  const store = new FsLeaseStore(dir)
  await store.init()
  t.equal(await store.highestClaim(), 0)
  t.equal(await store.claim(1, owner('a')), 'won')
  t.equal(await store.claim(1, owner('b')), 'lost', 'an existing claim is lost to others')
  t.equal(await store.claim(1, owner('a')), 'won', 'our own, after a lost reply: won')
  t.same(await store.readOwner(1), owner('a'))
  // Other nodes claim 2 and 3: found by name, without a new listing.
  mkdirSync(join(dir, 'claims', '2'))
  mkdirSync(join(dir, 'claims', '3'))
  t.equal(await store.highestClaim(), 3)
  t.equal(await store.readOwner(2), undefined, 'a claim without owner')
  writeFileSync(join(dir, 'claims', '3', 'owner'), 'garbage')
  t.equal(await store.readOwner(3), undefined, 'an owner file that is not one')
  t.equal(await store.readHeartbeat(3), undefined)
  const hb = { epoch: 3, seq: 7, state: 'active' as const, node: 'a', cfgHash: 'h' }
  await store.writeHeartbeat(hb)
  t.same(JSON.parse((await store.readHeartbeat(3))!), hb)
  await store.writeHeartbeat({ ...hb, seq: 8 })
  t.match(await store.readHeartbeat(3), /"seq":8/, 'rewritten in place')
  t.same(readdirSync(join(dir, 'hb')), ['3'], 'no temp files left')
  const fresh = new FsLeaseStore(dir)
  t.equal(await fresh.highestClaim(), 3, 'a new node finds the highest by listing once')
  t.same(readdirSync(join(dir, 'claims')).sort(), ['1', '2', '3'], 'nothing ever removed')
})

t.test('a missing shared dir is an error naming it', async (t) => {
  const store = new FsLeaseStore(join(tempDir(t), 'not-there'))
  await t.rejects(store.highestClaim(), { code: 'ENOENT', message: /not-there/ })
})

t.test('three processes racing for 30 epochs: exactly one winner each', async (t) => {
  const dir = tempDir(t)
  await new FsLeaseStore(dir).init()
  const racer = (name: string) =>
    new Promise<string[]>((resolve, reject) => {
      const code = `
        const { FsLeaseStore } = await import(${JSON.stringify(join(ROOT, 'dist/ha/fs-store.js'))})
        const store = new FsLeaseStore(${JSON.stringify(dir)})
        const won = []
        for (let e = 1; e <= 30; e++) {
          if ((await store.claim(e, { node: '${name}', pid: process.pid, nonce: '${name}' })) === 'won') won.push(e)
        }
        console.log(JSON.stringify(won))`
      const p = spawn(process.execPath, ['--input-type=module', '-e', code], {
        stdio: ['ignore', 'pipe', 'inherit'],
      })
      let out = ''
      p.stdout.on('data', (d: Buffer) => (out += d.toString()))
      p.once('close', (c) =>
        c === 0 ? resolve(JSON.parse(out) as string[]) : reject(new Error(`exit ${c}`)),
      )
    })
  const results = await Promise.all(['a', 'b', 'c'].map(racer))
  const all = results
    .flat()
    .map(Number)
    .sort((x, y) => x - y)
  t.same(
    all,
    Array.from({ length: 30 }, (_, i) => i + 1),
    'each epoch won exactly once',
  )
})
