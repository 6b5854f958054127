import type { EventInput } from '../events.js'
import type { WriterStatus } from '../status.js'

/**
 * Follows the log's destinations (files, stdout, syslog) as the log's thread reports them and
 * publishes each change of health once: `log.unwritable` when one gets an error, and
 * `log.recovered` when it is written again, with the lines dropped meanwhile.
 */
export const logHealthEvents = (
  publish: (e: EventInput) => void,
): ((status: readonly WriterStatus[]) => void) => {
  const failing = new Map<string, { error: string; dropped: number }>()
  return (status) => {
    for (const w of status) {
      const was = failing.get(w.path)
      if (w.error !== undefined && !was) {
        failing.set(w.path, { error: w.error, dropped: w.droppedLines })
        publish({
          event: 'log.unwritable',
          message: `cannot write ${w.path}: ${w.error}`,
          path: w.path,
          error: w.error,
        })
      } else if (w.error === undefined && was) {
        failing.delete(w.path)
        const dropped = Math.max(0, w.droppedLines - was.dropped)
        publish({
          event: 'log.recovered',
          message: `writing ${w.path} again after "${was.error}"; ${dropped ? `${dropped} lines were dropped meanwhile` : 'no line lost'}`,
          path: w.path,
          droppedLines: dropped,
        })
      }
    }
  }
}
