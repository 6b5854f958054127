import type { EventName } from '../events.js'
import type { ExecSpec } from '../process/exec-chain.js'
import type { ComponentConfig, ReadinessConfig, SocketConfig } from './schema.js'

/** One instance the config asks for: everything needed to spawn, probe, restart and stop it. */
export interface InstanceSpec {
  component: string
  index: number
  /** `component#index`, the instance's name in targets, logs and status. */
  id: string
  port: number | undefined
  argv: string[]
  env: Record<string, string>
  /** Keys of `env` whose values are secrets: shown as REDACTED wherever the spec is printed. */
  secretEnv: string[]
  /**
   * Env files (absolute paths, top level first), read at every spawn: their values are never
   * part of the spec, so nothing that prints a spec can show them.
   */
  envFiles: string[]
  /** Account, umask and resource limits of the child. */
  exec: ExecSpec
  cwd: string
  host: string
  /** A listening socket tandem holds for the instance's whole life (absent: the child binds). */
  socket?: SocketConfig
  readiness: ReadinessConfig
  restart: ComponentConfig['restart']
  backoff: ComponentConfig['backoff']
  crashLoop: ComponentConfig['crashLoop']
  stop: ComponentConfig['stop']
  health: ComponentConfig['health']
  maxMemoryMb: number | undefined
  /** With ha: every node, or only the active one. */
  runOn: ComponentConfig['runOn']
  standby: ComponentConfig['standby']
  activate: ComponentConfig['activate']
}

/** Where a cluster's lease is held, with paths resolved against the config file. */
export type HaBackendSpec =
  | { type: 'dir'; sharedDir: string }
  | {
      type: 'etcd'
      endpoints: string[]
      /** Without the trailing slash: `/tandem/<name>` by default. */
      prefix: string
      tls?: { ca?: string; cert?: string; key?: string }
      auth?: { user: string; passwordFile: string }
    }
  | { type: 'external' }

/** Hot standby settings, with the backend's paths resolved. */
export interface HaSpec {
  name: string
  backend: HaBackendSpec
  renewMs: number
  selfFenceMs: number
  takeoverMs: number
  pollMs: number
}

export interface ComponentSpec {
  name: string
  dependsOn: string[]
  rollout: ComponentConfig['rollout']
  instances: InstanceSpec[]
}

/** The unified log's settings, with `dir` resolved. */
export interface LogsSpec {
  level: string
  dir: string
  stdout: boolean
  perInstance: boolean
  maxLineBytes: number
  rotate: { maxBytes: number; keep: number }
  syslog?: SyslogSpec
}

/** `logs.syslog`, normalized: the port given or the protocol's, the CA file resolved. */
export interface SyslogSpec {
  host: string
  port: number
  protocol: 'tcp' | 'udp' | 'tls'
  facility: string
  minLevel: string
  match?: { components?: string[]; messages?: string[] }
  format: 'rfc5424'
  caFile?: string
  maxBufferBytes: number
}

/** The normalized config: what this node should run, in dependency order. */
/** A hook: `command` run on the events named in `on`, of `target`'s instances only if given. */
export interface HookSpec {
  on: EventName[]
  /** Only events of this component's instances, or of one of them (index). */
  target?: { component: string; index?: number }
  command: string[]
  /** Where it runs: the config file's directory. */
  cwd: string
  timeoutMs: number
  maxQueued: number
}

export interface Plan {
  node: string
  configFile: string
  stateDir: string
  logs: LogsSpec
  metrics: { intervalMs: number; idleIntervalMs: number }
  control: {
    http?: { host: string; port: number; allowedHosts?: string[] }
    agent?: { host: string; port: number }
  }
  watchConfig: boolean
  ha: HaSpec | undefined
  /** Commands run on events, in the config's order (their index names them in the log). */
  hooks: HookSpec[]
  /** Dependencies before their dependents. */
  components: ComponentSpec[]
}

export const planInstances = (plan: Plan): InstanceSpec[] =>
  plan.components.flatMap((c) => c.instances)

/** Every fixed port of the plan. */
export const planPorts = (plan: Plan): number[] =>
  planInstances(plan).flatMap((i) => (i.port === undefined ? [] : [i.port]))
