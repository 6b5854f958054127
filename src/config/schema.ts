import { constants } from 'node:os'
import { z } from 'zod'
import { DEFAULT_STATE_DIR } from './state-dir.js'
import { EVENT_NAMES } from '../events.js'

/**
 * The config file's schema. It is the single source of the JSON Schema in `config.schema.json`
 * (written by `npm run schema`, checked by a test), of the TypeScript types, and of the defaults.
 * Cross-field rules (ports across components, dependsOn graph) live in `check-config.ts`.
 */

/** Restart and stop defaults, with the reason for each value. */
export const DEFAULTS = {
  /** Long enough for a JVM server (Zowe's) to come up; a start slower than this is a failed start. */
  readinessTimeoutMs: 60_000,
  /** Poll often: readiness latency adds directly to restart and rollout time (a refused connect
   * on loopback costs microseconds; 100 of them a second while an instance starts is nothing). */
  readinessIntervalMs: 10,
  /** Ten seconds, like systemd's and Kubernetes' grace periods scaled down for single servers. */
  stopTimeoutMs: 10_000,
  /** Second consecutive failure waits this long; the first restart after a healthy run is immediate. */
  backoffInitialMs: 250,
  backoffFactor: 2,
  /** A looping instance is retried at most this often. */
  backoffMaxMs: 30_000,
  /** +-20 % so that many instances failing together do not restart in lockstep. */
  backoffJitter: 0.2,
  /** An instance up this long counts as healthy: its next failure restarts immediately again. */
  backoffResetAfterMs: 30_000,
  /** Five failures in a minute is a loop, whatever the age of the process. */
  crashLoopMaxExits: 5,
  crashLoopWindowMs: 60_000,
  /** Long enough for a Java stack trace line or a JSON record; a cap so one line cannot eat memory. */
  logMaxLineBytes: 64 * 1024,
  /** 50 MiB files, 5 kept: a few hundred MB at most, enough for a day of a busy stack. */
  logRotateMaxBytes: 50 * 1024 * 1024,
  logRotateKeep: 5,
  /** 4 MiB of syslog messages (about 20,000 lines) ride out a server restart of a few seconds. */
  syslogMaxBufferBytes: 4 * 1024 * 1024,
  /** CPU and RSS every 5 s: cheap (a /proc read per process), fresh enough for a status table. */
  metricsIntervalMs: 5_000,
  metricsIdleIntervalMs: 30_000,
  /** A liveness probe every 10 s, 2 s to answer, 3 misses in a row: a hung server is restarted
   * within about half a minute, and one slow answer under load is not enough. */
  healthIntervalMs: 10_000,
  healthTimeoutMs: 2_000,
  healthFailures: 3,
  /** Samples in a row above maxMemoryMb before the restart: a short peak is not a leak. */
  memorySamples: 3,
  /** Node's own default for listen(2): the kernel caps it at net.core.somaxconn (4096 on Linux
   * 5.4+); enough for a burst of connections during a JVM's seconds-long restart. */
  socketBacklog: 511,
  /** A new instance must be ready within 2 minutes, or the rollout stops and rolls back. */
  rolloutProgressDeadlineMs: 120_000,
  /** The lease (../shared/DESIGN.md, hot standby): a crash fails over in about 2-2.5 s. */
  haRenewMs: 250,
  haSelfFenceMs: 1000,
  haTakeoverMs: 2000,
  haPollMs: 100,
  /** takeoverMs must exceed selfFenceMs by this much: clock rate error, fence timer, slack. */
  haMinMarginMs: 500,
  /** A hook (a pager call, a console message) that has not finished in 10 s hangs: stopped. */
  hookTimeoutMs: 10_000,
  /** Events waiting for a busy hook: a crash loop's burst fits; a storm beyond it is counted. */
  hookMaxQueued: 100,
} as const

