// The lease's files in a real directory: claims renamed in with their owner (lost replies, races
// between processes), the epoch file, heartbeats rewritten in place at a fixed width.
import { spawn } from 'node:child_process'
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { FsLeaseStore } from '../../src/ha/fs-store.js'
import { localSharedFs, type SharedFs } from '../../src/ha/shared-fs.js'
import { ROOT, tempDir } from '../helpers/supervisor.js'

const owner = (node: string) => ({ node, pid: 1, nonce: `nonce-${node}` })

t.test('claims, owners, the epoch file and heartbeats', async (t) => {
  const dir = tempDir(t)
  const store = new FsLeaseStore(localSharedFs(dir))
  await store.init()
  t.equal(await store.highestClaim(), 0)
  t.equal(await store.readEpoch(), 0, 'no epoch file yet: 0')
  t.equal(await store.claim(1, owner('a')), 'won')
  t.equal(await store.claim(1, owner('b')), 'lost', 'an existing claim is lost to others')
  t.same(await store.readOwner(1), owner('a'), 'the owner came in with the claim')
  await store.publishEpoch(1)
  t.equal(await store.readEpoch(), 1)
  t.equal(readFileSync(join(dir, 'epoch'), 'utf8').length, 20, 'a fixed width')
  // Another node claimed 2 and 3 without publishing (it died): found by name, upwards.
  mkdirSync(join(dir, 'claims', '2'))
  mkdirSync(join(dir, 'claims', '3'))
  t.equal(await store.highestClaim(), 3)
  t.equal(await store.readOwner(2), undefined, 'a claim without owner (an older version)')
  writeFileSync(join(dir, 'claims', '3', 'owner'), 'garbage')
  t.equal(await store.readOwner(3), undefined, 'an owner file that is not one')
  t.equal(await store.readHeartbeat(3), undefined)
  const hb = { epoch: 3, seq: 7, state: 'active' as const, node: 'a', cfgHash: 'h' }
  await store.writeHeartbeat(hb)
  t.same(JSON.parse((await store.readHeartbeat(3))!), hb)
  await store.writeHeartbeat({ ...hb, seq: 8, state: 'released' })
  await store.writeHeartbeat({ ...hb, seq: 9 }) // shorter than released: no tail of it is left
  t.same(JSON.parse((await store.readHeartbeat(3))!), { ...hb, seq: 9 }, 'rewritten in place')
  t.equal((await store.readHeartbeat(3))!.length, 256, 'at a fixed width, never truncated')
  t.same(readdirSync(join(dir, 'hb')), ['3'], 'no temp files left')
  const fresh = new FsLeaseStore(localSharedFs(dir))
  t.equal(await fresh.highestClaim(), 3, 'a new node: the epoch file, then names upwards')
  t.same(readdirSync(join(dir, 'claims')).sort(), ['1', '2', '3'], 'nothing ever removed')
  writeFileSync(join(dir, 'epoch'), 'twelve')
  await t.rejects(fresh.readEpoch(), { code: 'EBADEPOCH', message: /epoch should hold .*"twelve"/ })
})

t.test('cannotClaim: config.json missing (an unmounted share) or not a config', async (t) => {
  const dir = tempDir(t)
  const store = new FsLeaseStore(localSharedFs(dir))
  t.match(await store.cannotClaim(), /config\.json is missing: the shared storage is not mounted/)
  writeFileSync(join(dir, 'config.json'), '[1')
  t.match(await store.cannotClaim(), /is not the cluster's configuration \("\[1"\)/)
  writeFileSync(join(dir, 'config.json'), '{"name":"c"}')
  t.equal(await store.cannotClaim(), undefined)
})

/** A SharedFs whose renames are done and then answered with `code` (a reply lost, retransmitted). */
const lostRenameReply = (fs: SharedFs, code: string): SharedFs =>
  Object.assign(Object.create(fs) as SharedFs, {
    rename: async (from: string, to: string) => {
      await fs.rename(from, to)
      throw Object.assign(new Error(`rename ${from} -> ${to}: ${code}`), { code })
    },
  })

t.test('a rename whose reply was lost is resolved by the owner inside: won', async (t) => {
  for (const code of ['EEXIST', 'ENOENT', 'ENOTEMPTY']) {
    const dir = tempDir(t)
    const store = new FsLeaseStore(lostRenameReply(localSharedFs(dir), code))
    await store.init()
    t.equal(await store.claim(1, owner('a')), 'won', `${code} after the rename was done`)
    t.equal(await store.highestClaim(), 1)
  }
  const dir = tempDir(t)
  const fs = localSharedFs(dir)
  await new FsLeaseStore(fs).init()
  t.equal(await new FsLeaseStore(fs).claim(1, owner('b')), 'won')
  const late = new FsLeaseStore(lostRenameReply(fs, 'EEXIST'))
  t.equal(await late.claim(1, owner('a')), 'lost', 'an EEXIST over another owner: lost')
  const failing: SharedFs = Object.assign(Object.create(fs) as SharedFs, {
    rename: () => Promise.reject(Object.assign(new Error('rename: EIO'), { code: 'EIO' })),
  })
  await t.rejects(
    new FsLeaseStore(failing).claim(2, owner('a')),
    { code: 'EIO' },
    'not done: thrown',
  )
})

t.test(
  'a shared dir that vanished (unmounted) reads as no claim, and forbids claiming',
  async (t) => {
    const store = new FsLeaseStore(localSharedFs(join(tempDir(t), 'not-there')))
    t.equal(await store.highestClaim(), 0)
    t.match(await store.cannotClaim(), /not-there\/config\.json is missing/)
    await t.rejects(store.claim(1, owner('a')), { code: 'ENOENT', message: /not-there/ })
  },
)

t.test('three processes racing for 30 epochs: exactly one winner each', async (t) => {
  const dir = tempDir(t)
  await new FsLeaseStore(localSharedFs(dir)).init()
  const racer = (name: string) =>
    new Promise<string[]>((resolve, reject) => {
      const code = `
        const { FsLeaseStore } = await import(${JSON.stringify(join(ROOT, 'dist/ha/fs-store.js'))})
        const { localSharedFs } = await import(${JSON.stringify(join(ROOT, 'dist/ha/shared-fs.js'))})
        const store = new FsLeaseStore(localSharedFs(${JSON.stringify(dir)}))
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
