import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'

/**
 * An identity for a process that survives pid reuse: its start time as the OS reports it
 * (Linux: clock ticks since boot from /proc/<pid>/stat; elsewhere `ps -o lstart`).
 * Returns undefined when the process does not exist.
 */
export const processStartTime = (pid: number): string | undefined => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // The command name (field 2) may contain spaces and parentheses: count fields after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return fields[19] // field 22 of the whole line
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && process.platform === 'linux')
      return undefined
  }
  try {
    const out = execFileSync('ps', ['-o', 'lstart=', '-p', String(pid)], {
      encoding: 'utf8',
    }).trim()
    return out || undefined
  } catch {
    return undefined
  }
}