/** Syslog facilities by name (RFC 5424, 6.2.1), with their codes. */
export const SYSLOG_FACILITIES = {
  kern: 0,
  user: 1,
  mail: 2,
  daemon: 3,
  auth: 4,
  syslog: 5,
  lpr: 6,
  news: 7,
  uucp: 8,
  cron: 9,
  authpriv: 10,
  ftp: 11,
  local0: 16,
  local1: 17,
  local2: 18,
  local3: 19,
  local4: 20,
  local5: 21,
  local6: 22,
  local7: 23,
} as const

const regexSource = z.string().refine(
  (s) => {
    try {
      new RegExp(s)
      return true
    } catch {
      return false
    }
  },
  { error: (iss) => `expected a regular expression; got ${JSON.stringify(iss.input)}` },
)

const syslogSchema = z
  .strictObject({
    host: z
      .string()
      .min(1)
      .default('127.0.0.1')
      .describe('Host name or address of the syslog server.'),
    port: z
      .number()
      .int()
      .min(1)
      .max(65535)
      .optional()
      .describe('Its port; default 514 (udp, tcp), 6514 (tls).'),
    protocol: z
      .enum(['tcp', 'udp', 'tls'])
      .default('tcp')
      .describe(
        'tcp and tls frame messages by octet counting (RFC 6587); udp sends one a datagram.',
      ),
    facility: z
      .enum(Object.keys(SYSLOG_FACILITIES) as [keyof typeof SYSLOG_FACILITIES])
      .default('user')
      .describe('The facility of every message.'),
    minLevel: z
      .enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal'])
      .default('info')
      .describe(
        'Records below this level are not shipped (child stdout lines are info, stderr warn).',
      ),
    match: z
      .strictObject({
        components: z
          .array(z.string())
          .optional()
          .describe(
            "Only these components' lines and events (the supervisor's own events are left out).",
          ),
        messages: z
          .array(regexSource)
          .optional()
          .describe('Only records whose message matches one of these regular expressions.'),
      })
      .optional()
      .describe('Which records are shipped; without it, every record at minLevel or above.'),
    format: z.enum(['rfc5424']).default('rfc5424').describe('The message format.'),
    caFile: z
      .string()
      .optional()
      .describe(
        "tls: PEM file of the CA that signed the server's certificate; default the system's.",
      ),
    maxBufferBytes: z
      .number()
      .int()
      .min(65536)
      .default(DEFAULTS.syslogMaxBufferBytes)
      .describe(
        'Messages kept while the server is unreachable or slow; beyond it they are dropped and counted.',
      ),
  })
  .describe('Also ship the unified log to a syslog server (RFC 5424); never holds up a child.')

const signalNames = Object.keys(constants.signals)
const signal = z.string().refine((s) => signalNames.includes(s), {
  error: (iss) =>
    `expected a signal name such as SIGTERM, SIGINT, SIGQUIT, SIGHUP; got ${JSON.stringify(iss.input)}`,
})

const port = z.number().int().min(1).max(65535)
const ms = z.number().int().min(0)
const name = z.string().regex(/^[A-Za-z][A-Za-z0-9_.-]*$/, {
  error: 'expected a name of letters, digits, "_", "." and "-", starting with a letter',
})

const readiness = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('tcp').describe('Ready when a TCP connection to the instance port succeeds.'),
    timeoutMs: ms
      .default(DEFAULTS.readinessTimeoutMs)
      .describe('Start counts as failed after this.'),
    intervalMs: ms.default(DEFAULTS.readinessIntervalMs).describe('Probe interval.'),
  }),
  z.strictObject({
    type: z.literal('http').describe('Ready when GET path on the instance port answers 2xx.'),
    path: z.string().startsWith('/').default('/'),
    timeoutMs: ms.default(DEFAULTS.readinessTimeoutMs),
    intervalMs: ms.default(DEFAULTS.readinessIntervalMs),
  }),
  z.strictObject({
    type: z
      .literal('ipc')
      .describe('Ready when the child sends "ready" (or {"type":"ready"}) on its IPC channel.'),
    timeoutMs: ms.default(DEFAULTS.readinessTimeoutMs),
  }),
  z.strictObject({
    type: z.literal('none').describe('Ready as soon as it is spawned.'),
  }),
])

