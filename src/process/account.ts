import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { userInfo } from 'node:os'
import { SETPRIV } from './exec-chain.js'

/** One entry of the user database (passwd), as getent(1) reports it through NSS. */
export interface PasswdEntry {
  name: string
  uid: number
  gid: number
  home: string
  shell: string
}

/** One entry of the group database. */
export interface GroupEntry {
  name: string
  gid: number
}

/**
 * `getent <db> <key>`: the entry's fields, or undefined when there is none (exit 2). getent asks
 * NSS, so accounts from LDAP or SSSD are found as well as those in /etc/passwd; a numeric key
 * is looked up as an id.
 */
const getent = (db: 'passwd' | 'group', key: string): string[] | undefined => {
  try {
    const out = execFileSync('getent', [db, key], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: 10_000,
    })
    const first = out.split('\n')[0]
    return first ? first.split(':') : undefined
  } catch {
    return undefined
  }
}

/** The passwd entry of a user name or uid, if the host knows it. */
export const lookupUser = (user: string | number): PasswdEntry | undefined => {
  const f = getent('passwd', String(user))
  if (!f || f.length < 7) return undefined
  return { name: f[0]!, uid: Number(f[2]), gid: Number(f[3]), home: f[5]!, shell: f[6]! }
}

/** The group entry of a group name or gid, if the host knows it. */
export const lookupGroup = (group: string | number): GroupEntry | undefined => {
  const f = getent('group', String(group))
  if (!f || f.length < 3) return undefined
  return { name: f[0]!, gid: Number(f[2]) }
}

/** Linux capability numbers (linux/capability.h). */
const CAP_SETGID = 6
const CAP_SETUID = 7

/** The supervisor's effective capabilities, from /proc/self/status (0n where there is none). */
const effectiveCapabilities = (): bigint => {
  try {
    const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))
    return m ? BigInt(`0x${m[1]}`) : 0n
  } catch {
    return 0n
  }
}

/**
 * Why this supervisor cannot run a child as another user, or undefined when it can: it needs
 * Linux, util-linux setpriv (which switches ids and groups right before the program runs) and
 * root or both CAP_SETUID and CAP_SETGID.
 */
export const switchUserProblem = (): string | undefined => {
  if (process.platform !== 'linux') {
    return `switching users is implemented on Linux only (this is ${process.platform})`
  }
  if (!existsSync(SETPRIV)) return `${SETPRIV} (util-linux) is not installed`
  if (process.geteuid?.() === 0) return undefined
  const caps = effectiveCapabilities()
  const missing = [
    ...((caps >> BigInt(CAP_SETUID)) & 1n ? [] : ['CAP_SETUID']),
    ...((caps >> BigInt(CAP_SETGID)) & 1n ? [] : ['CAP_SETGID']),
  ]
  return missing.length
    ? `the supervisor runs as uid ${process.geteuid?.()} without ${missing.join(' and ')}: only root (or a supervisor given those capabilities, e.g. AmbientCapabilities= in its unit) may run a child as another user`
    : undefined
}

let ownName: string | undefined
/** The supervisor's own user name (its uid where the host has no name for it). */
export const supervisorUser = (): string => {
  if (ownName === undefined) {
    try {
      ownName = userInfo().username
    } catch {
      ownName = String(process.geteuid?.() ?? '')
    }
  }
  return ownName
}
