import { readEnvFiles } from './env-file.js'
import { accountEnv, type ExecSpec } from './exec-chain.js'

/**
 * The environment an instance adds to the supervisor's: its account's HOME, USER, LOGNAME and
 * SHELL, then its env files, read now (so a rotated secret needs a restart, not a reload), then
 * its env. Throws (ECONFIG) naming the env file that is missing, unsafe or malformed.
 */
export const instanceEnv = (spec: {
  env: Record<string, string>
  envFiles: readonly string[]
  exec: ExecSpec
}): Record<string, string> => ({
  ...accountEnv(spec.exec.account),
  ...readEnvFiles(spec.envFiles),
  ...spec.env,
})