const healthCommon = {
  intervalMs: z
    .number()
    .int()
    .min(100)
    .default(DEFAULTS.healthIntervalMs)
    .describe('Probe interval.'),
  timeoutMs: z
    .number()
    .int()
    .min(1)
    .default(DEFAULTS.healthTimeoutMs)
    .describe('An answer slower than this is a failure.'),
  failures: z
    .number()
    .int()
    .min(1)
    .default(DEFAULTS.healthFailures)
    .describe('Consecutive failures that restart the instance.'),
}
const health = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('tcp').describe('Alive while a TCP connection to its port succeeds.'),
    ...healthCommon,
  }),
  z.strictObject({
    type: z.literal('http').describe('Alive while GET path on its port answers 2xx.'),
    path: z.string().startsWith('/').default('/'),
    ...healthCommon,
  }),
])

/** A POSIX account, by name or by numeric id (as in /etc/passwd, /etc/group or NSS). */
const account = z.union([
  z.string().regex(/^([0-9]+|[A-Za-z_][A-Za-z0-9_.-]*\$?)$/, {
    error: 'expected a user or group name (letters, digits, "_", "." and "-") or a numeric id',
  }),
  z.number().int().min(0).max(4_294_967_294),
])

/** One resource limit: a number (soft = hard) or [soft, hard]; "unlimited" for RLIM_INFINITY. */
const limitValue = z.union([z.number().int().min(0), z.literal('unlimited')])
const limit = z.union([limitValue, z.tuple([limitValue, limitValue])])

/** The resource limits a component may set, with their units (setrlimit(2), prlimit(1)). */
export const LIMITS = {
  nofile: 'open files',
  nproc: 'processes of the user',
  core: 'core file size, bytes',
  memlock: 'locked memory, bytes',
  as: 'address space, bytes',
  cpu: 'CPU time, seconds',
} as const
export type LimitName = keyof typeof LIMITS

/** One env file path or several, read in order (a later file wins). */
const envFile = z
  .union([z.string().min(1), z.array(z.string().min(1)).min(1)])
  .describe(
    "KEY=VALUE file(s) in systemd EnvironmentFile syntax, relative to the config file, read at every spawn; each must be a regular file owned by the supervisor's user or root and not readable by group or others. Its values are secrets: never shown.",
  )

