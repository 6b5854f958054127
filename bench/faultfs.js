// Views of one shared directory through test/fixtures/faultfs.py, for the benchmarks: each
// simulated host reaches the shared dir through its own FUSE view, into which faults (delays,
// late replies, hangs, errors) are injected on command over the view's control socket (one JSON
// line per command; see the header of faultfs.py). Plain JS: the benchmarks do not load the
// tests' TypeScript helper (test/helpers/faultfs.ts), which this follows.
import { spawn, spawnSync } from 'node:child_process'
import {
  accessSync,
  constants,
  existsSync,
  mkdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { killGroup } from './common.js'

export const FAULTFS = fileURLToPath(new URL('../test/fixtures/faultfs.py', import.meta.url))
/** Debian's python: the pyenv python3 on PATH lacks Debian's modules (python3-fusepy). */
export const PYTHON = '/usr/bin/python3'
const IMPORT_FUSEPY = 'try:\n from fusepy import FUSE\nexcept ImportError:\n from fuse import FUSE'

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** Undefined when faultfs can run here, else what is missing (Debian package names). */
export const faultFsMissing = () => {
  const missing = []
  try {
    accessSync('/dev/fuse', constants.R_OK | constants.W_OK)
  } catch {
    missing.push('/dev/fuse (a kernel with FUSE; in a container, --device /dev/fuse)')
  }
  if (spawnSync('fusermount3', ['-V']).status !== 0) missing.push('fusermount3 (package fuse3)')
  if (spawnSync(PYTHON, ['-c', IMPORT_FUSEPY]).status !== 0)
    missing.push(`fusepy for ${PYTHON} (package python3-fusepy)`)
  return missing.length ? `faultfs needs ${missing.join(', ')}` : undefined
}

/** The mountpoints in /proc/mounts (octal escapes such as \040 decoded). */
export const mountpoints = () =>
  readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((l) =>
      (l.split(' ')[1] ?? '').replace(/\\([0-7]{3})/g, (_, o) =>
        String.fromCharCode(parseInt(o, 8)),
      ),
    )

const fusermount = (args) => spawnSync('fusermount3', args).status === 0

/** One command on a view's control socket: its reply; a refused command rejects, naming it. */
const control = (sock, msg, timeoutMs = 5000) =>
  new Promise((resolve, reject) => {
    const s = connect(sock)
    let buf = ''
    // A control socket never waits on the file system; no reply in time is a broken faultfs.
    s.setTimeout(timeoutMs, () => {
      s.destroy()
      reject(new Error(`faultfs ${sock}: ${JSON.stringify(msg)}: no reply in ${timeoutMs} ms`))
    })
    s.on('data', (d) => {
      buf += d.toString()
      const nl = buf.indexOf('\n')
      if (nl < 0) return
      s.destroy()
      const reply = JSON.parse(buf.slice(0, nl))
      if (reply.ok === true) resolve(reply)
      else
        reject(new Error(`faultfs ${sock}: ${JSON.stringify(msg)} refused: ${String(reply.error)}`))
    })
    s.on('error', reject)
    s.on('close', () => reject(new Error(`faultfs ${sock}: ${JSON.stringify(msg)}: no reply`)))
    s.write(`${JSON.stringify(msg)}\n`)
  })

/**
 * Mounts a view named `name` of `backing` at `<home>/<name>` (control socket
 * `<home>/<name>.sock`), in its own process group, and waits until it serves the backing dir
 * and answers on its socket. Returns { dir, pid, log ({at, line} per stderr line), add(rule),
 * clear(id), release(), stats(), unmount() }; `unmount` releases every held operation first (a process blocked in a hung FUSE
 * call cannot be killed until then), is idempotent, and never leaves the mount behind silently.
 */
export const mountView = async (backing, home, name) => {
  const dir = join(home, name)
  mkdirSync(dir)
  const sock = join(home, `${name}.sock`)
  const log = []
  const proc = spawn(PYTHON, [FAULTFS, backing, dir, sock], {
    detached: true,
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  // Each line with when it arrived here (performance.now()): one line per fault applied.
  proc.stderr.on('data', (d) => {
    const at = performance.now()
    for (const line of d.toString().split('\n').filter(Boolean)) log.push({ at, line })
  })
  const exited = new Promise((r) => proc.once('exit', () => r()))
  const pid = proc.pid
  const mounted = () => mountpoints().includes(dir)
  const gone = () => proc.exitCode !== null || proc.signalCode !== null
  const waitFor = async (what, cond, timeoutMs) => {
    const deadline = performance.now() + timeoutMs
    for (;;) {
      if (await cond()) return
      if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${what}`)
      await sleep(20)
    }
  }

  let ending
  const unmount = () =>
    (ending ??= (async () => {
      if (!gone()) await control(sock, { cmd: 'release' }).catch(() => undefined)
      // A file still held open makes -u fail with EBUSY; -z detaches the mount anyway.
      if (mounted() && !fusermount(['-u', dir])) fusermount(['-uz', dir])
      // Unmounted, it ends by itself; its group is killed whatever happened.
      await waitFor(`faultfs ${name} to exit`, gone, 5000).catch(() => undefined)
      killGroup(pid, 'SIGKILL')
      if (!gone()) await Promise.race([exited, sleep(5000)])
      if (mounted()) fusermount(['-uz', dir])
      if (mounted()) throw new Error(`faultfs ${name}: ${dir} is still mounted`)
      rmSync(sock, { force: true })
    })())

  // Live when a file made in the backing dir shows through the mount.
  const probe = `.faultfs-probe-${name}-${process.pid}`
  writeFileSync(join(backing, probe), '')
  try {
    await waitFor(
      `faultfs ${name} to serve ${backing} at ${dir}`,
      () => {
        if (gone()) throw new Error(`faultfs ${name} exited: ${log.map((l) => l.line).join('\n')}`)
        return existsSync(join(dir, probe))
      },
      10_000,
    )
    await waitFor(
      `faultfs ${name} control socket`,
      () =>
        control(sock, { cmd: 'ping' }).then(
          () => true,
          () => false,
        ),
      10_000,
    )
  } catch (err) {
    await unmount().catch(() => undefined)
    throw err
  } finally {
    rmSync(join(backing, probe), { force: true })
  }

  return {
    name,
    dir,
    pid,
    log,
    add: async (rule) => void (await control(sock, { cmd: 'add', ...rule })),
    clear: async (id) => void (await control(sock, { cmd: 'clear', id })),
    release: async () => void (await control(sock, { cmd: 'release' })),
    stats: () => control(sock, { cmd: 'stats' }),
    mounted,
    unmount,
  }
}
