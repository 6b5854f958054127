import { ConfigError, errorMessage, hasCode } from '../errors.js'
import type { EventInput } from './event-stream.js'
import type { RolloutEvent } from './rollout.js'

/** An instance's fields for an event about it (port and pid as they are now), by its id. */
export type InstanceFields = (
  id: string,
) => Pick<EventInput, 'component' | 'instance' | 'port' | 'childPid'>

/**
 * Runs one rollout (`run`, given the progress callback to pass on) and publishes its events:
 * `reload` first for a reload; `config.rejected` when the config file does not validate (ECONFIG:
 * nothing changed); `rollout.started` at its plan, `rollout.replaced` for each instance it
 * replaced, then `rollout.done`, or `rollout.rolledBack` once the instances it had changed are
 * back on their previous definition (EROLLOUT). The replacements the rollback makes are part of
 * `rollout.rolledBack` (its `rolledBack` ids), not `rollout.replaced` events.
 */
export const withRolloutEvents = async <T>(
  what: string,
  configFile: string,
  publish: (e: EventInput) => void,
  instanceFields: InstanceFields,
  run: (progress: (e: RolloutEvent) => void) => Promise<T>,
): Promise<T> => {
  if (what === 'reload')
    publish({ event: 'reload', message: `reload of ${configFile}`, config: configFile })
  let stopped: string | undefined
  const rolledBack: string[] = []
  const progress = (e: RolloutEvent) => {
    switch (e.phase) {
      case 'plan':
        return publish({ event: 'rollout.started', message: `${what}: ${e.message}`, what })
      case 'replaced':
        if (stopped !== undefined || e.id === undefined) return
        return publish({
          event: 'rollout.replaced',
          message: e.message,
          what,
          id: e.id,
          ...instanceFields(e.id),
          ...(e.n !== undefined ? { n: e.n, of: e.of } : {}),
        })
      case 'failed':
        // The rollout's own failure has no id; a rollback step that failed names its instance.
        if (e.id === undefined) stopped ??= e.message
        return
      case 'rollback':
        if (e.id !== undefined) rolledBack.push(e.id)
        return
      case 'done':
        return publish({ event: 'rollout.done', message: `${what}: ${e.message}`, what })
      default:
        return
    }
  }
  try {
    return await run(progress)
  } catch (err) {
    if (hasCode(err, 'ECONFIG'))
      publish({
        event: 'config.rejected',
        // One line: a ConfigError lists its problems one a line.
        message: `${what} refused: ${errorMessage(err).replace(/\n\s*/g, ' ')}`,
        what,
        config: configFile,
        ...(err instanceof ConfigError ? { problems: err.problems } : {}),
      })
    else if (hasCode(err, 'EROLLOUT'))
      publish({
        event: 'rollout.rolledBack',
        message: `${what} rolled back: ${errorMessage(err)}`,
        what,
        rolledBack,
      })
    throw err
  }
}
