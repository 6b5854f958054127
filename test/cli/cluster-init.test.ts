// `tandem cluster init` creates a cluster in ha.sharedDir once, is harmless run again, refuses
// other values and a shared dir it cannot use; `tandem start` never creates a cluster: on an
// empty shared dir (what an unmounted share looks like) it refuses and starts nothing.
// Real processes through bin/tandem.js. Port 25400 appears in configs here; nothing listens on it.
import { spawn } from 'node:child_process'
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { main } from '../../src/cli/main.js'
import { BIN, cli, fixture, tempDir } from '../helpers/supervisor.js'

const TIMINGS = { renewMs: 250, selfFenceMs: 1000, takeoverMs: 2000, pollMs: 100 }

/** A config whose ha.sharedDir is `shared` (relative to it) in a fresh dir; nothing created. */
const setup = (t: Test, ha: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) => {
  const dir = tempDir(t)
  const shared = join(dir, 'shared')
  const config = join(dir, 'tandem.json')
  const write = (h: Record<string, unknown>) =>
    writeFileSync(
      config,
      JSON.stringify({
        stateDir: 'state',
        ha: { name: 'c1', sharedDir: 'shared', ...h },
        components: { web: fixture({ port: 25400 }) },
        ...extra,
      }),
    )
  write(ha)
  return { dir, shared, config, file: join(shared, 'config.json'), write }
}

const init = (config: string, ...args: string[]) => cli(['cluster', 'init', '-c', config, ...args])

t.test('init writes config.json with the name and timings, and the lease dirs', async (t) => {
  const s = setup(t)
  mkdirSync(s.shared)
  const r = await init(s.config)
  t.equal(r.code, 0, r.err)
  t.match(r.out, `initialized cluster "c1" in ${s.shared}`)
  t.same(JSON.parse(readFileSync(s.file, 'utf8')), { name: 'c1', ...TIMINGS })
  t.same(readdirSync(s.shared).sort(), ['claims', 'config.json', 'hb', 'tmp'])
  t.equal(statSync(s.file).mode & 0o777, 0o644, 'readable by every node')
})

t.test('init again with the same values changes nothing and exits 0', async (t) => {
  const s = setup(t, { takeoverMs: 3000 })
  mkdirSync(s.shared)
  t.equal((await init(s.config)).code, 0)
  const before = { text: readFileSync(s.file, 'utf8'), mtimeMs: statSync(s.file).mtimeMs }
  const r = await init(s.config)
  t.equal(r.code, 0, r.err)
  t.match(r.out, `cluster "c1" is already initialized in ${s.shared} with the same values`)
  const json = await init(s.config, '--json')
  t.equal(json.code, 0, json.err)
  t.same(JSON.parse(json.out), {
    cluster: 'c1',
    sharedDir: s.shared,
    file: s.file,
    created: false,
    config: { name: 'c1', ...TIMINGS, takeoverMs: 3000 },
  })
  t.same({ text: readFileSync(s.file, 'utf8'), mtimeMs: statSync(s.file).mtimeMs }, before)
})

t.test('init with other timings or another name refuses (78) naming both values', async (t) => {
  const s = setup(t)
  mkdirSync(s.shared)
  t.equal((await init(s.config)).code, 0)
  const before = { text: readFileSync(s.file, 'utf8'), mtimeMs: statSync(s.file).mtimeMs }
  s.write({ takeoverMs: 3000, pollMs: 200 })
  const timings = await init(s.config)
  t.equal(timings.code, 78, timings.err)
  t.match(
    timings.err,
    `${s.file} has takeoverMs 2000, pollMs 100, and this config has takeoverMs 3000, pollMs 200`,
  )
  s.write({ name: 'c2' })
  const name = await init(s.config)
  t.equal(name.code, 78, name.err)
  t.match(name.err, `${s.file} has name "c1", and this config has name "c2"`)
  t.match(name.err, 'another shared dir for another cluster')
  t.same({ text: readFileSync(s.file, 'utf8'), mtimeMs: statSync(s.file).mtimeMs }, before)
})

