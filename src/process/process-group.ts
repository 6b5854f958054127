import { readdirSync } from 'node:fs'
import type { Clock } from '../seams/clock.js'
import { isLive, readStat } from './proc-table.js'

/**
 * A process group id that names one group of ours. kill(-1) signals every process we may
 * signal, kill(-0) our own group, and group 1 is init's: an unknown or bogus pid must never
 * turn into one of those.
 */
export const isGroupId = (pgid: number | undefined): pgid is number =>
  Number.isInteger(pgid) && (pgid as number) > 1

/**
 * True while a live (not zombie) process of the group exists. A killed orphan stays a zombie
 * until its new parent reaps it, which some init processes never do; kill(-pgid, 0) counts it,
 * and a stop would then wait out its whole timeout. So on Linux the group is read from /proc.
 */
export const groupAlive = (pgid: number): boolean => {
  if (!isGroupId(pgid)) return false
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
  if (!isGroupId(pid)) return false
  try {
    process.kill(pid, 0)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false
  }
  const s = process.platform === 'linux' ? readStat(pid) : undefined
  return s === undefined ? process.platform !== 'linux' : isLive(s)
}

/** Sends a signal to a whole process group; false when the group is gone (or not a group). */
export const signalGroup = (pgid: number, signal: NodeJS.Signals): boolean => {
  if (!isGroupId(pgid)) return false
  try {
    process.kill(-pgid, signal)
    return true
  } catch {
    return false
  }
}

/** What stopping a process group needs from the OS: a seam, so that its users test without one. */
export interface GroupOps {
  signal(pgid: number, signal: NodeJS.Signals): boolean
  alive(pgid: number): boolean
}

export const osGroups: GroupOps = { signal: signalGroup, alive: groupAlive }

/** How often a stop polls for the rest of a process group to be gone. */
export const GROUP_POLL_MS = 20
/** How long a SIGKILLed group may take to be gone (reaped) before we stop waiting. */
export const REAP_MS = 5_000

export interface TerminateOptions {
  /** The stop signal, sent first (unless `signalled`). */
  signal: NodeJS.Signals
  /** How long the group has after it, before SIGKILL. */
  timeoutMs: number
  clock: Clock
  ops?: GroupOps
  /** The stop signal was already sent (the deadline still counts from now). */
  signalled?: boolean
  /**
   * Settles when the group's leader exits (our child): waited on without polling until then;
   * the rest of the group is polled for after it.
   */
  leaderExited?: Promise<unknown>
}

/**
 * The one way tandem stops a process group, everywhere: the stop signal, a deadline, SIGKILL to
 * whatever is left, and a bounded wait until it is gone (a port it held is free again). Resolves
 * with whether SIGKILL was needed. A pid that is not a group of ours (see isGroupId) is left
 * alone.
 */
export const terminateGroup = async (
  pgid: number,
  o: TerminateOptions,
): Promise<{ killed: boolean }> => {
  const ops = o.ops ?? osGroups
  const { clock } = o
  if (!isGroupId(pgid)) return { killed: false }
  if (!o.signalled) ops.signal(pgid, o.signal)
  const deadline = clock.monotonic() + o.timeoutMs
  /** The leader's exit, or `ms` on the clock, whichever comes first. */
  const leaderGone = async (ms: number) => {
    if (!o.leaderExited) return
    let cancel = () => {}
    await Promise.race([o.leaderExited, new Promise<void>((r) => (cancel = clock.after(ms, r)))])
    cancel()
  }
  const waitGone = async (until: number) => {
    while (ops.alive(pgid) && clock.monotonic() < until) await clock.sleep(GROUP_POLL_MS)
  }
  await leaderGone(o.timeoutMs)
  await waitGone(deadline)
  if (!ops.alive(pgid)) return { killed: false }
  ops.signal(pgid, 'SIGKILL')
  await leaderGone(REAP_MS)
  await waitGone(clock.monotonic() + REAP_MS)
  return { killed: true }
}
