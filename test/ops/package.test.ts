// Packaging: `npm pack` of a copy of the repo as a clone has it (prepack empties dist, prepare
// builds it), installed with `npm install -g --prefix` as an operator would, and run from there:
// the bin through npm's symlink, the programmatic API and the child helper from an ES module, and
// their types through tsc. The packing happens in a copy so that this repo's dist, which other
// test files run from, is never emptied under them. No ports.
import { spawn } from 'node:child_process'
import {
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  statSync,
  symlinkSync,
} from 'node:fs'
import { writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import t from 'tap'
import { ROOT, tempDir } from '../helpers/supervisor.js'

// npm and tsc are far slower than anything else here (about a minute on a busy machine).
t.setTimeout(300_000)

/**
 * The environment without what npm and tap put there for this process: npm reads npm_config_*
 * as its own settings, and NODE_OPTIONS would load tap's process tracker into npm and tsc.
 */
const cleanEnv = (): NodeJS.ProcessEnv =>
  Object.fromEntries(
    Object.entries(process.env).filter(
      ([k]) => !/^(npm_|TAP|_TAPJS|NODE_OPTIONS$|NODE_V8_COVERAGE$)/i.test(k),
    ),
  )

const run = (
  cmd: string,
  args: string[],
  cwd: string,
): Promise<{ code: number | null; out: string; err: string }> =>
  new Promise((res, rej) => {
    const p = spawn(cmd, args, { cwd, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    p.stdout.on('data', (d) => (out += d))
    p.stderr.on('data', (d) => (err += d))
    p.once('error', rej)
    p.once('close', (code) => res({ code, out, err }))
  })

/** Copies the files a clone would have (tracked, and new ones not ignored) into `dir`. */
const copyRepo = async (dir: string) => {
  const ls = await run(
    'git',
    ['ls-files', '-z', '--cached', '--others', '--exclude-standard'],
    ROOT,
  )
  if (ls.code !== 0) throw new Error(`git ls-files in ${ROOT} failed: ${ls.err}`)
  for (const f of ls.out.split('\0')) {
    if (!f || !existsSync(join(ROOT, f))) continue // deleted in the working tree
    mkdirSync(dirname(join(dir, f)), { recursive: true })
    copyFileSync(join(ROOT, f), join(dir, f))
  }
  // The build needs the dev dependencies that `npm ci` installed here.
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'))
}

const version = (
  JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }
).version

t.test('npm pack makes a tarball that installs globally and runs', async (t) => {
  const work = tempDir(t)
  const repo = join(work, 'repo')
  await copyRepo(repo)
  // Left over from an old build: the tarball must not carry it.
  mkdirSync(join(repo, 'dist'))
  writeFileSync(join(repo, 'dist/stale.js'), '')

  const pack = await run('npm', ['pack', '--json', '--pack-destination', work], repo)
  t.equal(pack.code, 0, `npm pack: ${pack.err}`)
  const [info] = JSON.parse(pack.out) as { filename: string; files: { path: string }[] }[]
  const files = info!.files.map((f) => f.path)
  for (const f of [
    'package.json',
    'README.md',
    'LICENSE',
    'bin/tandem.js',
    'dist/cli/main.js',
    'dist/index.js',
    'dist/index.d.ts',
    'dist/child/index.js',
    'dist/child/index.d.ts',
    'dist/process/watchdog-main.js',
    // Not TypeScript: copied by the build (scripts/copy-assets.js).
    'dist/control/status-page.html',
    'config.schema.json',
    'config.example.json',
    'examples/server.js',
    'docs/ha.md',
    'docs/pacemaker.md',
    'ocf/tandem',
  ])
    t.ok(files.includes(f), `packed: ${f}`)
  t.same(
    files.filter(
      (f) =>
        /^(src|test|bench|scripts|coverage|node_modules|\.tap|\.ci|\.git)\//.test(f) ||
        /\.map$|(?<!\.d)\.ts$|^(tsconfig.*|eslint\.config|\.taprc|\.prettierrc|package-lock)/.test(
          f,
        ),
    ),
    [],
    'no sources, tests, source maps or tooling',
  )
  t.same(
    files.filter((f) => f.startsWith('dist/') && f.endsWith('.js')),
    files
      .filter((f) => f.startsWith('dist/') && f.endsWith('.d.ts'))
      .map((f) => f.replace(/\.d\.ts$/, '.js')),
    'dist is built from empty: each module with its types, nothing stale',
  )

  const prefix = join(work, 'prefix')
  const install = await run(
    'npm',
    [
      'install',
      '-g',
      '--prefix',
      prefix,
      join(work, info!.filename),
      '--prefer-offline',
      '--no-audit',
      '--no-fund',
    ],
    work,
  )
  t.equal(install.code, 0, `npm install -g: ${install.err}`)
  const tandem = join(prefix, 'bin/tandem')
  const installed = join(prefix, 'lib/node_modules/tandem')
  t.ok(lstatSync(tandem).isSymbolicLink(), 'the bin is a symlink into the package, as npm links it')
  t.notOk(existsSync(join(installed, 'src')), 'installed without building: no sources')

  const help = await run(tandem, ['--help'], work)
  t.equal(help.code, 0, help.err)
  t.match(help.out, /^Usage: tandem /)
  t.match(help.out, /completion <shell>/)
  t.same(await run(tandem, ['--version'], work), { code: 0, out: `${version}\n`, err: '' })
  const example = join(installed, 'config.example.json')
  const validate = await run(tandem, ['validate', '-c', example], work)
  t.equal(validate.code, 0, validate.err)
  t.match(validate.out, /config\.example\.json is valid: .*4 instances/)
  t.match((await run(tandem, ['completion', 'bash'], work)).out, /complete -F _tandem_completion/)
  // The OCF agent as Pacemaker runs it: from a symlink in the OCF root, no PATH to tandem.
  const agent = join(installed, 'ocf/tandem')
  t.ok(statSync(agent).mode & 0o111, 'ocf/tandem is executable once installed')
  const ocfRoot = join(work, 'resource.d/tandem')
  mkdirSync(ocfRoot, { recursive: true })
  symlinkSync(agent, join(ocfRoot, 'tandem'))
  const meta = await run(join(ocfRoot, 'tandem'), ['meta-data'], work)
  t.equal(meta.code, 0, meta.err)
  t.match(meta.out, /<resource-agent name="tandem"/)

  // An ES module beside the prefix's node_modules: `tandem` and `tandem/child` resolve there.
  const program = join(prefix, 'lib/program.mjs')
  writeFileSync(
    program,
    `import { loadConfig, planInstances, hasCode, TandemError, runSupervisor, controlRequest } from 'tandem'
import { tandemChild } from 'tandem/child'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
const plan = loadConfig(process.argv[2])
const child = tandemChild({ env: { TANDEM_ROLE: 'standby', TANDEM_EPOCH: '7' } })
let configError
try { loadConfig('missing.json') } catch (err) { configError = hasCode(err, 'ECONFIG') }
const internal = await import('tandem/dist/supervisor/reconciler.js').catch((err) => err.code)
console.log(JSON.stringify({
  ids: planInstances(plan).map((i) => i.id),
  child: [child.role, child.epoch, child.isActive()],
  configError,
  code: new TandemError('EUSAGE', 'x').code,
  functions: [typeof runSupervisor, typeof controlRequest],
  internal,
  schema: existsSync(fileURLToPath(import.meta.resolve('tandem/config.schema.json'))),
}))
child.close()
`,
  )
  const esm = await run(process.execPath, [program, example], work)
  t.equal(esm.code, 0, esm.err)
  t.same(JSON.parse(esm.out), {
    ids: ['discovery#0', 'gateway#0', 'gateway#1', 'gateway#2'],
    child: ['standby', 7, false],
    configError: true,
    code: 'EUSAGE',
    functions: ['function', 'function'],
    internal: 'ERR_PACKAGE_PATH_NOT_EXPORTED',
    schema: true,
  })

  // The published types, checked strictly (library .d.ts included) by this repo's tsc.
  const typed = join(prefix, 'lib/typed.mts')
  writeFileSync(
    typed,
    `import { controlRequest, loadConfig, type ErrorCode, type Plan, type StatusReply } from 'tandem'
import { tandemChild, type TandemChild } from 'tandem/child'
const plan: Plan = loadConfig('tandem.json')
const child: TandemChild = tandemChild()
const code: ErrorCode = 'ECONFIG'
export const status = async (): Promise<StatusReply> =>
  (await controlRequest(plan.stateDir, 'GET', '/status')) as StatusReply
export const active: boolean = child.isActive() && code === 'ECONFIG'
// @ts-expect-error: typed, not any: a Plan is no number
export const wrong: number = loadConfig('tandem.json')
// @ts-expect-error: the internals are not exported
import type { Reconciler } from 'tandem/dist/supervisor/reconciler.js'
export type Internal = Reconciler
`,
  )
  const tsc = await run(
    process.execPath,
    [
      join(ROOT, 'node_modules/typescript/bin/tsc'),
      '--noEmit',
      '--strict',
      '--module',
      'nodenext',
      '--moduleResolution',
      'nodenext',
      '--target',
      'es2022',
      '--types',
      'node',
      '--typeRoots',
      join(ROOT, 'node_modules/@types'),
      typed,
    ],
    work,
  )
  t.same(tsc, { code: 0, out: '', err: '' }, 'tsc accepts the program with the installed types')
})
