import { existsSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import type { ConfigProblem } from '../errors.js'
import { errorMessage } from '../errors.js'
import { cgroupProblem, neededControllers } from '../process/cgroup.js'
import { lookupGroup, lookupUser, switchUserProblem } from '../process/account.js'
import { readEnvFiles } from '../process/env-file.js'
import { PRLIMIT, type ChildAccount, type RlimitValue } from '../process/exec-chain.js'
import { limitAtMost, processLimits } from '../process/own-limits.js'
import type { Config } from './schema.js'

/** What the host's checks found out and the plan needs: each component's account. */
export interface HostFacts {
  accounts: Map<string, ChildAccount>
}

/** The env files of a component, top level first, as absolute paths. */
export const envFilesOf = (config: Config, component: string, base: string): string[] => {
  const list = (v: string | string[] | undefined) => (v === undefined ? [] : [v].flat())
  return [...list(config.envFile), ...list(config.components[component]?.envFile)].map((f) =>
    resolve(base, f),
  )
}

/** [soft, hard] of a configured limit. */
export const limitPair = (
  v: RlimitValue | [RlimitValue, RlimitValue],
): [RlimitValue, RlimitValue] => (Array.isArray(v) ? v : [v, v])

/**
 * Checks a valid config against this host: accounts exist and the supervisor may switch to
 * them, limits fit under the supervisor's own hard limits, env files are safe and well formed.
 * Each problem names the JSON path and the value; nothing here prints an env file's content.
 */
export const checkHost = (
  config: Config,
  file: string,
  options: { cgroups?: boolean } = {},
): { problems: ConfigProblem[]; facts: HostFacts } => {
  const problems: ConfigProblem[] = []
  const accounts = new Map<string, ChildAccount>()
  const base = dirname(file)
  const own = processLimits()
  // Top-level env files once, under their own path; components' below.
  const topFiles = envFilesOf(config, '', base)
  topFiles.forEach((f, i) => {
    try {
      readEnvFiles([f])
    } catch (err) {
      const at = Array.isArray(config.envFile) ? `envFile[${i}]` : 'envFile'
      problems.push({ path: at, message: errorMessage(err) })
    }
  })
  for (const [name, c] of Object.entries(config.components)) {
    const at = `components.${name}`
    if (c.envFile !== undefined) {
      ;[c.envFile].flat().forEach((f, i) => {
        try {
          readEnvFiles([resolve(base, f)])
        } catch (err) {
          problems.push({
            path: Array.isArray(c.envFile) ? `${at}.envFile[${i}]` : `${at}.envFile`,
            message: `${name}: ${errorMessage(err)}`,
          })
        }
      })
    }
    if (c.user !== undefined || c.group !== undefined) {
      const account = resolveAccount(name, c.user, c.group, at, problems)
      if (account) accounts.set(name, account)
    }
    if (c.cgroup && options.cgroups !== false) {
      const problem = cgroupProblem(neededControllers(c.cgroup))
      if (problem) {
        problems.push({
          path: `${at}.cgroup`,
          message: `${name} asks for cgroup settings, but ${problem}`,
        })
      }
    }
    const limits = Object.entries(c.limits).filter(([, v]) => v !== undefined)
    if (limits.length && !existsSync(PRLIMIT)) {
      problems.push({
        path: `${at}.limits`,
        message: `${name} sets resource limits, which need ${PRLIMIT} (util-linux); it is not installed`,
      })
    }
    for (const [limit, v] of limits) {
      const [soft, hard] = limitPair(v)
      const path = `${at}.limits.${limit}`
      if (!limitAtMost(soft, hard)) {
        problems.push({
          path,
          message: `expected the soft limit at most the hard limit; got [${soft}, ${hard}]`,
        })
        continue
      }
      const ownHard = own[limit]?.[1]
      if (ownHard !== undefined && !limitAtMost(hard, ownHard)) {
        problems.push({
          path,
          message: `${name}: hard limit ${hard} is above the supervisor's own hard limit ${ownHard}; expected at most ${ownHard}`,
        })
      }
    }
  }
  return { problems, facts: { accounts } }
}

/** The account a component asks for, or undefined with the problems pushed. */
const resolveAccount = (
  name: string,
  user: string | number | undefined,
  group: string | number | undefined,
  at: string,
  problems: ConfigProblem[],
): ChildAccount | undefined => {
  const cannot = switchUserProblem()
  if (cannot) {
    problems.push({
      path: `${at}.${user !== undefined ? 'user' : 'group'}`,
      message: `${name} asks to run as ${user !== undefined ? `user ${JSON.stringify(user)}` : `group ${JSON.stringify(group)}`}, but ${cannot}`,
    })
    return undefined
  }
  const numeric = (v: string | number) =>
    typeof v === 'number' ? v : /^[0-9]+$/.test(v) ? Number(v) : undefined
  const entry = lookupUser(user ?? process.geteuid!())
  const uid = entry?.uid ?? (user === undefined ? undefined : numeric(user))
  if (uid === undefined) {
    problems.push({
      path: `${at}.user`,
      message: `${name}: unknown user ${JSON.stringify(user)} (getent passwd finds no such account)`,
    })
  }
  const gid = group === undefined ? entry?.gid : (lookupGroup(group)?.gid ?? numeric(group))
  if (group !== undefined && gid === undefined) {
    problems.push({
      path: `${at}.group`,
      message: `${name}: unknown group ${JSON.stringify(group)} (getent group finds no such group)`,
    })
  }
  if (uid === undefined || (group !== undefined && gid === undefined)) return undefined
  if (gid === undefined) {
    problems.push({
      path: `${at}.group`,
      message: `${name}: uid ${uid} has no passwd entry, so it has no primary group; expected a group`,
    })
    return undefined
  }
  return {
    user: entry?.name ?? String(uid),
    uid,
    gid,
    home: entry?.home ?? '/',
    shell: entry?.shell ?? '/bin/sh',
    initGroups: entry !== undefined,
  }
}
