/**
 * tandem's programmatic API (`import { loadConfig } from 'tandem'`): what a program embedding
 * tandem needs, and nothing of its internals. Check and read a config as `tandem validate` does,
 * run the supervisor as `tandem start` does, ask a running one over its control socket as the
 * other commands do, and tell errors apart by their stable `code`. The child helper is a separate
 * entry, `tandem/child`, so that a child program loads none of this.
 */

// Config: read, validate and normalize (ConfigError, code ECONFIG, lists every problem).
export { buildPlan, loadConfig, validateConfig } from './config/load-config.js'
export {
  planInstances,
  planPorts,
  type ComponentSpec,
  type HaSpec,
  type InstanceSpec,
  type LogsSpec,
  type Plan,
} from './config/plan.js'
export type { ComponentConfig, Config } from './config/schema.js'

// The supervisor, in this process: it handles SIGTERM, SIGINT, SIGHUP and SIGUSR2 while it runs.
export { runSupervisor, type SupervisorOptions } from './run-supervisor.js'

// A running supervisor: `controlRequest(plan.stateDir, 'GET', '/status')` answers a StatusReply.
export { controlRequest } from './control/client.js'
export type { StatusReply } from './status.js'
export type { InstanceStatus } from './status.js'
export type { InstanceState, ExitRecord } from './status.js'

// Errors: match them by `code` (hasCode), not by class.
export { ConfigError, hasCode, TandemError, type ConfigProblem, type ErrorCode } from './errors.js'
