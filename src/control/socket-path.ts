import { join } from 'node:path'
import { ConfigError } from '../errors.js'
import type { Plan } from '../config/plan.js'

/** The control socket of the supervisor that owns a state dir. */
export const socketPath = (stateDir: string): string => join(stateDir, 'tandem.sock')

/** sun_path is 108 bytes on Linux (104 on BSD and z/OS), including the terminating NUL. */
export const MAX_SOCKET_PATH_BYTES = 103

/**
 * A long state dir path would make listen() silently bind a truncated socket path. This is a
 * fact of the host, not of the file's content, so it is checked where the plan is used
 * (`tandem start`, `tandem validate`), as a config error on `stateDir`.
 */
export const checkSocketPath = (plan: Plan): void => {
  const socket = socketPath(plan.stateDir)
  const bytes = Buffer.byteLength(socket)
  if (bytes > MAX_SOCKET_PATH_BYTES) {
    throw new ConfigError(plan.configFile, [
      {
        path: 'stateDir',
        message: `the control socket ${socket} would be ${bytes} bytes long; Unix sockets allow at most ${MAX_SOCKET_PATH_BYTES}: choose a shorter stateDir`,
      },
    ])
  }
}
