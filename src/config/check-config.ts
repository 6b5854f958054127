import type { ConfigProblem } from '../errors.js'
import { DEFAULTS, type ComponentConfig, type Config } from './schema.js'
import { isSecretKey } from './secrets.js'
import { TEMPLATE_VARIABLES, templateVariablesIn } from './template.js'

/** The ports of a component's instances: `ports` as given, or `port + index`. */
export const componentPorts = (c: ComponentConfig): number[] | undefined =>
  c.ports ??
  (c.port === undefined ? undefined : Array.from({ length: c.instances }, (_, i) => c.port! + i))

/** Why a hook's target names no instance of the config (undefined when it does). */
const hookTargetProblem = (config: Config, target: string): string | undefined => {
  const m = /^([^#]+)(?:#(\d+))?$/.exec(target)
  const c = m ? config.components[m[1]!] : undefined
  if (!m || !c)
    return `unknown target ${JSON.stringify(target)}: expected <component> or <component>#<index>, with a component among ${Object.keys(config.components).join(', ')}`
  if (m[2] !== undefined && Number(m[2]) >= c.instances)
    return `unknown target ${JSON.stringify(target)}: ${m[1]} has instances #0 to #${c.instances - 1}`
  return undefined
}

/**
 * Rules that span fields or components, which the schema cannot express. Returns every problem,
 * each with its JSON path, so that an operator fixes a config in one pass.
 */
export const checkConfig = (config: Config): ConfigProblem[] => {
  const problems: ConfigProblem[] = []
  const owners = new Map<number, string>()
  for (const [name, c] of Object.entries(config.components)) {
    const at = `components.${name}`
    if (c.port !== undefined && c.ports !== undefined) {
      problems.push({ path: `${at}.ports`, message: 'give either port or ports, not both' })
    }
    if (c.ports !== undefined && c.ports.length !== c.instances) {
      problems.push({
        path: `${at}.ports`,
        message: `expected ${c.instances} ports (one per instance), got ${c.ports.length}`,
      })
    }
    if (c.port !== undefined && c.port + c.instances - 1 > 65535) {
      problems.push({
        path: `${at}.port`,
        message: `port ${c.port} + ${c.instances} instances runs past 65535`,
      })
    }
    const ports = componentPorts(c)
    ports?.forEach((p, i) => {
      const other = owners.get(p)
      if (other !== undefined) {
        problems.push({
          path: c.ports ? `${at}.ports[${i}]` : `${at}.port`,
          message: `port ${p} of ${name}#${i} is already used by ${other}`,
        })
      } else if (p <= 65535) owners.set(p, `${name}#${i}`)
    })
    const probe = c.readiness?.type
    if (ports === undefined && (probe === 'tcp' || probe === 'http')) {
      problems.push({
        path: `${at}.readiness.type`,
        message: `readiness "${probe}" needs a port; set port or ports, or use "ipc" or "none"`,
      })
    }
    if (c.socket) {
      if (ports === undefined) {
        problems.push({
          path: `${at}.socket`,
          message: 'a held socket needs a port; set port or ports',
        })
      }
      // The kernel completes connections into the backlog of a held socket whether a process
      // serves it or not: a TCP connect proves nothing, not even that the child started.
      if (probe === undefined || probe === 'tcp' || probe === 'none') {
        problems.push({
          path: `${at}.readiness${probe === undefined ? '' : '.type'}`,
          message: `${name} has a held socket (socket.activation ${c.socket.activation}): readiness must be "http" or "ipc", since the kernel accepts connections into the socket's backlog before the child serves; got ${probe === undefined ? 'the default "tcp"' : `"${probe}"`}`,
        })
      }
    }
    if (ports === undefined && c.health) {
      problems.push({
        path: `${at}.health.type`,
        message: `health "${c.health.type}" needs a port; set port or ports`,
      })
    }
    const templated: [string, string][] = [
      ...c.command.map((a, i): [string, string] => [`${at}.command[${i}]`, a]),
      ...Object.entries(c.env).map(([k, v]): [string, string] => [`${at}.env.${k}`, v]),
    ]
    const secretPaths = new Set(
      Object.keys(c.env)
        .filter((k) => isSecretKey(k, c.secretEnv))
        .map((k) => `${at}.env.${k}`),
    )
    for (const [path, text] of templated) {
      for (const v of templateVariablesIn(text)) {
        if (!(TEMPLATE_VARIABLES as readonly string[]).includes(v)) {
          problems.push({
            path,
            // Not even a part of a secret value in an error message.
            message: `unknown template variable ${secretPaths.has(path) ? 'in a secret value' : `{${v}}`}; expected one of ${TEMPLATE_VARIABLES.map((t) => `{${t}}`).join(', ')}`,
          })
        } else if (v === 'port' && ports === undefined) {
          problems.push({ path, message: 'uses {port} but the component has no port or ports' })
        }
      }
    }
    c.dependsOn.forEach((d, i) => {
      if (d === name) {
        problems.push({ path: `${at}.dependsOn[${i}]`, message: `${name} cannot depend on itself` })
      } else if (!(d in config.components)) {
        problems.push({
          path: `${at}.dependsOn[${i}]`,
          message: `unknown component "${d}"; expected one of ${Object.keys(config.components).join(', ')}`,
        })
      }
    })
  }
  config.hooks.forEach((h, i) => {
    const problem = h.target === undefined ? undefined : hookTargetProblem(config, h.target)
    if (problem) problems.push({ path: `hooks[${i}].target`, message: `hook ${i}: ${problem}` })
  })
  for (const key of ['http', 'agent'] as const) {
    const listener = config.control[key]
    if (!listener) continue
    const owner = owners.get(listener.port)
    if (owner) {
      problems.push({
        path: `control.${key}.port`,
        message: `port ${listener.port} is already used by ${owner}`,
      })
    }
    owners.set(listener.port, `control.${key}`)
  }
  if (config.ha) {
    const h = config.ha
    problems.push(...backendProblems(h))
    if (h.renewMs * 2 > h.selfFenceMs) {
      problems.push({
        path: 'ha.renewMs',
        message: `expected at most half of ha.selfFenceMs (${h.selfFenceMs}), so that one slow renew does not fence; got ${h.renewMs}`,
      })
    }
    if (h.takeoverMs < h.selfFenceMs + DEFAULTS.haMinMarginMs) {
      problems.push({
        path: 'ha.takeoverMs',
        message: `expected at least ha.selfFenceMs + ${DEFAULTS.haMinMarginMs} (${h.selfFenceMs + DEFAULTS.haMinMarginMs}): a standby must not take over before the active has fenced itself, whatever the clocks' rate error; got ${h.takeoverMs}`,
      })
    }
    if (h.pollMs * 4 > h.takeoverMs) {
      problems.push({
        path: 'ha.pollMs',
        message: `expected at most a quarter of ha.takeoverMs (${h.takeoverMs / 4}); got ${h.pollMs}`,
      })
    }
  }
  for (const [name, c] of Object.entries(config.components)) {
    if (c.standby === 'hot' && c.runOn !== 'active') {
      problems.push({
        path: `components.${name}.standby`,
        message:
          'a hot standby needs "runOn": "active" (with runOn all, every node runs it as active)',
      })
    }
  }
  const { intervalMs, idleIntervalMs } = config.metrics
  if (idleIntervalMs < intervalMs) {
    problems.push({
      path: 'metrics.idleIntervalMs',
      message: `expected at least metrics.intervalMs (${intervalMs}); got ${idleIntervalMs}`,
    })
  }
  const cycle = findCycle(config)
  if (cycle) {
    problems.push({
      path: `components.${cycle[0]}.dependsOn`,
      message: `dependency cycle: ${cycle.join(' -> ')}`,
    })
  }
  return problems
}

/** A dependsOn cycle as a list of names that starts and ends with the same one, if any. */
const findCycle = (config: Config): string[] | undefined => {
  const state = new Map<string, 'visiting' | 'done'>()
  const stack: string[] = []
  const visit = (n: string): string[] | undefined => {
    if (state.get(n) === 'done') return undefined
    if (state.get(n) === 'visiting') return [...stack.slice(stack.indexOf(n)), n]
    state.set(n, 'visiting')
    stack.push(n)
    for (const d of config.components[n]?.dependsOn ?? []) {
      if (d === n || !(d in config.components)) continue
      const found = visit(d)
      if (found) return found
    }
    stack.pop()
    state.set(n, 'done')
    return undefined
  }
  for (const n of Object.keys(config.components)) {
    const found = visit(n)
    if (found) return found
  }
  return undefined
}

/** The backend's own rules: one form of it, and TLS settings that fit the endpoints. */
const backendProblems = (h: NonNullable<Config['ha']>): ConfigProblem[] => {
  if (h.sharedDir !== undefined && h.backend !== undefined) {
    return [
      {
        path: 'ha.sharedDir',
        message: `expected either ha.sharedDir (the older form) or ha.backend, not both; move it into ha.backend: {"type": "dir", "sharedDir": ${JSON.stringify(h.sharedDir)}}`,
      },
    ]
  }
  if (h.sharedDir === undefined && h.backend === undefined) {
    return [
      {
        path: 'ha.backend',
        message:
          'expected where the lease is held: {"type": "dir", "sharedDir": ...}, {"type": "etcd", "endpoints": [...]} or {"type": "external"}',
      },
    ]
  }
  const b = h.backend
  if (b?.type !== 'etcd') return []
  const problems: ConfigProblem[] = []
  const plain = b.endpoints.filter((e) => e.startsWith('http://'))
  if (b.tls && plain.length) {
    problems.push({
      path: 'ha.backend.endpoints',
      message: `expected https:// endpoints with ha.backend.tls; got ${plain.join(', ')}`,
    })
  }
  if (b.tls && (b.tls.cert === undefined) !== (b.tls.key === undefined)) {
    problems.push({
      path: `ha.backend.tls.${b.tls.cert === undefined ? 'cert' : 'key'}`,
      message: 'expected a client certificate and its key together, or neither',
    })
  }
  return problems
}
