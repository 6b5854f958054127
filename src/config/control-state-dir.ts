import { readFile } from 'node:fs/promises'
import { resolveStateDir } from './state-dir.js'

/**
 * The state dir a config file names (its control socket is there), for the commands that only
 * talk to a running supervisor. It reads `stateDir` alone, without the schema: building the
 * schema is most of a command's start-up (about 60 % of `tandem switchover` before this), and
 * an operator must be able to ask the running supervisor for its status while the file is being
 * edited. A file whose `stateDir` cannot be read this way (unreadable, not JSON, not a string,
 * given twice) goes through the whole validation instead, for its complete error (ECONFIG,
 * exit 78).
 */
export const controlStateDir = async (file: string): Promise<string> => {
  const text = await readFile(file, 'utf8').catch(() => undefined)
  let value: unknown
  try {
    // A second "stateDir" (JSON.parse would keep the last) is a config error: the whole
    // validation names both places. A component or value named "stateDir" costs just that validation.
    value =
      text === undefined || (text.match(/"stateDir"/g)?.length ?? 0) > 1
        ? undefined
        : JSON.parse(text)
  } catch {
    value = undefined
  }
  const dir =
    typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as { stateDir?: unknown }).stateDir
      : null
  if (dir === undefined || (typeof dir === 'string' && dir !== ''))
    return resolveStateDir(file, dir)

  // Loaded only here: building the schema is what this function spares the other commands.
  const { loadConfig } = await import('./load-config.js')
  return loadConfig(file, process.env, { host: 'none' }).stateDir
}
