import { join } from 'node:path'

/** The control socket of the supervisor that owns a state dir. */
export const socketPath = (stateDir: string): string => join(stateDir, 'tandem.sock')
