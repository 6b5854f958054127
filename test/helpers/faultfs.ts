// Views of one shared directory through test/fixtures/faultfs.py, a FUSE passthrough that injects
// faults (delays, late replies, hangs, errors, stale caches) into one view only, on command: what
// each host of an HA test sees of slow, stale or hung shared storage.
import { spawn, spawnSync } from 'node:child_process'
import {
  accessSync,
  constants,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import { needTool } from './need-tool.js'
import { killGroup, ROOT, waitUntil } from './supervisor.js'

export const FAULTFS = join(ROOT, 'test/fixtures/faultfs.py')
/** Debian's python: the pyenv python3 on PATH lacks Debian's modules (python3-fusepy). */
export const PYTHON = '/usr/bin/python3'
/** Debian's python3-fusepy names its module fusepy; pip's fusepy names it fuse. */
const IMPORT_FUSEPY = 'try:\n from fusepy import FUSE\nexcept ImportError:\n from fuse import FUSE'

/** Operation names as faultfs.py counts and matches them (fusepy's). */
export type FaultOp =
  | 'getattr'
  | 'readdir'
  | 'open'
  | 'create'
  | 'read'
  | 'write'
  | 'truncate'
  | 'flush'
  | 'fsync'
  | 'release'
  | 'mkdir'
  | 'rmdir'
  | 'rename'
  | 'unlink'
  | 'chmod'
  | 'chown'
  | 'utimens'
  | 'statfs'
  | 'access'
  | 'readlink'
  | 'symlink'
  | 'link'

/** One effect per rule; durations in ms. See test/fixtures/faultfs.py for each. */
export type FaultEffect =
  | { delay: number }
  | { lateReply: number }
  | { hang: true }
  | { fail: string; after?: boolean }
  | { staleAttr: number }
  | { staleData: number }
  | { negativeLookup: number }

export type FaultRule = FaultEffect & {
  id: string
  /** The operations it applies to; all when left out. */
  ops?: FaultOp[] | '*'
  /** fnmatch pattern on the path relative to the mount root (`*` also matches `/`). */
  path?: string
  /** Chance (0..1) that a matching operation is hit; 1 when left out. */
  probability?: number
  /** At most this many operations are hit. */
  count?: number
}

export interface FaultStats {
  /** Operations served, by kind. */
  ops: Partial<Record<FaultOp, number>>
  /** Faults applied, by rule id (cleared rules included). */
  faults: Record<string, number>
  /** Operations held right now by a hang, delay or lateReply. */
  held: number
}

export interface FaultView {
  /** The mountpoint: this host's view of the backing directory. */
  readonly dir: string
  /** The faultfs process, leader of its own process group. */
  readonly pid: number
  /** Its stderr lines: one per fault applied, and anything that went wrong. */
  readonly log: string[]
  add(rule: FaultRule): Promise<void>
  clear(id: string): Promise<void>
  /** Lets every held operation through and clears every rule. */
  release(): Promise<void>
  stats(): Promise<FaultStats>
  /** Releases, unmounts, kills the process group, removes the temp dir; idempotent. */
  unmount(): Promise<void>
}

/** Whether faultfs can run here, and if not, what is missing (Debian package names). */
export const faultFsAvailable = (): { ok: true } | { ok: false; why: string } => {
  const missing: string[] = []
  try {
    accessSync('/dev/fuse', constants.R_OK | constants.W_OK)
  } catch {
    missing.push('/dev/fuse (a kernel with FUSE; in a container, --device /dev/fuse)')
  }
  if (spawnSync('fusermount3', ['-V']).status !== 0) missing.push('fusermount3 (package fuse3)')
  if (spawnSync(PYTHON, ['-c', IMPORT_FUSEPY]).status !== 0)
    missing.push(`fusepy for ${PYTHON} (package python3-fusepy)`)
  return missing.length ? { ok: false, why: `faultfs needs ${missing.join(', ')}` } : { ok: true }
}

/**
 * For a test file that needs faultfs: true when it can run. Otherwise false, after failing the
 * file where CI is set (npm test installs the packages: a broken install must not pass as a
 * skip) or skipping it with the reason elsewhere.
 */
export const needFaultFs = (t: Test): boolean => needTool(t, faultFsAvailable())

/** The mountpoints in /proc/mounts (octal escapes such as \040 decoded). */
export const mountpoints = (): string[] =>
  readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((l) =>
      (l.split(' ')[1] ?? '').replace(/\\([0-7]{3})/g, (_, o: string) =>
        String.fromCharCode(parseInt(o, 8)),
      ),
    )

const fusermount = (args: string[]): boolean => spawnSync('fusermount3', args).status === 0

/** One request on the control socket, its reply; a refused command rejects with EFAULTFS. */
const control = (sock: string, msg: Record<string, unknown>): Promise<Record<string, unknown>> =>
  new Promise((resolve, reject) => {
    const s = connect(sock)
    let buf = ''
    s.on('data', (d: Buffer) => {
      buf += d.toString()
      const nl = buf.indexOf('\n')
      if (nl < 0) return
      s.destroy()
      const reply = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>
      if (reply.ok === true) resolve(reply)
      else
        reject(
          Object.assign(
            new Error(`faultfs ${sock}: ${JSON.stringify(msg)} refused: ${String(reply.error)}`),
            { code: 'EFAULTFS' },
          ),
        )
    })
    s.on('error', reject)
    s.on('close', () =>
      reject(Object.assign(new Error(`faultfs ${sock}: no reply`), { code: 'EFAULTFS' })),
    )
    s.write(`${JSON.stringify(msg)}\n`)
  })

/**
 * Mounts a view of `backing` named `name` (a fresh mountpoint under a temp dir), waits until
 * it serves the backing dir and answers on its control socket, and unmounts it at teardown.
 */
export const mountFaultFs = async (t: Test, backing: string, name: string): Promise<FaultView> => {
  const home = mkdtempSync(join(tmpdir(), `faultfs-${name}-`))
  const dir = join(home, name)
  mkdirSync(dir)
  const sock = join(home, 'control.sock')
  const log: string[] = []
  // Its own process group, killed as one at teardown.
  const proc = spawn(PYTHON, [FAULTFS, backing, dir, sock], {
    detached: true,
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  proc.stderr.on('data', (d: Buffer) => log.push(...d.toString().split('\n').filter(Boolean)))
  const exited = new Promise<void>((r) => proc.once('exit', () => r()))
  const pid = proc.pid!
  const mounted = () => mountpoints().includes(dir)
  const gone = () => proc.exitCode !== null || proc.signalCode !== null

  let ending: Promise<void> | undefined
  const unmount = (): Promise<void> =>
    (ending ??= (async () => {
      if (!gone()) await control(sock, { cmd: 'release' }).catch(() => undefined)
      // A held file makes -u fail with EBUSY; -z detaches the mount anyway.
      if (mounted() && !fusermount(['-u', dir])) fusermount(['-uz', dir])
      // Unmounted, it ends its loop by itself; the group is killed whatever happened.
      await waitUntil(`faultfs ${name} to exit`, gone, 5000).catch(() => undefined)
      killGroup(pid)
      if (!gone()) await exited
      if (mounted()) fusermount(['-uz', dir])
      // Never recurse into a live mount: that would delete the shared directory's files.
      if (mounted()) throw new Error(`faultfs ${name}: ${dir} is still mounted`)
      rmSync(home, { recursive: true, force: true })
    })())
  t.teardown(unmount)

  // Live when a file made in the backing dir shows through the mount.
  const probe = `.faultfs-probe-${name}-${process.pid}`
  writeFileSync(join(backing, probe), '')
  try {
    await waitUntil(`faultfs ${name} to serve ${backing} at ${dir}`, () => {
      if (gone()) throw new Error(`faultfs ${name} exited: ${log.join('\n')}`)
      return existsSync(join(dir, probe))
    })
  } finally {
    rmSync(join(backing, probe), { force: true })
  }
  await waitUntil(`faultfs ${name} control socket`, () =>
    control(sock, { cmd: 'ping' }).then(
      () => true,
      () => false,
    ),
  )

  return {
    dir,
    pid,
    log,
    add: async (rule) => void (await control(sock, { cmd: 'add', ...rule })),
    clear: async (id) => void (await control(sock, { cmd: 'clear', id })),
    release: async () => void (await control(sock, { cmd: 'release' })),
    stats: async () => (await control(sock, { cmd: 'stats' })) as unknown as FaultStats,
    unmount,
  }
}
