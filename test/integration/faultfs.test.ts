// test/fixtures/faultfs.py, the fault-injecting view of a shared directory the HA tests give each
// simulated host: each effect shown with real file operations from Node through a real mount.
// No ports. Hung operations each hold one of libuv's 4 threads: never more than 2 at once here.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import * as fs from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { alive, tempDir, waitUntil } from '../helpers/supervisor.js'
import {
  mountFaultFs,
  mountpoints,
  needFaultFs,
  type FaultRule,
  type FaultView,
} from '../helpers/faultfs.js'

/** A promise's state, readable at once: whether the call has returned yet. */
const track = <T>(p: Promise<T>) => {
  const s: { settled: boolean; result: Promise<T> } = { settled: false, result: p }
  p.then(
    () => (s.settled = true),
    () => (s.settled = true),
  )
  return s
}

/** Waits until `view` holds `n` operations (hang, delay, lateReply). */
const held = (view: FaultView, n = 1) =>
  waitUntil(`${n} operation(s) held by the view`, async () => (await view.stats()).held >= n)

if (needFaultFs(t)) {
  t.test('passes every operation the supervisor uses through to the backing dir', async (t) => {
    const backing = tempDir(t)
    const v = await mountFaultFs(t, backing, 'pass')
    const at = (p: string) => join(v.dir, p)
    const back = (p: string) => join(backing, p)

    await fs.writeFile(at('f'), 'one')
    t.equal(readFileSync(back('f'), 'utf8'), 'one', 'create + write')
    await fs.appendFile(at('f'), ' two')
    t.equal(await fs.readFile(at('f'), 'utf8'), 'one two', 'open + read')
    await fs.truncate(at('f'), 3)
    t.equal(readFileSync(back('f'), 'utf8'), 'one', 'truncate')
    const fh = await fs.open(at('f'), 'r+')
    await fh.write('ONE', 0)
    await fh.sync()
    await fh.truncate(2)
    t.equal((await fh.stat()).size, 2, 'fstat')
    await fh.close()
    t.equal(readFileSync(back('f'), 'utf8'), 'ON', 'write, fsync, ftruncate through a handle')
    await t.rejects(fs.open(at('f'), 'wx'), { code: 'EEXIST' }, 'exclusive create of an existing')
    await (await fs.open(at('g'), 'wx')).close()
    t.ok(existsSync(back('g')), 'exclusive create')

    await fs.mkdir(at('d/e'), { recursive: true })
    t.ok(existsSync(back('d/e')), 'mkdir')
    t.same((await fs.readdir(at('.'))).sort(), ['d', 'f', 'g'], 'readdir')
    await fs.rename(at('f'), at('d/f'))
    t.equal(readFileSync(back('d/f'), 'utf8'), 'ON', 'rename a file')
    await fs.rename(at('d/e'), at('e'))
    t.ok(existsSync(back('e')) && !existsSync(back('d/e')), 'rename a directory')
    mkdirSync(back('empty'))
    await fs.rename(at('e'), at('empty'))
    t.ok(existsSync(back('empty')) && !existsSync(back('e')), 'rename onto an empty directory')
    await t.rejects(
      fs.rename(at('empty'), at('d')),
      { code: /^(ENOTEMPTY|EEXIST)$/ },
      'rename of a directory onto a non-empty one fails, as on the backing fs',
    )
    t.ok(existsSync(back('empty')) && existsSync(back('d/f')), 'both directories left as they were')

    await fs.chmod(at('g'), 0o600)
    t.equal((await fs.stat(at('g'))).mode & 0o777, 0o600, 'chmod')
    const when = new Date('2001-02-03T04:05:06.789Z')
    await fs.utimes(at('g'), when, when)
    t.equal((await fs.stat(back('g'))).mtimeMs, when.getTime(), 'utimens')
    t.equal((await fs.stat(at('g'))).mtimeMs, when.getTime(), 'getattr shows it')
    t.ok((await fs.statfs(v.dir)).blocks > 0, 'statfs')
    await fs.access(at('g'), fs.constants.R_OK | fs.constants.W_OK)
    await fs.unlink(at('g'))
    t.notOk(existsSync(back('g')), 'unlink')
    await fs.rmdir(at('empty'))
    t.notOk(existsSync(back('empty')), 'rmdir')
    await t.rejects(fs.stat(at('nothing')), { code: 'ENOENT' })

    const s = await v.stats()
    for (const op of ['getattr', 'create', 'open', 'read', 'write', 'rename', 'statfs'] as const)
      t.ok((s.ops[op] ?? 0) > 0, `${op} counted`)
    t.same(s.faults, {})
  })

  t.test('two views of one backing dir see each other at once', async (t) => {
    const backing = tempDir(t)
    const a = await mountFaultFs(t, backing, 'a')
    const b = await mountFaultFs(t, backing, 'b')
    await fs.writeFile(join(a.dir, 'x'), 'from a')
    t.equal(await fs.readFile(join(b.dir, 'x'), 'utf8'), 'from a')
    await fs.writeFile(join(b.dir, 'x'), 'from b, longer')
    t.equal(await fs.readFile(join(a.dir, 'x'), 'utf8'), 'from b, longer')
    await fs.mkdir(join(b.dir, 'claims'))
    t.same(await fs.readdir(a.dir), ['claims', 'x'])
  })

  t.test('delay holds an operation before doing it', async (t) => {
    const backing = tempDir(t)
    mkdirSync(join(backing, 'claims'))
    const v = await mountFaultFs(t, backing, 'delay')
    await v.add({ id: 'slow', ops: ['mkdir'], path: 'claims/*', delay: 120_000 })
    const made = track(fs.mkdir(join(v.dir, 'claims/1')))
    await held(v)
    t.notOk(existsSync(join(backing, 'claims/1')), 'not done while delayed')
    t.notOk(made.settled)
    await v.clear('slow')
    await made.result
    t.ok(existsSync(join(backing, 'claims/1')), 'done once the rule is cleared')

    // A short delay ends by itself.
    await v.add({ id: 'short', ops: ['getattr'], path: 'claims/1', delay: 200 })
    t.ok((await fs.stat(join(v.dir, 'claims/1'))).isDirectory())
    t.ok((await v.stats()).faults.short! >= 1)
  })

  t.test('lateReply does the operation at once and answers late', async (t) => {
    const backing = tempDir(t)
    const v = await mountFaultFs(t, backing, 'late')
    await v.add({ id: 'w', ops: ['write'], path: 'hb', lateReply: 120_000 })
    const wrote = track(fs.writeFile(join(v.dir, 'hb'), 'beat 1'))
    await waitUntil('the write in the backing dir', () => {
      try {
        return readFileSync(join(backing, 'hb'), 'utf8') === 'beat 1'
      } catch {
        return false
      }
    })
    t.notOk(wrote.settled, 'visible in the backing dir before the call returned')
    await v.clear('w')
    await wrote.result

    await v.add({ id: 'r', ops: ['read'], path: 'hb', lateReply: 120_000 })
    const read = track(fs.readFile(join(v.dir, 'hb'), 'utf8'))
    await held(v)
    writeFileSync(join(backing, 'hb'), 'beat 2, written after the read was served')
    t.notOk(read.settled)
    await v.clear('r')
    t.equal(await read.result, 'beat 1', 'the read answers what it read, not what is there now')
    t.equal(
      await fs.readFile(join(v.dir, 'hb'), 'utf8'),
      'beat 2, written after the read was served',
    )

    // A short late reply ends by itself.
    await v.add({ id: 'short', ops: ['read'], path: 'hb', lateReply: 200 })
    t.match(await fs.readFile(join(v.dir, 'hb'), 'utf8'), /^beat 2/)
  })

  t.test('hang holds an operation until released; other paths still work', async (t) => {
    const backing = tempDir(t)
    mkdirSync(join(backing, 'hb'))
    writeFileSync(join(backing, 'hb/1'), 'h')
    writeFileSync(join(backing, 'other'), 'o')
    const v = await mountFaultFs(t, backing, 'hang')
    await v.add({ id: 'h', ops: ['read'], path: 'hb/*', hang: true })
    const read = track(fs.readFile(join(v.dir, 'hb/1'), 'utf8'))
    await held(v)
    t.equal(await fs.readFile(join(v.dir, 'other'), 'utf8'), 'o', 'another file reads')
    await fs.writeFile(join(v.dir, 'hb/2'), 'w')
    t.ok((await fs.stat(join(v.dir, 'hb/1'))).isFile(), 'the hung path itself still stats')
    t.same((await fs.readdir(join(v.dir, 'hb'))).sort(), ['1', '2'])
    t.notOk(read.settled, 'the read is still held')
    await v.release()
    t.equal(await read.result, 'h', 'released, it proceeds')
    t.equal(await fs.readFile(join(v.dir, 'hb/1'), 'utf8'), 'h', 'release cleared the rule')

    // Clearing the rule lets its held operations through as well.
    await v.add({ id: 'h2', ops: ['open'], path: 'other', hang: true })
    const opened = track(fs.readFile(join(v.dir, 'other'), 'utf8'))
    await held(v)
    t.notOk(opened.settled)
    await v.clear('h2')
    t.equal(await opened.result, 'o')
  })

  t.test('fail answers an errno, before or after doing the operation', async (t) => {
    const backing = tempDir(t)
    writeFileSync(join(backing, 'epoch'), '7')
    const v = await mountFaultFs(t, backing, 'fail')
    await v.add({ id: 'eio', ops: ['read'], path: 'epoch', fail: 'EIO', count: 1 })
    await t.rejects(fs.readFile(join(v.dir, 'epoch')), { code: 'EIO' })
    t.equal(await fs.readFile(join(v.dir, 'epoch'), 'utf8'), '7', 'count: 1 hits one read only')

    await v.add({ id: 'full', ops: ['write'], fail: 'ENOSPC' })
    await t.rejects(fs.writeFile(join(v.dir, 'epoch'), '8'), { code: 'ENOSPC' })
    await v.clear('full')

    await v.add({ id: 'never', ops: ['read'], fail: 'EIO', probability: 0 })
    writeFileSync(join(backing, 'epoch'), '8')
    t.equal(await fs.readFile(join(v.dir, 'epoch'), 'utf8'), '8', 'probability 0 never hits')

    await v.add({ id: 'lost', ops: ['mkdir'], path: 'claims/*', fail: 'EEXIST', after: true })
    mkdirSync(join(backing, 'claims'))
    await t.rejects(fs.mkdir(join(v.dir, 'claims/2')), { code: 'EEXIST' }, 'the caller got EEXIST')
    t.ok(existsSync(join(backing, 'claims/2')), 'and the directory was made: a lost reply')
    t.same((await v.stats()).faults, { eio: 1, full: 1, never: 0, lost: 1 })
    await waitUntil('the fault logged', () =>
      v.log.some((l) => l.endsWith('lost fail=EEXIST after on mkdir claims/2')),
    )
    await t.rejects(v.add({ id: 'bad', fail: 'ENOTANERRNO' }), { code: 'EFAULTFS' })
    await t.rejects(v.add({ id: 'lost', delay: 1 }), { code: 'EFAULTFS' }, 'ids are unique')
    await t.rejects(
      v.add({ id: 'typo', ops: ['lookup'], delay: 1 } as unknown as FaultRule),
      { code: 'EFAULTFS', message: /unknown \['lookup'\]/ },
      'an unknown operation name is refused',
    )
  })

  t.test('negativeLookup: a view keeps answering ENOENT after the file appears', async (t) => {
    const backing = tempDir(t)
    mkdirSync(join(backing, 'claims'))
    writeFileSync(join(backing, 'claims/1'), 'node-a')
    const a = await mountFaultFs(t, backing, 'a')
    const b = await mountFaultFs(t, backing, 'b')
    await a.add({ id: 'neg', ops: ['getattr'], path: 'claims/*', negativeLookup: 120_000 })
    await t.rejects(fs.stat(join(a.dir, 'claims/2')), { code: 'ENOENT' }, 'not there yet')
    await fs.writeFile(join(b.dir, 'claims/2'), 'node-b')
    t.ok((await fs.stat(join(b.dir, 'claims/2'))).isFile(), 'B sees its claim')
    await t.rejects(fs.stat(join(a.dir, 'claims/2')), { code: 'ENOENT' }, 'A still says ENOENT')
    await t.rejects(fs.readFile(join(a.dir, 'claims/2')), { code: 'ENOENT' }, 'nor can A open it')
    t.equal(await fs.readFile(join(a.dir, 'claims/1'), 'utf8'), 'node-a', 'an existing file opens')
    t.ok((await a.stats()).faults.neg! >= 2)
    await a.clear('neg')
    t.equal(await fs.readFile(join(a.dir, 'claims/2'), 'utf8'), 'node-b', 'rule gone: visible')

    // Expiry: a short rule ends by itself.
    await a.add({ id: 'short', ops: ['getattr'], path: 'claims/*', negativeLookup: 300 })
    await t.rejects(fs.stat(join(a.dir, 'claims/3')), { code: 'ENOENT' })
    writeFileSync(join(backing, 'claims/3'), 'node-b')
    await waitUntil('A to see claims/3 once its negative entry expires', () =>
      fs.stat(join(a.dir, 'claims/3')).then(
        () => true,
        () => false,
      ),
    )
    t.pass('seen after expiry')
  })

  t.test('staleData and staleAttr: a view answers what it first saw', async (t) => {
    const backing = tempDir(t)
    writeFileSync(join(backing, 'owner'), 'v1')
    const a = await mountFaultFs(t, backing, 'a')
    const b = await mountFaultFs(t, backing, 'b')
    await a.add({ id: 'data', ops: ['read'], path: 'owner', staleData: 120_000 })
    t.equal(await fs.readFile(join(a.dir, 'owner'), 'utf8'), 'v1')
    await fs.writeFile(join(b.dir, 'owner'), 'version 2')
    t.equal(await fs.readFile(join(b.dir, 'owner'), 'utf8'), 'version 2', 'B reads the new')
    t.equal(await fs.readFile(join(a.dir, 'owner'), 'utf8'), 'v1', 'A reads what it cached')
    await a.clear('data')
    t.equal(await fs.readFile(join(a.dir, 'owner'), 'utf8'), 'version 2')

    await a.add({ id: 'attr', ops: ['getattr'], path: 'owner', staleAttr: 120_000 })
    t.equal((await fs.stat(join(a.dir, 'owner'))).size, 9)
    writeFileSync(join(backing, 'owner'), 'v3')
    t.equal((await fs.stat(join(a.dir, 'owner'))).size, 9, 'A stats the size it first saw')
    t.equal((await fs.stat(join(b.dir, 'owner'))).size, 2, 'B stats the real one')
    await a.clear('attr')
    t.equal((await fs.stat(join(a.dir, 'owner'))).size, 2)

    // A view's own write drops its cached answers, as a host sees its own writes.
    await a.add({ id: 'own', ops: ['read'], path: 'owner', staleData: 120_000 })
    t.equal(await fs.readFile(join(a.dir, 'owner'), 'utf8'), 'v3')
    await fs.writeFile(join(a.dir, 'owner'), 'v4 by a')
    t.equal(await fs.readFile(join(a.dir, 'owner'), 'utf8'), 'v4 by a')
  })

  t.test('teardown leaves no mount and no process', async (t) => {
    const backing = tempDir(t)
    writeFileSync(join(backing, 'keep'), 'k')
    let dir = ''
    let pid = 0
    await t.test('a view with an operation held at the end', async (t) => {
      const v = await mountFaultFs(t, backing, 'gone')
      dir = v.dir
      pid = v.pid
      await v.add({ id: 'h', ops: ['read'], hang: true })
      // Held at teardown: release lets it through before the unmount.
      void fs.readFile(join(v.dir, 'keep')).catch(() => undefined)
      await held(v)
      t.pass('a read is held')
    })
    t.notOk(mountpoints().includes(dir), 'unmounted')
    t.notOk(alive(pid), 'process gone')
    t.notOk(existsSync(dir), 'temp dir removed')
    t.equal(readFileSync(join(backing, 'keep'), 'utf8'), 'k', 'the backing dir is untouched')
    const left = spawnSync('pgrep', ['-f', `faultfs.py ${backing} `])
      .stdout.toString()
      .trim()
    t.equal(left, '', 'no faultfs process for this backing dir')
  })
}
