// What the benchmarks share: process groups, finding their own processes, the commit measured,
// and PM2 installed once outside the project (it is a peer measured, not a dependency).
import { execFile, spawn } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { createServer } from 'node:net'
import { basename, join } from 'node:path'
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

/**
 * A runner of commands in their own process groups, to completion: { code, signal, stdout,
 * stderr, t0, t1 } (t1: when the process exited). Each group is in `tracked` while it runs, so
 * that the benchmark's Ctrl-C handler can kill it; anything it leaves in its group is killed.
 */
export const groupRunner =
  ({ cwd, tracked, timeoutMs: defaultTimeoutMs }) =>
  (cmd, args, { env = process.env, timeoutMs = defaultTimeoutMs } = {}) =>
    new Promise((resolve, reject) => {
      const t0 = Date.now()
      const child = spawn(cmd, args, {
        cwd,
        env,
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      tracked.add(child.pid)
      let stdout = ''
      let stderr = ''
      child.stdout.on('data', (d) => (stdout += d))
      child.stderr.on('data', (d) => (stderr += d))
      const t = setTimeout(() => {
        killGroup(child.pid, 'SIGKILL')
        reject(new Error(`${basename(cmd)} ${args.join(' ')}: no exit after ${timeoutMs} ms`))
      }, timeoutMs)
      child.once('error', (err) => (clearTimeout(t), reject(err)))
      child.once('exit', () => (child.exitedAt = Date.now()))
      child.once('close', (code, signal) => {
        clearTimeout(t)
        killGroup(child.pid, 'SIGKILL') // anything it left in its group
        tracked.delete(child.pid)
        resolve({ code, signal, stdout, stderr, t0, t1: child.exitedAt ?? Date.now() })
      })
    })

/** Whether the port can be bound on the wildcard address (as a child may bind it). */
export const canBind = (port) =>
  new Promise((resolve) => {
    const s = createServer()
    s.once('error', () => resolve(false))
    s.listen({ port, host: '::', ipv6Only: false, exclusive: true }, () =>
      s.close(() => resolve(true)),
    )
  })

/** SIGKILLs every process naming `text` in its command line, and the group of each. */
export const killProcessesNaming = (text) => {
  for (const { pid } of processesNaming(text)) {
    killGroup(pid, 'SIGKILL')
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // gone
    }
  }
}

/**
 * On Ctrl-C or a TERM: runs `cleanup` (killing what the benchmark started; it may return a
 * promise), then exits 130 or 143 as a shell expects.
 */
export const exitOnSignal = (cleanup) => {
  const onSignal = (signal) => {
    void Promise.resolve()
      .then(cleanup)
      .finally(() => process.exit(signal === 'SIGINT' ? 130 : 143))
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
}
