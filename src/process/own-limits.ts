import { readFileSync } from 'node:fs'
import type { RlimitValue } from './exec-chain.js'

/** The rows of /proc/<pid>/limits, by prlimit(1) resource name. */
export const LIMIT_ROWS: Record<string, string> = {
  nofile: 'Max open files',
  nproc: 'Max processes',
  core: 'Max core file size',
  memlock: 'Max locked memory',
  as: 'Max address space',
  cpu: 'Max cpu time',
}

/**
 * Soft and hard limits of a process, from /proc/<pid>/limits (Linux), by prlimit(1) resource
 * name; empty where that file cannot be read.
 */
export const processLimits = (
  pid: number | 'self' = 'self',
): Record<string, [RlimitValue, RlimitValue]> => {
  let text: string
  try {
    text = readFileSync(`/proc/${pid}/limits`, 'utf8')
  } catch {
    return {}
  }
  const value = (s: string): RlimitValue => (s === 'unlimited' ? 'unlimited' : Number(s))
  const out: Record<string, [RlimitValue, RlimitValue]> = {}
  for (const [name, row] of Object.entries(LIMIT_ROWS)) {
    const line = text.split('\n').find((l) => l.startsWith(`${row} `))
    const m = line && /^\S.*?\s{2,}(\S+)\s+(\S+)/.exec(line)
    if (m) out[name] = [value(m[1]!), value(m[2]!)]
  }
  return out
}

/** a <= b, where 'unlimited' is above every number. */
export const limitAtMost = (a: RlimitValue, b: RlimitValue): boolean =>
  b === 'unlimited' || (a !== 'unlimited' && a <= b)
