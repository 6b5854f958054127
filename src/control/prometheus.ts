import type { StatusReply } from '../status.js'
import type { InstanceStatus } from '../status.js'
import type { InstanceState, SupervisorSelf } from '../status.js'

export type { EventLoopLag, SupervisorSelf } from '../status.js'

/** The content type of the text exposition format this module writes. */
export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

/**
 * Every instance state, in lifecycle order: `tandem_instance_state` has one series per state so
 * that a query never meets a missing series (the usual enum pattern). The Record makes the
 * compiler insist on a new state being added here.
 */
const STATE_ORDER: Record<InstanceState, number> = {
  stopped: 0,
  starting: 1,
  ready: 2,
  stopping: 3,
  exited: 4,
  backoff: 5,
  failed: 6,
}
export const INSTANCE_STATES = (Object.keys(STATE_ORDER) as InstanceState[]).sort(
  (a, b) => STATE_ORDER[a] - STATE_ORDER[b],
)

/** CPU and RSS are sampled while a process runs; read as optional whatever InstanceStatus says. */
type SampledInstance = InstanceStatus & { cpuPercent?: number; rssBytes?: number }

type Labels = [name: string, value: string][]

/** Label values escape backslash, double quote and newline (exposition format 0.0.4). */
export const escapeLabelValue = (value: string): string =>
  value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')

/** HELP text escapes backslash and newline only. */
const escapeHelp = (text: string): string => text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')

/** Go's float syntax, which Prometheus parses: NaN, +Inf, -Inf, or a JavaScript number. */
export const formatValue = (n: number): string =>
  Number.isNaN(n) ? 'NaN' : n === Infinity ? '+Inf' : n === -Infinity ? '-Inf' : String(n)

const sample = (name: string, labels: Labels, value: number): string => {
  const set = labels.map(([k, v]) => `${k}="${escapeLabelValue(v)}"`).join(',')
  return `${name}${set ? `{${set}}` : ''} ${formatValue(value)}`
}

interface Family {
  name: string
  type: 'gauge' | 'counter'
  help: string
  samples: [Labels, number][]
}

/**
 * The Prometheus text exposition format (0.0.4) of a status reply and the supervisor's own
 * figures. Families come in a fixed order, instances sorted by component then index, so two
 * scrapes of the same state are byte-identical.
 *
 * Instance series carry `node`, `component`, `index` and `id` (`gateway#1`). The index is not
 * called `instance`: Prometheus sets that label itself (the scrape target) and would rename
 * ours to `exported_instance` unless the scrape job has `honor_labels: true`.
 *
 * Event-loop lag is a gauge with `quantile` labels (0.5, 0.99, and 1 for the maximum), not a
 * summary: its window is rolling, so there is no monotonic `_sum` or `_count` to go with it.
 */
export const formatMetrics = (status: StatusReply, self: SupervisorSelf): string => {
  const instances = [...(status.instances as SampledInstance[])].sort(
    (a, b) =>
      (a.component < b.component ? -1 : a.component > b.component ? 1 : 0) || a.index - b.index,
  )
  const labelsOf = (i: SampledInstance): Labels => [
    ['node', status.node],
    ['component', i.component],
    ['index', String(i.index)],
    ['id', i.id],
  ]
  const perInstance = (pick: (i: SampledInstance) => number | undefined): [Labels, number][] =>
    instances.flatMap((i) => {
      const v = pick(i)
      return v === undefined ? [] : [[labelsOf(i), v] as [Labels, number]]
    })
  const node: Labels = [['node', status.node]]

  const families: Family[] = [
    {
      name: 'tandem_instance_up',
      type: 'gauge',
      help: 'Whether the instance is ready (1) or not (0).',
      samples: perInstance((i) => (i.state === 'ready' ? 1 : 0)),
    },
    {
      name: 'tandem_instance_state',
      type: 'gauge',
      help: 'The instance state: 1 for the current state, 0 for the others.',
      samples: instances.flatMap((i) =>
        INSTANCE_STATES.map(
          (s) => [[...labelsOf(i), ['state', s]], i.state === s ? 1 : 0] as [Labels, number],
        ),
      ),
    },
    {
      name: 'tandem_instance_restarts_total',
      type: 'counter',
      help: 'Processes spawned for the instance after its first one.',
      samples: perInstance((i) => i.restarts),
    },
    {
      name: 'tandem_instance_cpu_percent',
      type: 'gauge',
      help: "CPU use of the instance's process group at the last sample, in percent of one core.",
      samples: perInstance((i) => i.cpuPercent),
    },
    {
      name: 'tandem_instance_rss_bytes',
      type: 'gauge',
      help: "Resident set size of the instance's process group at the last sample.",
      samples: perInstance((i) => i.rssBytes),
    },
    {
      name: 'tandem_instance_uptime_seconds',
      type: 'gauge',
      help: "Time since the instance's current process was spawned (absent when it has none).",
      samples: perInstance((i) => (i.uptimeMs === undefined ? undefined : i.uptimeMs / 1000)),
    },
    {
      name: 'tandem_supervisor_rss_bytes',
      type: 'gauge',
      help: 'Resident set size of the supervisor process.',
      samples: [[node, self.rssBytes]],
    },
    {
      name: 'tandem_supervisor_event_loop_lag_seconds',
      type: 'gauge',
      help: "Delay of the supervisor's event loop over a recent window: quantiles 0.5 and 0.99, and 1 for the maximum.",
      samples: (
        [
          ['0.5', self.eventLoopLagMs.p50],
          ['0.99', self.eventLoopLagMs.p99],
          ['1', self.eventLoopLagMs.max],
        ] as const
      ).map(([q, ms]) => [[...node, ['quantile', q]], ms / 1000]),
    },
    {
      name: 'tandem_supervisor_uptime_seconds',
      type: 'gauge',
      help: 'Time since the supervisor started.',
      samples: [[node, self.uptimeMs / 1000]],
    },
  ]

  const lines: string[] = []
  for (const f of families) {
    lines.push(`# HELP ${f.name} ${escapeHelp(f.help)}`, `# TYPE ${f.name} ${f.type}`)
    for (const [labels, value] of f.samples) lines.push(sample(f.name, labels, value))
  }
  return lines.join('\n') + '\n'
}
