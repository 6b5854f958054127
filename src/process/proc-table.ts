import { execFile } from 'node:child_process'
import { closeSync, openSync, readdirSync, readFileSync, readSync } from 'node:fs'

/** One process as /proc/<pid>/stat shows it: the fields the supervisor reads. */
export interface ProcEntry {
  pid: number
  /** One letter: R, S, D, Z (zombie), X (dead), T... */
  state: string
  ppid: number
  pgrp: number
  /** utime + stime, in clock ticks (CLK_TCK a second). */
  cpuTicks: number
  /** Clock ticks after boot at which the process started. */
  startTicks: number
  /** Resident set, in pages. */
  rssPages: number
}

/** A zombie or dead process holds no memory and runs no more: not a member of anything live. */
export const isLive = (e: ProcEntry): boolean => e.state !== 'Z' && e.state !== 'X'

/**
 * A stat line is a few hundred bytes (the name is at most 16): one buffer, reused by every read
 * of a pass, instead of readFileSync's stat, growing buffer and second read to find the end.
 */
const buf = Buffer.alloc(4096)

/**
 * The fields of a stat line in `buf`, parsed in place: a pass reads every process of the host,
 * and a string and a split array per process would be most of what it allocates (and then
 * collects) several times a minute for months.
 */
const parseStatBytes = (pid: number, n: number): ProcEntry | undefined => {
  let i = buf.lastIndexOf(0x29, n - 1) // ')': the name may hold one itself
  if (i < 0 || i + 2 >= n) return undefined
  i += 2
  const state = String.fromCharCode(buf[i]!)
  // Field 3 (state) is at i; fields 4.. are numbers, one space apart.
  let field = 3
  let value = 0
  let ppid = 0
  let pgrp = 0
  let utime = 0
  let startTicks = 0
  for (i += 2; i < n; i++) {
    const c = buf[i]!
    if (c >= 48 && c <= 57) {
      value = value * 10 + (c - 48)
      continue
    }
    if (c !== 32 && c !== 10) {
      value = 0 // a sign: the fields read here are never negative
      continue
    }
    field++
    if (field === 4) ppid = value
    else if (field === 5) pgrp = value
    else if (field === 14) utime = value
    else if (field === 15) utime += value
    else if (field === 22) startTicks = value
    else if (field === 24)
      return { pid, state, ppid, pgrp, cpuTicks: utime, startTicks, rssPages: value }
    value = 0
  }
  return undefined
}

/**
 * Parses one /proc/<pid>/stat line. The command name (field 2) is in parentheses and may hold
 * spaces and parentheses itself, so the fields are counted after the last ')'.
 */
export const parseStat = (pid: number, line: string): ProcEntry | undefined =>
  parseStatBytes(pid, buf.write(line.slice(0, buf.length), 'latin1'))

/** One process's stat, or undefined when it is gone (or not ours to read). */
export const readStat = (pid: number): ProcEntry | undefined => {
  let fd: number
  try {
    fd = openSync(`/proc/${pid}/stat`, 'r')
  } catch {
    return undefined // exited between the listing and the open
  }
  try {
    return parseStatBytes(pid, readSync(fd, buf, 0, buf.length, 0))
  } catch {
    return undefined // a process that exited after the open reads ESRCH
  } finally {
    closeSync(fd)
  }
}

/**
 * Every process of the host in one pass over /proc (Linux), synchronously: a few tens of
 * microseconds a process, far less CPU than the same reads through the thread pool, and one
 * pass serves every process group the supervisor watches. Undefined where there is no /proc.
 */
export const readProcTable = (): ProcEntry[] | undefined => {
  if (process.platform !== 'linux') return undefined
  let names: string[]
  try {
    names = readdirSync('/proc')
  } catch {
    return undefined
  }
  const table: ProcEntry[] = []
  for (const name of names) {
    const c = name.charCodeAt(0)
    if (c < 48 || c > 57) continue // not a pid: self, sys, meminfo...
    const e = readStat(Number(name))
    if (e) table.push(e)
  }
  return table
}

/**
 * Reads of /proc/<pid>/stat that keep the file of each process named in `keep()` open between
 * passes: reading an open stat again (pread at 0) makes the kernel write it afresh, and the
 * open and close, which cost more than the read (a path walk in procfs each), are paid once per
 * member process instead of once per pass. A held file of a process that has ended reads as an
 * error or nothing: it is closed then. Every file is opened close-on-exec (as Node opens all
 * files), so children never inherit one.
 */
