import type { Logger } from 'pino'
import type { EventName, TandemEvent } from './event-stream.js'
import { describeExit, type InstanceEvent } from './instance.js'

/**
 * One instance event as a log record; `seq` is the number of the stream event it was published
 * as (none for those the stream does not publish: starting, stopping), so that a log line and
 * `tandem events` can be matched.
 */
export const logInstanceEvent = (log: Logger, e: InstanceEvent, seq?: number): void => {
  const { event, id, exit, stderrTail, ...rest } = e
  const fields = {
    event,
    ...rest,
    ...(seq !== undefined ? { seq } : {}),
    ...(exit ? { exit } : {}),
    ...(stderrTail?.length ? { stderrTail } : {}),
  }
  switch (event) {
    case 'failed':
      return log.error(fields, `${id} failed: ${e.reason}`)
    case 'exited':
      return exit && exit.reason !== 'exited'
        ? log.warn(fields, `${id} did not start: ${describeExit(exit)}`)
        : log.warn(fields, `${id} exited: ${exit ? describeExit(exit) : ''}`)
    case 'backoff':
      return log.warn(fields, `${id} restarting in ${e.delayMs} ms`)
    case 'spawned':
      return log.info(fields, `${id} spawned (pid ${e.childPid})`)
    case 'restart':
      return log.warn(fields, `${id} restarting: ${e.reason}`)
    case 'retired':
      return log.info(fields, `${id}: pid ${e.childPid} ${e.reason}`)
    case 'reactivated':
      return log.warn(
        fields,
        `${id} active again in epoch ${e.epoch} after its deadline had lapsed for ${e.lapsedMs} ms (a lease message came late)`,
      )
    default:
      return log.info(fields, `${id} ${event}`)
  }
}

/**
 * The stream events whose log record is written from the stream, with its level: those no
 * other part logs as it happens (an instance's, a rollout's steps, the lease's role changes and
 * the log files' problems are logged where they happen, with more detail, and carry no record
 * of their own here).
 */
export const LOGGED_FROM_STREAM: Partial<Record<EventName, 'info' | 'warn' | 'error'>> = {
  reload: 'info',
  'config.rejected': 'error',
  'rollout.rolledBack': 'error',
  switchover: 'info',
}

/** A stream listener that logs the events of LOGGED_FROM_STREAM, with their fields and `seq`. */
export const streamEventLogger =
  (log: Logger) =>
  (e: TandemEvent): void => {
    const level = LOGGED_FROM_STREAM[e.event]
    if (!level) return
    // node and time are the log record's own fields.
    const fields: Record<string, unknown> = { ...e }
    for (const k of ['message', 'node', 'time']) delete fields[k]
    log[level](fields, e.message)
  }
