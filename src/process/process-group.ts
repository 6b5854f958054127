import { readdirSync } from 'node:fs'
import { isLive, readStat } from './proc-table.js'

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
    const s = readStat(Number(pid))
    return s !== undefined && s.pgrp === pgid && isLive(s)
  })
}

/** True while the process exists and is not a zombie. */
export const processAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false
  }
  const s = process.platform === 'linux' ? readStat(pid) : undefined
  return s === undefined ? process.platform !== 'linux' : isLive(s)
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