export const componentSchema = z.strictObject({
  command: z
    .array(z.string().min(1))
    .min(1)
    .describe('argv of the child, no shell: program first. Templated like env.'),
  cwd: z.string().optional().describe('Working directory, relative to the config file.'),
  env: z
    .record(z.string(), z.string())
    .default({})
    .describe('Extra environment; values may use {port}, {instance}, {node}, {component}.'),
  instances: z.number().int().min(1).max(1000).default(1).describe('How many instances.'),
  envFile: envFile.optional(),
  secretEnv: z
    .array(z.string().min(1))
    .default([])
    .describe(
      'Keys of env whose values are secrets, never shown (names containing PASSWORD, SECRET, TOKEN or KEY always are).',
    ),
  user: account
    .optional()
    .describe(
      'Run the instances as this user (name or uid), with its HOME, USER, LOGNAME, SHELL and supplementary groups; needs a supervisor that may switch users (root or CAP_SETUID and CAP_SETGID).',
    ),
  group: account.optional().describe("Primary group (name or gid); default the user's own group."),
  umask: z
    .string()
    .regex(/^0?[0-7]{3}$/, { error: 'expected an octal umask such as "027" or "0077"' })
    .optional()
    .describe("File mode creation mask of the instances, in octal; default the supervisor's."),
  limits: z
    .strictObject(
      Object.fromEntries(
        Object.entries(LIMITS).map(([k, unit]) => [k, limit.optional().describe(unit)]),
      ) as Record<LimitName, z.ZodOptional<typeof limit>>,
    )
    .default({})
    .describe(
      'Resource limits of the instances: a number (soft and hard) or [soft, hard], "unlimited" for none; at most the supervisor\'s own hard limits.',
    ),
  cgroup: z
    .strictObject({
      memoryMax: z
        .number()
        .int()
        .min(4096)
        .optional()
        .describe('memory.max in bytes: the kernel OOM-kills the instance above it (reason oom).'),
      cpuWeight: z
        .number()
        .int()
        .min(1)
        .max(10000)
        .optional()
        .describe('cpu.weight, 1-10000 (default 100).'),
      pidsMax: z.number().int().min(1).optional().describe('pids.max: most processes and threads.'),
    })
    .optional()
    .describe(
      'cgroup v2 controls, one cgroup per instance; only where the host delegates a cgroup v2 subtree to tandem (systemd Delegate=yes).',
    ),

  port: port.optional().describe('Port of instance 0; instance i gets port + i.'),
  ports: z.array(port).min(1).optional().describe('Explicit port per instance (instead of port).'),
  host: z.string().default('127.0.0.1').describe('Address the readiness probe connects to.'),
  socket: z
    .strictObject({
      activation: z
        .enum(['systemd', 'node'])
        .describe(
          'systemd: fd 3 with LISTEN_FDS=1, LISTEN_PID and LISTEN_FDNAMES, as systemd socket activation passes it; node: the same (a Node server listens with tandem/child listenArgs()).',
        ),
      backlog: z
        .number()
        .int()
        .min(1)
        .max(65535)
        .default(DEFAULTS.socketBacklog)
        .describe(
          'listen(2) backlog: connections the kernel queues while no process accepts (capped by net.core.somaxconn).',
        ),
      host: z
        .string()
        .optional()
        .describe(
          'Address tandem binds; default every address (:: dual stack, or 0.0.0.0 without IPv6).',
        ),
      stdin: z
        .boolean()
        .default(false)
        .describe(
          "Also pass the socket as fd 0, inetd style, for programs that take it there (Java's System.inheritedChannel()).",
        ),
    })
    .optional()
    .describe(
      "Listening socket held by tandem: it binds each instance's port itself, keeps it open across restarts and passes it to every process of the instance, so connections wait in the kernel's backlog while the instance restarts instead of being refused. Needs readiness http or ipc.",
    ),
  dependsOn: z.array(z.string()).default([]).describe('Components that must be ready first.'),
  readiness: readiness.optional().describe('Default: tcp when the component has ports, else none.'),
  restart: z
    .enum(['on-failure', 'always', 'never'])
    .default('on-failure')
    .describe('on-failure: restart unless it exited 0; always: any exit; never.'),
  backoff: z
    .strictObject({
      initialMs: ms.default(DEFAULTS.backoffInitialMs),
      factor: z.number().min(1).default(DEFAULTS.backoffFactor),
      maxMs: ms.default(DEFAULTS.backoffMaxMs),
      jitter: z.number().min(0).max(1).default(DEFAULTS.backoffJitter),
      resetAfterMs: ms.default(DEFAULTS.backoffResetAfterMs),
    })
    .default({
      initialMs: DEFAULTS.backoffInitialMs,
      factor: DEFAULTS.backoffFactor,
      maxMs: DEFAULTS.backoffMaxMs,
      jitter: DEFAULTS.backoffJitter,
      resetAfterMs: DEFAULTS.backoffResetAfterMs,
    })
    .describe('Delay before restart n>1 of a series: initialMs * factor^(n-2), capped at maxMs.'),
  crashLoop: z
    .strictObject({
      maxExits: z.number().int().min(1).default(DEFAULTS.crashLoopMaxExits),
      windowMs: ms.default(DEFAULTS.crashLoopWindowMs),
      retry: z
        .boolean()
        .default(false)
        .describe('Keep retrying a failed instance every backoff.maxMs instead of giving up.'),
    })
    .default({
      maxExits: DEFAULTS.crashLoopMaxExits,
      windowMs: DEFAULTS.crashLoopWindowMs,
      retry: false,
    })
    .describe('maxExits failed exits within windowMs put the instance in state failed.'),
  health: health
    .optional()
    .describe(
      'Liveness check while ready: an instance that fails it is restarted (reason unhealthy).',
    ),
  maxMemoryMb: z
    .number()
    .positive()
    .optional()
    .describe(
      `Restart an instance whose RSS (process group) stays above this for ${DEFAULTS.memorySamples} samples (reason memory).`,
    ),
  rollout: z
    .strictObject({
      maxUnavailable: z
        .number()
        .int()
        .min(1)
        .default(1)
        .describe('Instances of the component replaced at the same time.'),
      drainMs: ms
        .default(0)
        .describe('Reported draining this long (status, /ready) before the stop signal.'),
      minReadyMs: ms
        .default(0)
        .describe('A new instance must stay up this long after ready before the next one rolls.'),
      progressDeadlineMs: z
        .number()
        .int()
        .min(1)
        .default(DEFAULTS.rolloutProgressDeadlineMs)
        .describe('A new instance not ready within this aborts the rollout and rolls back.'),
    })
    .default({
      maxUnavailable: 1,
      drainMs: 0,
      minReadyMs: 0,
      progressDeadlineMs: DEFAULTS.rolloutProgressDeadlineMs,
    })
    .describe(
      "How tandem upgrade and reload replace this component's instances, one batch at a time.",
    ),
  runOn: z
    .enum(['all', 'active'])
    .default('all')
    .describe(
      'With ha: all runs on every node (active-active behind a load balancer); active only on the active node.',
    ),
  standby: z
    .enum(['cold', 'hot'])
    .default('cold')
    .describe(
      'For runOn active: cold is not started on standbys; hot is pre-started there with TANDEM_ROLE=standby and activated on promotion.',
    ),
  activate: z
    .discriminatedUnion('type', [
      z.strictObject({
        type: z
          .literal('ipc')
          .describe(
            'Send {"type":"tandem:activate","epoch":N,"deadline":D} on the IPC channel (D: the fence time of the node on the monotonic clock of the host, renewed by tandem:lease messages).',
          ),
      }),
      z.strictObject({
        type: z.literal('signal').describe('Send this signal to the child process.'),
        signal: signal,
      }),
      z.strictObject({
        type: z
          .literal('command')
          .describe(
            'Run this command (argv, no shell) with TANDEM_EPOCH and the instance variables.',
          ),
        command: z.array(z.string().min(1)).min(1),
        timeoutMs: ms.default(10_000),
      }),
    ])
    .default({ type: 'ipc' })
    .describe('How a hot standby instance is told that its node became active.'),
  stop: z
    .strictObject({
      signal: signal.default('SIGTERM'),
      timeoutMs: ms.default(DEFAULTS.stopTimeoutMs),
    })
    .default({ signal: 'SIGTERM', timeoutMs: DEFAULTS.stopTimeoutMs })
    .describe('Signal sent to the process group, then SIGKILL after timeoutMs.'),
})

