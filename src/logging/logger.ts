import { pino, type Logger } from 'pino'
import pretty from 'pino-pretty'

/**
 * The node's logger: JSON lines on stdout (for systemd's journal, a z/OS job log, a file), or
 * human-readable when stdout is a terminal. pino's `pid` is the supervisor's; a child's pid is
 * `childPid`.
 */
export const createLogger = (options: {
  level: string
  node: string
  pretty?: boolean
}): Logger => {
  const base = { level: options.level, base: { pid: process.pid, node: options.node } }
  const usePretty = options.pretty ?? process.stdout.isTTY === true
  return usePretty
    ? pino(
        base,
        pretty({
          colorize: true,
          sync: true,
          singleLine: true,
          translateTime: 'SYS:HH:MM:ss.l',
          // A child's line shows where it came from; an event's message already names its instance.
          messageFormat: '{if stream}{component}#{instance} {stream} | {end}{msg}',
          ignore: 'pid,hostname,node,event,from,component,instance,port,childPid,stream,delayMs',
        }),
      )
    : pino(base, pino.destination({ dest: 1, sync: true }))
}
