import type { TandemEvent } from './event-stream.js'

/**
 * The environment a hook runs with: the supervisor's own (PATH, HOME...) without the TANDEM_*
 * variables it may have inherited, then TANDEM_CONFIG (the config file, so that a hook can run
 * `tandem status`), TANDEM_EVENT (the name), TANDEM_EVENT_JSON (the whole event, one line),
 * TANDEM_SEQ, TANDEM_NODE and, for an instance's event, its variables: TANDEM_COMPONENT,
 * TANDEM_INSTANCE, TANDEM_PORT and TANDEM_PID (the child's). Never an instance's env, env files
 * or secrets: a hook is not the instance, and the event holds none of them.
 */
export const hookEnv = (
  base: NodeJS.ProcessEnv,
  e: TandemEvent,
  configFile: string,
): NodeJS.ProcessEnv => ({
  ...Object.fromEntries(Object.entries(base).filter(([k]) => !k.startsWith('TANDEM_'))),
  TANDEM_CONFIG: configFile,
  TANDEM_EVENT: e.event,
  TANDEM_EVENT_JSON: JSON.stringify(e),
  TANDEM_SEQ: String(e.seq),
  TANDEM_NODE: e.node,
  ...(e.component !== undefined ? { TANDEM_COMPONENT: e.component } : {}),
  ...(e.instance !== undefined ? { TANDEM_INSTANCE: String(e.instance) } : {}),
  ...(e.port !== undefined ? { TANDEM_PORT: String(e.port) } : {}),
  ...(e.childPid !== undefined ? { TANDEM_PID: String(e.childPid) } : {}),
})