/** A path to a file, relative to the config file. */
const filePath = z.string().min(1)

const eventName = z.enum(EVENT_NAMES, {
  error: (i) =>
    `unknown event name ${JSON.stringify(i.input)}; expected one of ${EVENT_NAMES.join(', ')}`,
})

const hookSchema = z.strictObject({
  on: z
    .array(eventName)
    .min(1)
    .describe(
      `The events that run the command, among ${EVENT_NAMES.join(', ')} (see tandem events).`,
    ),
  target: z
    .string()
    .optional()
    .describe(
      "Only events of this component's instances, or of one instance (component#index); default every event, the node's own too.",
    ),
  command: z
    .array(z.string().min(1))
    .min(1)
    .describe(
      'The program and its arguments (no shell), run as the supervisor user in the config file directory with TANDEM_EVENT, TANDEM_EVENT_JSON and the instance variables.',
    ),
  timeoutMs: ms
    .default(DEFAULTS.hookTimeoutMs)
    .describe('A run still going after this long is stopped (SIGTERM to its group, then SIGKILL).'),
  maxQueued: z
    .number()
    .int()
    .min(0)
    .default(DEFAULTS.hookMaxQueued)
    .describe(
      'Events that wait while the hook runs (one run at a time, in event order); more are dropped, counted and logged.',
    ),
})

