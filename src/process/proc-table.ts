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
 * Parses one /proc/<pid>/stat line. The command name (field 2) is in parentheses and may hold
 * spaces and parentheses itself, so the fields are counted after the last ')'.
 */
export const parseStat = (pid: number, line: string): ProcEntry | undefined => {
  const f = line.slice(line.lastIndexOf(')') + 2).split(' ')
  // After the name: f[0] state (field 3), f[1] ppid, f[2] pgrp, f[11] utime (field 14),
  // f[12] stime, f[19] starttime (field 22), f[21] rss (field 24).
  if (f.length < 22) return undefined
  return {
    pid,
    state: f[0]!,
    ppid: Number(f[1]),
    pgrp: Number(f[2]),
    cpuTicks: Number(f[11]) + Number(f[12]),
    startTicks: Number(f[19]),
    rssPages: Number(f[21]),
  }
}

/**
 * A stat line is a few hundred bytes (the name is at most 16): one buffer, reused by every read
 * of a pass, instead of readFileSync's stat, growing buffer and second read to find the end.
 */
const buf = Buffer.alloc(4096)

/** One process's stat, or undefined when it is gone (or not ours to read). */
export const readStat = (pid: number): ProcEntry | undefined => {
  let fd: number
  try {
    fd = openSync(`/proc/${pid}/stat`, 'r')
  } catch {
    return undefined // exited between the listing and the open
  }
  try {
    const n = readSync(fd, buf, 0, buf.length, 0)
    return parseStat(pid, buf.toString('latin1', 0, n))
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