t.test('init refuses a config.json it cannot read as one, and leaves it', async (t) => {
  const s = setup(t)
  mkdirSync(s.shared)
  writeFileSync(s.file, '')
  const r = await init(s.config)
  t.equal(r.code, 1)
  t.match(r.err, `${s.file} is not valid JSON (it is empty)`)
  t.equal(readFileSync(s.file, 'utf8'), '')
})

t.test('init refuses a shared dir that is missing, not a directory or not writable', async (t) => {
  const s = setup(t)
  const missing = await init(s.config)
  t.equal(missing.code, 1)
  t.match(
    missing.err,
    `the shared dir ${s.shared} cannot be used: ENOENT: no such file or directory, stat '${s.shared}'; expected a directory on storage that every node of cluster "c1" mounts`,
  )
  t.notOk(existsSync(s.shared), 'not created')

  writeFileSync(s.shared, 'a file\n')
  const file = await init(s.config)
  t.equal(file.code, 1)
  t.match(file.err, `the shared dir ${s.shared} is not a directory`)
  t.equal(readFileSync(s.shared, 'utf8'), 'a file\n')

  const u = setup(t)
  mkdirSync(u.shared, { mode: 0o755 })
  // chmod does not stop root: as root, the init runs as nobody in a directory owned by root.
  const root = process.getuid?.() === 0
  if (root) chmodSync(u.dir, 0o755)
  else chmodSync(u.shared, 0o555)
  const readOnly = await new Promise<{ code: number | null; err: string }>((res) => {
    const argv = [BIN, 'cluster', 'init', '-c', u.config]
    const p = root
      ? spawn('setpriv', [
          '--reuid=65534',
          '--regid=65534',
          '--clear-groups',
          process.execPath,
          ...argv,
        ])
      : spawn(process.execPath, argv)
    let err = ''
    p.stderr.on('data', (d) => (err += d))
    p.once('close', (code) => res({ code, err }))
  })
  t.equal(readOnly.code, 1, readOnly.err)
  t.match(readOnly.err, `the shared dir ${u.shared} is not writable by this node (uid `)
  t.match(readOnly.err, 'EACCES')
  t.same(readdirSync(u.shared), [])
})

t.test('init needs an ha section (78)', async (t) => {
  const dir = tempDir(t)
  const config = join(dir, 'tandem.json')
  writeFileSync(config, JSON.stringify({ components: { web: fixture({ port: 25400 }) } }))
  const r = await init(config)
  t.equal(r.code, 78)
  t.match(r.err, `${config} has no "ha" section: cluster init needs ha.name and ha.backend`)
})

t.test('start on an empty shared dir refuses, starts no child and creates nothing', async (t) => {
  const dir = tempDir(t)
  const marker = join(dir, 'started')
  const s = setup(t, {}, { components: { web: fixture({ port: 25400 }, { COUNT_FILE: marker }) } })
  mkdirSync(s.shared)
  const r = await cli(['start', '-c', s.config])
  t.equal(r.code, 1, r.err)
  t.match(
    r.err,
    `the shared dir ${s.shared} has no config.json: either the shared storage is not mounted on this node (an unmounted mount point looks like an empty directory) or the cluster was never initialized; run \`tandem cluster init -c <file>\` once, on one node`,
  )
  t.notOk(existsSync(marker), 'no child started')
  t.same(readdirSync(s.shared), [], 'nothing created in the shared dir')
})

t.test('completion knows cluster init and its options', async (t) => {
  const complete = async (...words: string[]) => {
    const out: string[] = []
    await main(['node', 'tandem', '__complete', ...words], {
      out: (s) => out.push(s),
      err: () => {},
    })
    return out
      .join('\n')
      .split('\n')
      .slice(1)
      .map((l) => l.split('\t')[0])
  }
  t.ok((await complete('cl')).includes('cluster'))
  t.ok((await complete('cluster', '')).includes('init'))
  t.same((await complete('cluster', 'init', '--')).sort(), ['--config', '--help', '--json'])
})
