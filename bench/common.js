// What the benchmarks share: process groups, finding their own processes, the commit measured,
// and PM2 installed once outside the project (it is a peer measured, not a dependency).
import { execFile } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

/** Signals a whole process group; false when it is gone. */
export const killGroup = (pgid, signal) => {
  try {
    process.kill(-pgid, signal)
    return true
  } catch {
    return false
  }
}

/** Running processes (not this one) whose command line contains `text`: { pid, cmd }. */
export const processesNaming = (text) => {
  const found = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue
    try {
      const cmd = readFileSync(`/proc/${name}/cmdline`, 'utf8').replaceAll('\0', ' ').trim()
      if (cmd.includes(text)) found.push({ pid: Number(name), cmd })
    } catch {
      // gone meanwhile
    }
  }
  return found
}

/** The commit of the tree at `root`, and whether its src/ has uncommitted changes. */
export const gitState = async (root) => {
  const git = (...args) =>
    run('git', args, { cwd: root }).then(
      (r) => r.stdout.trim(),
      () => undefined,
    )
  const commit = await git('rev-parse', '--short', 'HEAD')
  const srcDirty = (await git('status', '--porcelain', '--', 'src')) ? true : false
  return { commit, srcDirty }
}

/** Where PM2 is installed for the benchmarks (PM2_CACHE), never the project's node_modules. */
export const PM2_CACHE =
  process.env.PM2_CACHE ??
  join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'tandem-bench', 'pm2')

export const pm2Bin = () => join(PM2_CACHE, 'node_modules', 'pm2', 'bin', 'pm2')

/**
 * Installs PM2 from npm into PM2_CACHE the first time (with the benchmark's `runGroup`, so that
 * Ctrl-C stops it too); resolves with its version.
 */
export const ensurePm2 = async (runGroup) => {
  if (!existsSync(pm2Bin())) {
    console.log(`  installing pm2 from npm into ${PM2_CACHE} (once; not a project dependency)`)
    mkdirSync(PM2_CACHE, { recursive: true })
    const r = await runGroup(
      'npm',
      ['install', '--prefix', PM2_CACHE, '--no-audit', '--no-fund', 'pm2@latest'],
      { timeoutMs: 300_000 },
    )
    if (r.code !== 0 || !existsSync(pm2Bin()))
      throw new Error(`npm install pm2 failed: ${r.stderr.slice(-500)}`)
  }
  return JSON.parse(readFileSync(join(PM2_CACHE, 'node_modules', 'pm2', 'package.json'), 'utf8'))
    .version
}
