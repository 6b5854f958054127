import type { ComponentSpec, InstanceSpec, Plan } from '../config/plan.js'
import { TandemError } from '../errors.js'

export interface LbConfigOptions {
  /** Only these components (default: every component with ports). */
  components?: readonly string[]
  /** The address HAProxy connects to instead of each instance's `host` (HAProxy on another host). */
  host?: string
}

/** HAProxy checks an instance this often while it is up, and faster while its state changes. */
const CHECK = 'inter 1s fastinter 250ms downinter 1s rise 1 fall 2'
/** The agent is asked this often: well inside any `rollout.drainMs` worth having (>= 1 s). */
const AGENT_INTER = '250ms'

/** HAProxy server names allow letters, digits, '-', '_', '.' and ':' ('#' would start a comment). */
const serverName = (i: InstanceSpec) => `${i.component}.${i.index}`

const address = (host: string, port: number) =>
  host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`

/** Where HAProxy reaches the agent: its listen address, unless that is a wildcard. */
const agentAddress = (host: string, options: LbConfigOptions) =>
  host === '0.0.0.0' || host === '::' ? (options.host ?? '127.0.0.1') : host

/** The component's HTTP path HAProxy should check: readiness first, then liveness. */
const httpCheckPath = (c: ComponentSpec): string | undefined => {
  const first = c.instances[0]!
  if (first.readiness.type === 'http') return first.readiness.path
  if (first.health?.type === 'http') return first.health.path
  return undefined
}

const backend = (c: ComponentSpec, plan: Plan, options: LbConfigOptions): string[] => {
  const path = httpCheckPath(c)
  const agent = plan.control.agent
  const lines = [`backend tandem_${c.name}`]
  const add = (...l: string[]) => lines.push(...l.map((s) => (s ? `    ${s}` : '')))
  if (path !== undefined) {
    add(
      'mode http',
      'balance roundrobin',
      `# Up while GET ${path} answers 2xx (the component's ${c.instances[0]!.readiness.type === 'http' ? 'readiness' : 'health'} path).`,
      'option httpchk',
      `http-check send meth GET uri ${path}`,
      'http-check expect rstatus ^2',
      '# A request whose connection is refused, or closed without an answer, by an instance that',
      '# is stopping or restarting is sent again, to another server. Only GET and HEAD are sent',
      '# again after they reached a server: others may have had an effect.',
      'retries 3',
      'option redispatch 1',
      'retry-on conn-failure empty-response',
      'http-request disable-l7-retry unless METH_GET',
    )
  } else {
    add(
      'mode tcp',
      'balance roundrobin',
      '# Up while a TCP connection to its port succeeds (no HTTP path in readiness or health).',
      '# A connection refused by an instance that is restarting is tried on another server.',
      'retries 3',
      'option redispatch 1',
    )
  }
  add('timeout connect 1s', 'timeout check 2s')
  let perServer = ''
  if (agent) {
    add(
      `# tandem's agent (${address(agent.host, agent.port)}) answers for each instance: drain`,
      '# while a rollout is about to stop it (no new connections), down while it stops, starts or',
      '# has failed, up when it is ready again; HAProxy knows within agent-inter.',
      `default-server check ${CHECK} agent-check agent-addr ${agentAddress(agent.host, options)} agent-port ${agent.port} agent-inter ${AGENT_INTER}`,
    )
    perServer = ' agent-send'
  } else {
    add(
      '# Without control.agent in the config, HAProxy learns of a drain only when the instance',
      '# stops: add it to have rollouts take instances out before they stop.',
      `default-server check ${CHECK}`,
    )
  }
  for (const i of c.instances) {
    const send = perServer ? `${perServer} "${i.id}\\n"` : ''
    add(`server ${serverName(i)} ${address(options.host ?? i.host, i.port!)}${send}`)
  }
  return lines
}

/**
 * HAProxy backend sections for the components of `plan` that have ports, one server per
 * instance: health check on the readiness path (or TCP), retries with redispatch so that a
 * connection refused during a restart is retried on another server, and, when `control.agent`
 * is configured, tandem's agent-check so that HAProxy drains an instance before a rollout stops
 * it. docs/load-balancers.md explains each line. Fails with EUSAGE naming a component that does
 * not exist or has no ports.
 */
export const haproxyConfig = (plan: Plan, options: LbConfigOptions = {}): string => {
  const names = plan.components.map((c) => c.name)
  for (const n of options.components ?? []) {
    if (!names.includes(n)) {
      throw new TandemError(
        'EUSAGE',
        `no component "${n}" in ${plan.configFile}; expected one of ${names.join(', ')}`,
      )
    }
  }
  const wanted = plan.components.filter(
    (c) => !options.components?.length || options.components.includes(c.name),
  )
  const withPorts = wanted.filter((c) => c.instances.every((i) => i.port !== undefined))
  for (const c of wanted) {
    if (!withPorts.includes(c) && options.components?.includes(c.name)) {
      throw new TandemError(
        'EUSAGE',
        `component "${c.name}" has no ports: a load balancer has nothing to connect to`,
      )
    }
  }
  if (!withPorts.length) {
    throw new TandemError(
      'EUSAGE',
      `no component in ${plan.configFile} has ports: a load balancer has nothing to connect to`,
    )
  }
  const out = [
    `# HAProxy backends for tandem node "${plan.node}", from ${plan.configFile}`,
    '# (tandem lb-config haproxy; docs/load-balancers.md explains every line).',
    '# Use one from a frontend, for example:',
    '#   frontend www',
    '#       bind :8080',
    `#       mode ${httpCheckPath(withPorts[0]!) === undefined ? 'tcp' : 'http'}`,
    `#       default_backend tandem_${withPorts[0]!.name}`,
  ]
  for (const c of withPorts) out.push('', ...backend(c, plan, options))
  return out.join('\n') + '\n'
}
