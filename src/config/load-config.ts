import { readFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { dirname, resolve } from 'node:path'
import type { z } from 'zod'
import { ConfigError, errorMessage, type ConfigProblem } from '../errors.js'
import { checkConfig, componentPorts } from './check-config.js'
import { checkHost, envFilesOf, limitPair, type HostFacts } from './check-host.js'
import { pathText } from './json-path.js'
import { parseJson } from './parse-json.js'
import type { ComponentSpec, HaBackendSpec, HaSpec, Plan } from './plan.js'
import { configSchema, DEFAULTS, type Config } from './schema.js'
import { isSecretKey } from './secrets.js'
import { resolveStateDir } from './state-dir.js'
import { fillTemplate } from './template.js'

const describeValue = (v: unknown): string => {
  const s = JSON.stringify(v)
  return s === undefined ? String(v) : s.length > 60 ? `${s.slice(0, 57)}...` : s
}

const valueAt = (root: unknown, path: PropertyKey[]): unknown =>
  path.reduce<unknown>(
    (v, k) =>
      v !== null && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[k] : undefined,
    root,
  )

const schemaProblems = (input: unknown, issues: z.core.$ZodIssue[]): ConfigProblem[] =>
  issues.flatMap((i): ConfigProblem[] => {
    // A bad record key (a component name) carries the reason in nested issues: show those.
    if (i.code === 'invalid_key') {
      return i.issues.map((inner) => ({
        path: pathText(i.path),
        message: `component name ${describeValue(i.path.at(-1))}: ${inner.message}`,
      }))
    }
    const value = valueAt(input, i.path)
    // The value itself, where the message does not say it; never an env value (a secret?).
    const got = i.path.includes('env')
      ? ''
      : (i.code === 'invalid_type' ||
            i.code === 'invalid_format' ||
            i.code === 'invalid_union' ||
            i.code === 'invalid_value') &&
          value !== undefined
        ? ` (got ${describeValue(value)})`
        : i.code === 'too_big' || i.code === 'too_small'
          ? ` (got ${describeValue(value)})`
          : ''
    return [{ path: pathText(i.path), message: `${i.message}${got}` }]
  })

/** Validates a parsed config object; throws ConfigError listing every problem. */
export const validateConfig = (input: unknown, file: string): Config => {
  const result = configSchema.safeParse(input)
  if (!result.success) throw new ConfigError(file, schemaProblems(input, result.error.issues))
  const problems = checkConfig(result.data)
  if (problems.length) throw new ConfigError(file, problems)
  return result.data
}

/** Orders components so that each comes after everything it depends on (the graph is acyclic). */
const dependencyOrder = (config: Config): string[] => {
  const order: string[] = []
  const visit = (n: string) => {
    if (order.includes(n)) return
    for (const d of config.components[n]?.dependsOn ?? []) visit(d)
    order.push(n)
  }
  Object.keys(config.components).forEach(visit)
  return order
}

/**
 * Turns a valid config into the plan of instances, with ports, templates and paths resolved.
 * `host` holds what checkHost found out (accounts); without it, it is found out here and a
 * problem throws ConfigError.
 */
export const buildPlan = (
  config: Config,
  file: string,
  env: NodeJS.ProcessEnv = process.env,
  host?: HostFacts,
): Plan => {
  const facts = host ?? hostFacts(config, file)
  const base = dirname(file)
  const node = config.node ?? env.TANDEM_NODE ?? hostname()
  const components: ComponentSpec[] = dependencyOrder(config).map((name) => {
    const c = config.components[name]!
    const ports = componentPorts(c)
    const readiness =
      c.readiness ??
      (ports
        ? {
            type: 'tcp' as const,
            timeoutMs: DEFAULTS.readinessTimeoutMs,
            intervalMs: DEFAULTS.readinessIntervalMs,
          }
        : { type: 'none' as const })
    return {
      name,
      dependsOn: c.dependsOn,
      rollout: c.rollout,
      instances: Array.from({ length: c.instances }, (_, index) => {
        const port = ports?.[index]
        const vars = {
          node,
          component: name,
          instance: String(index),
          ...(port ? { port: String(port) } : {}),
        }
        return {
          component: name,
          index,
          id: `${name}#${index}`,
          port,
          argv: c.command.map((a) => fillTemplate(a, vars)),
          env: {
            TANDEM_NODE: node,
            TANDEM_COMPONENT: name,
            TANDEM_INSTANCE: String(index),
            ...(port ? { TANDEM_PORT: String(port) } : {}),
            ...Object.fromEntries(
              Object.entries(c.env).map(([k, v]) => [k, fillTemplate(v, vars)]),
            ),
          },
          secretEnv: Object.keys(c.env).filter((k) => isSecretKey(k, c.secretEnv)),
          envFiles: envFilesOf(config, name, base),
          exec: {
            ...(facts.accounts.has(name) ? { account: facts.accounts.get(name)! } : {}),
            ...(c.umask !== undefined ? { umask: c.umask.padStart(4, '0') } : {}),
            ...(c.cgroup ? { cgroup: { name: `${name}.${index}`, ...c.cgroup } } : {}),
            limits: Object.fromEntries(
              Object.entries(c.limits).flatMap(([k, v]) =>
                v === undefined ? [] : [[k, limitPair(v)]],
              ),
            ),
          },
          cwd: resolve(base, c.cwd ?? '.'),
          host: c.host,
          ...(c.socket && port ? { socket: c.socket } : {}),
          readiness,
          restart: c.restart,
          backoff: c.backoff,
          crashLoop: c.crashLoop,
          stop: c.stop,
          health: c.health,
          maxMemoryMb: c.maxMemoryMb,
          runOn: c.runOn,
          standby: c.standby,
          activate: c.activate,
        }
      }),
    }
  })
  return {
    node,
    configFile: file,
    stateDir: resolveStateDir(file, config.stateDir),
    logs: {
      ...config.logs,
      dir: resolve(base, config.logs.dir),
      syslog: config.logs.syslog && {
        ...config.logs.syslog,
        port: config.logs.syslog.port ?? (config.logs.syslog.protocol === 'tls' ? 6514 : 514),
        caFile: config.logs.syslog.caFile && resolve(base, config.logs.syslog.caFile),
      },
    },
    metrics: config.metrics,
    control: config.control,
    watchConfig: config.watchConfig,
    ha: config.ha ? haSpec(config.ha, base) : undefined,
    hooks: config.hooks.map(({ target, ...h }) => {
      const [component, index] = target?.split('#') ?? []
      return {
        ...h,
        ...(component !== undefined
          ? { target: { component, ...(index !== undefined ? { index: Number(index) } : {}) } }
          : {}),
        cwd: base,
      }
    }),
    components,
  }
}

/**
 * The ha section with its backend made explicit (the older `ha.sharedDir` is the dir backend;
 * checkConfig has refused both or neither) and every path resolved against the config's dir.
 */
const haSpec = (ha: NonNullable<Config['ha']>, base: string): HaSpec => {
  const { sharedDir, backend = { type: 'dir', sharedDir: sharedDir! }, ...timings } = ha
  const file = (p: string) => resolve(base, p)
  const resolved: HaBackendSpec =
    backend.type === 'dir'
      ? { type: 'dir', sharedDir: resolve(base, backend.sharedDir) }
      : backend.type === 'etcd'
        ? {
            type: 'etcd',
            endpoints: backend.endpoints.map((e) => e.replace(/\/+$/, '')),
            prefix: backend.prefix ?? `/tandem/${ha.name}`,
            ...(backend.tls
              ? {
                  tls: {
                    ...(backend.tls.ca ? { ca: file(backend.tls.ca) } : {}),
                    ...(backend.tls.cert ? { cert: file(backend.tls.cert) } : {}),
                    ...(backend.tls.key ? { key: file(backend.tls.key) } : {}),
                  },
                }
              : {}),
            ...(backend.auth
              ? { auth: { user: backend.auth.user, passwordFile: file(backend.auth.passwordFile) } }
              : {}),
          }
        : { type: 'external' }
  return { ...timings, backend: resolved }
}

/** What loadConfig checks beyond the file itself. */
export interface LoadOptions {
  /**
   * `all` (the default: start, reload, validate): accounts, limits, env files and cgroup
   * delegation against this host; `no-cgroups`: all but the delegation, which the unit being
   * generated will provide (`tandem unit systemd`); `none`: the file alone, for commands that
   * spawn nothing and may be run by an operator who cannot read the env files (`tandem logs`,
   * `lb-config`, finding the state dir): accounts are then left unresolved.
   */
  host?: 'all' | 'no-cgroups' | 'none'
}

/** Reads, parses, validates and normalizes a config file. Throws ConfigError (code ECONFIG). */
export const loadConfig = (
  path: string,
  env: NodeJS.ProcessEnv = process.env,
  options: LoadOptions = {},
): Plan => {
  const file = resolve(path)
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new ConfigError(
      file,
      [{ path: '', message: `cannot read the file: ${errorMessage(err)}` }],
      {
        cause: err,
      },
    )
  }
  const { value, problems } = parseJson(text)
  if (problems.length) throw new ConfigError(file, problems)
  const config = validateConfig(value, file)
  const host = options.host ?? 'all'
  return buildPlan(
    config,
    file,
    env,
    host === 'none' ? { accounts: new Map() } : hostFacts(config, file, host === 'all'),
  )
}

/** checkHost's facts, or ConfigError with its problems. */
const hostFacts = (config: Config, file: string, cgroups = true): HostFacts => {
  const { problems, facts } = checkHost(config, file, { cgroups })
  if (problems.length) throw new ConfigError(file, problems)
  return facts
}