/** Where a cluster's nodes hold the lease (../shared/DESIGN.md, hot standby). */
const haBackend = z.discriminatedUnion('type', [
  z
    .strictObject({
      type: z.literal('dir'),
      sharedDir: z
        .string()
        .min(1)
        .describe(
          'A directory on storage every node mounts (NFS, zFS), relative to the config file.',
        ),
    })
    .describe('A lease in files of a directory every node mounts.'),
  z
    .strictObject({
      type: z.literal('etcd'),
      endpoints: z
        .array(
          z.string().regex(/^https?:\/\/[^/\s]+\/?$/, {
            error: 'expected an etcd client URL such as http://10.0.0.1:2379',
          }),
        )
        .min(1)
        .describe('Client URLs of the etcd members (http:// or https://), tried in turn.'),
      prefix: z
        .string()
        .regex(/^\/[^\s]*[^/\s]$/, {
          error: 'expected a key prefix starting with / and not ending with / (/tandem/zowe)',
        })
        .optional()
        .describe('The keys of this cluster: default /tandem/<ha.name>.'),
      tls: z
        .strictObject({
          ca: filePath.optional().describe('PEM file of the CA that signed the members.'),
          cert: filePath.optional().describe('PEM client certificate (with key).'),
          key: filePath.optional().describe('PEM key of the client certificate.'),
        })
        .optional()
        .describe('For https:// endpoints; files relative to the config file.'),
      auth: z
        .strictObject({
          user: z.string().min(1),
          passwordFile: filePath.describe('A file holding the password (one line); never printed.'),
        })
        .optional()
        .describe('etcd user authentication.'),
    })
    .describe('A lease in etcd: a claim key on an etcd lease, kept alive by the active node.'),
  z
    .strictObject({ type: z.literal('external') })
    .describe(
      'A cluster manager (Pacemaker, through tandem ocf) promotes and demotes this node; it fences.',
    ),
])

