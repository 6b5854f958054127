import { readdirSync, readFileSync } from 'node:fs'

/** Fields 3 (state) and 5 (pgrp) of /proc/<pid>/stat, after the command name. */
const statFields = (pid: string): { state: string; pgrp: number } | undefined => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return { state: f[0]!, pgrp: Number(f[2]) }
  } catch {
    return undefined
  }
}

/**
 * True while a live (not zombie) process of the group exists. A killed orphan stays a zombie
 * until its new parent reaps it, which some init processes never do; kill(-pgid, 0) counts it,
 * and a stop would then wait out its whole timeout. So on Linux the group is read from /proc.
 */
export const groupAlive = (pgid: number): boolean => {
  try {
    process.kill(-pgid, 0)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false
  }
  if (process.platform !== 'linux') return true
  let pids: string[]
  try {
    pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d))
  } catch {
    return true
  }
  return pids.some((pid) => {
    const s = statFields(pid)
    return s !== undefined && s.pgrp === pgid && s.state !== 'Z' && s.state !== 'X'
  })
}

/**
 * The live processes of a group (Linux /proc); elsewhere just the leader, the only one we can
 * name without /proc.
 */
export const groupMembers = (pgid: number): number[] => {
  if (process.platform !== 'linux') return [pgid]
  let pids: string[]
  try {
    pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d))
  } catch {
    return [pgid]
  }
  return pids
    .filter((pid) => {
      const s = statFields(pid)
      return s !== undefined && s.pgrp === pgid && s.state !== 'Z' && s.state !== 'X'
    })
    .map(Number)
}

/** True while the process exists and is not a zombie. */
export const processAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false
  }
  const s = process.platform === 'linux' ? statFields(String(pid)) : undefined
  return s === undefined ? process.platform !== 'linux' : s.state !== 'Z' && s.state !== 'X'
}

/** Sends a signal to a whole process group; false when the group is gone. */
export const signalGroup = (pgid: number, signal: NodeJS.Signals): boolean => {
  try {
    process.kill(-pgid, signal)
    return true
  } catch {
    return false
  }
}
