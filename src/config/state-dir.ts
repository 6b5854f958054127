import { dirname, resolve } from 'node:path'

/** Where the control socket, pid records and overrides live, relative to the config file. */
export const DEFAULT_STATE_DIR = '.tandem'

/** `stateDir` as written in `file` (default DEFAULT_STATE_DIR), as an absolute path. */
export const resolveStateDir = (file: string, stateDir = DEFAULT_STATE_DIR): string =>
  resolve(dirname(resolve(file)), stateDir)