export const heldStatReader = () => {
  const held = new Map<number, number>()
  const drop = (pid: number, fd: number) => {
    held.delete(pid)
    try {
      closeSync(fd)
    } catch {
      // already closed
    }
  }
  return {
    read(pid: number): ProcEntry | undefined {
      const fd = held.get(pid)
      if (fd === undefined) return readStat(pid)
      try {
        const e = parseStatBytes(pid, readSync(fd, buf, 0, buf.length, 0))
        if (e) return e
      } catch {
        // ESRCH: it has ended
      }
      drop(pid, fd)
      return undefined
    },
    /** Holds the stat files of these pids from now on, and closes every other one. */
    keep(pids: ReadonlySet<number>): void {
      for (const [pid, fd] of held) if (!pids.has(pid)) drop(pid, fd)
      for (const pid of pids) {
        if (held.has(pid)) continue
        try {
          held.set(pid, openSync(`/proc/${pid}/stat`, 'r'))
        } catch {
          // it has ended: the next pass will not list it
        }
      }
    },
    /** How many files are held (for tests: the count follows the members). */
    get size() {
      return held.size
    },
  }
}

/** Every this many passes, groupMemberReader reads every process again (see there). */
export const FULL_PASS_EVERY = 12

/**
 * A reader of the members of some process groups, pass after pass, that does not re-read the
 * stat of every process of the host each time: most of a host's processes are not ours, and
 * their stat reads were most of a pass's cost. Each pass lists /proc (one getdents), then reads
 * the stat of (a) every pid it has not seen in the previous listing, (b) every pid last seen in
 * a wanted group (members: their figures are the point), and skips the rest, whose group was
 * read before.
 *
 * What skipping can miss, and why it is bounded: a process joins one of our groups only inside
 * that group's session (each instance is a session of its own, spawned detached), so it was
 * created there after the instance and is new to the listing when first read, unless its pid is
 * one that a process read before had and gave back in between (the pid counter came round: on a
 * host with pid_max 32768 and many short-lived processes, it does every few minutes), or it left
 * its group and came back later. Such a member is counted from the next full pass, which comes
 * every FULL_PASS_EVERY passes (a minute at the default interval); until then its group's
 * figures lack it. (Detecting the counter's wrap from the listing does not work: after a wrap,
 * older processes keep the high pids, and every new pid is below them.)
 * The members' stat files stay open between passes (heldStatReader).
 */
export const groupMemberReader = (
  io: {
    list?: () => string[]
    stats?: Pick<ReturnType<typeof heldStatReader>, 'read' | 'keep'>
  } = {},
): ((pgids: ReadonlySet<number>) => ProcEntry[] | undefined) => {
  const list = io.list ?? (() => readdirSync('/proc'))
  const stats = io.stats ?? heldStatReader()
  /** pid -> its group when last read, for every pid of the last listing. */
  let groupOf = new Map<number, number>()
  let passes = 0
  return (pgids) => {
    if (process.platform !== 'linux' && !io.list) return undefined
    let names: string[]
    try {
      names = list()
    } catch {
      return undefined
    }
    const full = passes++ % FULL_PASS_EVERY === 0
    const next = new Map<number, number>()
    const members: ProcEntry[] = []
    for (const name of names) {
      const c = name.charCodeAt(0)
      if (c < 48 || c > 57) continue // not a pid: self, sys, meminfo...
      const pid = Number(name)
      const known = groupOf.get(pid)
      if (!full && known !== undefined && !pgids.has(known)) {
        next.set(pid, known)
        continue
      }
      const e = stats.read(pid)
      if (!e) continue
      next.set(pid, e.pgrp)
      if (pgids.has(e.pgrp)) members.push(e)
    }
    stats.keep(new Set(members.map((e) => e.pid)))
    groupOf = next
    return members
  }
}

/** Seconds since boot (/proc/uptime): the clock that a process's start time counts on. */
export const readUptimeSeconds = (): number | undefined => {
  try {
    const s = Number(readFileSync('/proc/uptime', 'latin1').split(' ')[0])
    return Number.isFinite(s) ? s : undefined
  } catch {
    return undefined
  }
}

/** The units of /proc's figures: clock ticks a second and bytes a page. */
export interface ProcUnits {
  ticksPerSecond: number
  pageBytes: number
}

/**
 * The kernel's USER_HZ and page size, asked of getconf once (Node has no sysconf). USER_HZ is
 * 100 on every Linux port tandem runs on, and pages are 4 KiB on x86-64 and s390x, but 64 KiB
 * on some arm64 and ppc64le kernels: a wrong guess there would show a sixteenth of the memory.
 * Those defaults stand only where getconf cannot be run.
 */
let units: Promise<ProcUnits> | undefined
export const procUnits = (): Promise<ProcUnits> =>
  (units ??= Promise.all([getconf('CLK_TCK', 100), getconf('PAGESIZE', 4096)]).then(
    ([ticksPerSecond, pageBytes]) => ({ ticksPerSecond, pageBytes }),
  ))

const getconf = (name: string, fallback: number): Promise<number> =>
  new Promise((resolve) => {
    execFile('getconf', [name], { timeout: 5000 }, (err, stdout) => {
      const n = Number(String(stdout).trim())
      resolve(!err && Number.isInteger(n) && n > 0 ? n : fallback)
    })
  })
