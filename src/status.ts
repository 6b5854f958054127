/**
 * What a supervisor reports of itself: `GET /status` on the control socket and HTTP, the load
 * balancer agent, Prometheus, systemd's status line and `tandem status` all read these shapes.
 * Types only, depending on nothing above config/: the modules that produce them (supervisor/,
 * ha/, logging/) and those that read them (control/, ops/, cli/) both point down here.
 */
import type { HaBackendSpec } from './config/plan.js'

/**
 * The lifecycle of one instance.
 * - stopped:  not running and not wanted running now (initial state, operator stop, clean exit).
 * - starting: port checked, process spawned, waiting for readiness.
 * - ready:    readiness passed: serving.
 * - stopping: stop signal sent to its process group; SIGKILL follows after stop.timeoutMs.
 * - exited:   the process ended (or the start failed); the restart policy decides what follows.
 * - backoff:  waiting for the restart delay.
 * - failed:   given up (crash loop, spawn error, restart "never"); an operator restart clears it.
 */
export type InstanceState =
  'stopped' | 'starting' | 'ready' | 'stopping' | 'exited' | 'backoff' | 'failed'

/**
 * How a run ended:
 * - exited: the process ended on its own (code or signal);
 * - stopped: we stopped it on purpose (operator, shutdown): never a failure;
 * - not-ready: it did not become ready within its readiness timeout, so we stopped it;
 * - port-in-use: its port was held by another process, so it was not spawned;
 * - spawn-error: the program could not be started (ENOENT, EACCES);
 * - memory: we stopped it because its RSS stayed above maxMemoryMb;
 * - unhealthy: we stopped it because it failed its liveness check while running;
 * - oom: the kernel's OOM killer killed it inside its cgroup (cgroup.memoryMax).
 */
export type EndReason =
  | 'exited'
  | 'stopped'
  | 'not-ready'
  | 'port-in-use'
  | 'spawn-error'
  | 'memory'
  | 'unhealthy'
  | 'oom'

/** Why a run ended: one record drives the restart decision, the log line and `status`. */
export interface ExitRecord {
  reason: EndReason
  code: number | null
  signal: string | null
  /** It ignored the stop signal and its group was killed after stop.timeoutMs. */
  killedAfterTimeout: boolean
  /** Monotonic ms the process ran (0 when it never ran). */
  uptimeMs: number
  /** Human detail: the spawn error, the port holder, the readiness probe's last error. */
  detail?: string
}

/** Status of one instance as `tandem status` shows it. */
export interface InstanceStatus {
  id: string
  component: string
  index: number
  port: number | undefined
  /** The account its process runs as: its component's user, else the supervisor's. */
  user: string
  pid: number | undefined
  state: InstanceState
  restarts: number
  uptimeMs: number | undefined
  lastExit: ExitRecord | undefined
  reason: string | undefined
  cpuPercent?: number
  rssBytes?: number
  /** Being drained before a rollout stops it: load balancers should send it nothing new. */
  draining?: boolean
}

/** One log destination (file or stdout) and whether it can be written. */
export interface WriterStatus {
  path: string
  /** Set while the destination cannot be written; cleared when writing resumes. */
  error?: string
  /** Epoch ms when the current error began. */
  errorSince?: number
  /** Lines dropped because the destination stayed unwritable past `maxBufferBytes`. */
  droppedLines: number
}

/** What a node writes of itself for the others to see (presence). */
export interface PresenceRecord {
  node: string
  pid: number
  seq: number
  role: string
  epoch: number
}

/** A peer as this node sees it: its last record, and how long ago it last changed (own clock). */
export interface Peer extends PresenceRecord {
  lastChangeAgoMs: number
}

/** One etcd member as the last health check saw it. */
export interface EndpointHealth {
  endpoint: string
  /** Undefined until the first check has answered. */
  ok?: boolean
  leader?: boolean
  version?: string
  error?: string
}

/** Where a cluster's lease is held. */
export interface BackendStatus {
  type: HaBackendSpec['type']
  sharedDir?: string
  prefix?: string
  endpoints?: EndpointHealth[]
}

/** What status shows of the cluster. */
export interface ClusterStatus {
  name: string
  epoch: number
  /** Where the lease is held (the shared dir, etcd and its members' health, or external). */
  backend: BackendStatus
  /** On a standby: the epoch it watches, and how long its heartbeat has not changed. */
  heartbeat?: { epoch: number; quietMs: number }
  /** The other nodes seen (shared dir or etcd), with the age of their last presence change. */
  peers: Peer[]
}

/** `GET /status`. */
export interface StatusReply {
  node: string
  role: string
  cluster?: ClusterStatus
  pid: number
  config: string
  instances: (InstanceStatus & { stoppedByOperator: boolean })[]
  logs?: WriterStatus[]
  /** The supervisor process itself: its event-loop lag shows whether it keeps up. */
  supervisor?: SupervisorSelf
  /** The config's hooks, when it has any: runs, failures, drops. */
  hooks?: HookStatus[]
}

/** What a hook runner reports of each hook (status, tests). */
export interface HookStatus {
  index: number
  /** The sequence number of the event it runs for now, if it runs. */
  running?: number
  /** Events waiting for it. */
  queued: number
  /** Runs that ended, and of them those that failed (an exit other than 0, a signal, a
   * timeout, a program that could not start). */
  ran: number
  failed: number
  /** Events dropped because its queue was full, since the start. */
  dropped: number
}

/** Event-loop delay of the supervisor beyond the monitor's own interval, in milliseconds. */
export interface EventLoopLag {
  p50: number
  p99: number
  max: number
}

/** What the supervisor reports about itself, next to its instances. */
export interface SupervisorSelf {
  /** Resident set size of the supervisor process. */
  rssBytes: number
  eventLoopLagMs: EventLoopLag
  /** Time since the supervisor started. */
  uptimeMs: number
}
