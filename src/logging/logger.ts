import { pino, type Logger } from 'pino'
import pretty from 'pino-pretty'

/**
 * The node's logger: JSON lines on stdout (for systemd's journal, a z/OS job log, a file), or
 * human-readable when stdout is a terminal. pino's `pid` is the supervisor's; a child's pid is
 * `childPid`.
 */
export const createLogger = (options: { level: string; node: string; pretty?: boolean }): Logger => {
  const base = { level: options.level, base: { pid: process.pid, node: options.node } }
  const usePretty = options.pretty ?? process.stdout.isTTY === true
  return usePretty
    ? pino(base, pretty({ colorize: true, sync: true, ignore: 'pid,hostname', translateTime: 'SYS:HH:MM:ss.l' }))
    : pino(base, pino.destination({ dest: 1, sync: true }))
}