export const configSchema = z.strictObject({
  $schema: z.string().optional(),
  node: name.optional().describe("This node's name; default the host name."),
  stateDir: z
    .string()
    .default(DEFAULT_STATE_DIR)
    .describe('Control socket, pid records, operator overrides; relative to the config file.'),
  logs: z
    .strictObject({
      level: z
        .enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal'])
        .default('info')
        .describe(
          "The supervisor's own events below this level are not logged; child lines always are.",
        ),
      dir: z
        .string()
        .default('logs')
        .describe('Directory of tandem.log (the unified log); relative to the config file.'),
      stdout: z
        .boolean()
        .default(true)
        .describe('Also write the unified log to stdout (pretty on a terminal).'),
      perInstance: z
        .boolean()
        .default(false)
        .describe("Also write each instance's lines to <dir>/<component>.<index>.log."),
      maxLineBytes: z
        .number()
        .int()
        .min(256)
        .default(DEFAULTS.logMaxLineBytes)
        .describe('A longer child line is cut to this many bytes and marked truncated: true.'),
      rotate: z
        .strictObject({
          maxBytes: z
            .number()
            .int()
            .min(0)
            .default(DEFAULTS.logRotateMaxBytes)
            .describe(
              'Rotate a log file when it reaches this size; 0: never (external logrotate).',
            ),
          keep: z
            .number()
            .int()
            .min(0)
            .max(1000)
            .default(DEFAULTS.logRotateKeep)
            .describe('How many rotated files (.1 newest) to keep.'),
        })
        .default({ maxBytes: DEFAULTS.logRotateMaxBytes, keep: DEFAULTS.logRotateKeep }),
      syslog: syslogSchema.optional(),
    })
    .default({
      level: 'info',
      dir: 'logs',
      stdout: true,
      perInstance: false,
      maxLineBytes: DEFAULTS.logMaxLineBytes,
      rotate: { maxBytes: DEFAULTS.logRotateMaxBytes, keep: DEFAULTS.logRotateKeep },
    })
    .describe('The unified log: every child line and supervisor event, one JSON record a line.'),
  metrics: z
    .strictObject({
      intervalMs: z
        .number()
        .int()
        .min(100)
        .default(DEFAULTS.metricsIntervalMs)
        .describe('How often CPU and RSS of each instance are sampled.'),
      idleIntervalMs: z
        .number()
        .int()
        .min(100)
        .default(DEFAULTS.metricsIdleIntervalMs)
        .describe(
          'How often they are sampled once nothing has changed for a minute (no instance with maxMemoryMb running); at least intervalMs.',
        ),
    })
    .default({
      intervalMs: DEFAULTS.metricsIntervalMs,
      idleIntervalMs: DEFAULTS.metricsIdleIntervalMs,
    }),
  control: z
    .strictObject({
      http: z
        .strictObject({
          host: z
            .string()
            .default('127.0.0.1')
            .describe('Loopback by default: the endpoints have no authentication.'),
          port: port,
          allowedHosts: z
            .array(
              z
                .string()
                .regex(
                  /^(\*|[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?)$/,
                  {
                    error:
                      'expected a host name such as tandem-a.example.com (no scheme, port or path), or "*"',
                  },
                ),
            )
            .optional()
            .describe(
              'Host names the endpoints answer to besides IP addresses, localhost, host and this machine\'s name (a guard against DNS rebinding): the name a proxy in front is reached by when it passes Host through; ["*"] answers to any.',
            ),
        })
        .optional()
        .describe('Read-only HTTP endpoints: /health, /ready, /metrics (Prometheus), /status.'),
      agent: z
        .strictObject({
          host: z
            .string()
            .default('127.0.0.1')
            .describe('Where the load balancer connects: loopback unless it runs on another host.'),
          port: port,
        })
        .optional()
        .describe(
          'HAProxy agent-check listener: answers "up ready", "drain" or "down" per instance, so the ' +
            'load balancer stops sending to an instance before a rollout stops it (tandem lb-config).',
        ),
    })
    .default({}),
  ha: z
    .strictObject({
      name: name.describe('The cluster: nodes with the same name and backend form it.'),
      backend: haBackend
        .optional()
        .describe(
          'Where the nodes hold the lease: a shared directory (dir), etcd, or a cluster manager that promotes and demotes the node (external: Pacemaker).',
        ),
      sharedDir: z
        .string()
        .min(1)
        .optional()
        .describe(
          'The older form of backend {"type": "dir", "sharedDir": ...}; give one or the other.',
        ),
      renewMs: z
        .number()
        .int()
        .min(10)
        .default(DEFAULTS.haRenewMs)
        .describe('The active renews this often.'),
      selfFenceMs: z
        .number()
        .int()
        .min(50)
        .default(DEFAULTS.haSelfFenceMs)
        .describe('The active fences itself when its last good renew started this long ago.'),
      takeoverMs: z
        .number()
        .int()
        .min(100)
        .default(DEFAULTS.haTakeoverMs)
        .describe('A standby takes over after the heartbeat has not changed for this long.'),
      pollMs: z
        .number()
        .int()
        .min(10)
        .default(DEFAULTS.haPollMs)
        .describe('A standby reads the heartbeat this often.'),
    })
    .optional()
    .describe(
      'Hot standby across nodes: exactly one active node, by a lease on shared storage or etcd, or as a cluster manager decides.',
    ),
  envFile: envFile.optional(),
  hooks: z
    .array(hookSchema)
    .default([])
    .describe('Commands run on events (instance failures, rollouts, role changes, ...).'),
  watchConfig: z
    .boolean()
    .default(false)
    .describe('Reload when the config file changes (as tandem reload does).'),
  components: z
    .record(name, componentSchema)
    .refine((c) => Object.keys(c).length > 0, { error: 'expected at least one component' })
    .describe('The servers to run, by component name.'),
})

export type ComponentConfig = z.output<typeof componentSchema>
export type Config = z.output<typeof configSchema>
export type ReadinessConfig = NonNullable<ComponentConfig['readiness']>
export type SocketConfig = NonNullable<ComponentConfig['socket']>
