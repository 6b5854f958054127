import { statusInstance, type StatusInstance } from '../helpers/status.js'
import t from 'tap'
import type { StatusReply } from '../../src/status.js'
import {
  escapeLabelValue,
  formatMetrics,
  formatValue,
  INSTANCE_STATES,
  type SupervisorSelf,
} from '../../src/control/prometheus.js'

type Instance = StatusInstance

const inst = (id: string, over: Partial<Instance> = {}): Instance =>
  statusInstance(id, { uptimeMs: 12_500, ...over })

const reply = (instances: Instance[], node = 'host-a'): StatusReply => ({
  node,
  role: 'standalone',
  pid: 4242,
  config: '/etc/tandem.json',
  instances,
})

const self: SupervisorSelf = {
  rssBytes: 52_428_800,
  eventLoopLagMs: { p50: 0.25, p99: 3, max: 12.5 },
  uptimeMs: 90_000,
}

// The exposition format 0.0.4, one sample line: name, optional labels, value, optional timestamp.
const LABEL_VALUE = String.raw`(?:[^"\\\n]|\\[\\"n])*`
const LABEL = String.raw`[a-zA-Z_][a-zA-Z0-9_]*="${LABEL_VALUE}"`
const SAMPLE = new RegExp(
  String.raw`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:${LABEL})(?:,${LABEL})*,?)?\})? (NaN|[+-]Inf|[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(?: -?\d+)?$`,
)
const LABEL_G = new RegExp(String.raw`([a-zA-Z_][a-zA-Z0-9_]*)="(${LABEL_VALUE})"`, 'g')

const unescape = (v: string) => v.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c))

interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

/** Parses the whole text strictly: every line is a HELP, a TYPE or a sample of the TYPE'd family. */
const parse = (text: string) => {
  const samples: Sample[] = []
  const help = new Map<string, string>()
  const types = new Map<string, string>()
  let family: string | undefined
  if (!text.endsWith('\n')) throw new Error('text does not end with a newline')
  for (const line of text.slice(0, -1).split('\n')) {
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line)
    if (meta) {
      const [, kind, name, rest] = meta as unknown as [string, string, string, string]
      const map = kind === 'HELP' ? help : types
      if (map.has(name)) throw new Error(`second ${kind} for ${name}`)
      map.set(name, rest)
      if (kind === 'TYPE') {
        if (!help.has(name)) throw new Error(`TYPE before HELP for ${name}`)
        if (!['gauge', 'counter'].includes(rest)) throw new Error(`type ${rest}`)
        family = name
      }
      continue
    }
    const m = SAMPLE.exec(line)
    if (!m) throw new Error(`not a sample line: ${JSON.stringify(line)}`)
    const [, name, labelText, value] = m as unknown as [string, string, string | undefined, string]
    if (name !== family) throw new Error(`${name} outside its family (${family})`)
    const labels: Record<string, string> = {}
    for (const [, k, v] of (labelText ?? '').matchAll(LABEL_G)) labels[k!] = unescape(v!)
    samples.push({
      name,
      labels,
      value: value === '+Inf' ? Infinity : value === '-Inf' ? -Infinity : Number(value),
    })
  }
  return { samples, help, types }
}

const of = (samples: Sample[], name: string) => samples.filter((s) => s.name === name)

t.test('every line is a HELP, a TYPE or a sample line of the exposition format', async (t) => {
  const text = formatMetrics(
    reply([
      inst('gateway#1', { cpuPercent: 12.5, rssBytes: 1024 }),
      inst('discovery#0', { state: 'backoff', restarts: 3, pid: undefined, uptimeMs: undefined }),
    ]),
    self,
  )
  const { samples, help, types } = parse(text)
  t.same(
    [...types],
    [
      ['tandem_instance_up', 'gauge'],
      ['tandem_instance_state', 'gauge'],
      ['tandem_instance_restarts_total', 'counter'],
      ['tandem_instance_cpu_percent', 'gauge'],
      ['tandem_instance_rss_bytes', 'gauge'],
      ['tandem_instance_uptime_seconds', 'gauge'],
      ['tandem_supervisor_rss_bytes', 'gauge'],
      ['tandem_supervisor_event_loop_lag_seconds', 'gauge'],
      ['tandem_supervisor_uptime_seconds', 'gauge'],
    ],
  )
  t.same([...help.keys()], [...types.keys()], 'one HELP per family, before its TYPE')
  for (const [name, text] of help) t.ok(text.length > 10, `${name} has help text`)
  t.ok(
    samples.every((s) => s.name.startsWith('tandem_')),
    'every metric is prefixed tandem_',
  )
  t.same(
    of(samples, 'tandem_instance_restarts_total').map((s) => [s.labels, s.value]),
    [
      [{ node: 'host-a', component: 'discovery', index: '0', id: 'discovery#0' }, 3],
      [{ node: 'host-a', component: 'gateway', index: '1', id: 'gateway#1' }, 0],
    ],
  )
  t.same(
    of(samples, 'tandem_instance_up').map((s) => [s.labels.id, s.value]),
    [
      ['discovery#0', 0],
      ['gateway#1', 1],
    ],
  )
  t.same(
    of(samples, 'tandem_instance_uptime_seconds').map((s) => [s.labels.id, s.value]),
    [['gateway#1', 12.5]],
    'uptime only for an instance with a process',
  )
})

t.test('supervisor figures are in bytes and seconds, lag as quantile series', async (t) => {
  const { samples } = parse(formatMetrics(reply([]), self))
  t.same(
    samples.map((s) => [s.name, s.labels, s.value]),
    [
      ['tandem_supervisor_rss_bytes', { node: 'host-a' }, 52_428_800],
      ['tandem_supervisor_event_loop_lag_seconds', { node: 'host-a', quantile: '0.5' }, 0.00025],
      ['tandem_supervisor_event_loop_lag_seconds', { node: 'host-a', quantile: '0.99' }, 0.003],
      ['tandem_supervisor_event_loop_lag_seconds', { node: 'host-a', quantile: '1' }, 0.0125],
      ['tandem_supervisor_uptime_seconds', { node: 'host-a' }, 90],
    ],
  )
})

t.test('escapes backslash, double quote and newline in label values', async (t) => {
  const nasty = 'a\\b"c\nd'
  t.equal(escapeLabelValue(nasty), 'a\\\\b\\"c\\nd')
  t.equal(escapeLabelValue('plain #1 {x=y}'), 'plain #1 {x=y}')
  const text = formatMetrics(reply([inst('gw#0', { id: `gw#0 ${nasty}` })], nasty), self)
  t.match(text, 'node="a\\\\b\\"c\\nd"')
  const { samples } = parse(text)
  const up = of(samples, 'tandem_instance_up')
  t.same(up[0]?.labels, { node: nasty, component: 'gw', index: '0', id: `gw#0 ${nasty}` })
})

t.test('state is an enum: one series per state, 1 for the current one', async (t) => {
  t.same(INSTANCE_STATES, [
    'stopped',
    'starting',
    'ready',
    'stopping',
    'exited',
    'backoff',
    'failed',
  ])
  for (const state of INSTANCE_STATES) {
    const { samples } = parse(formatMetrics(reply([inst('gateway#0', { state })]), self))
    const series = of(samples, 'tandem_instance_state')
    t.same(
      series.map((s) => [s.labels.state, s.value]),
      INSTANCE_STATES.map((s) => [s, s === state ? 1 : 0]),
      state,
    )
    t.ok(
      series.every((s) => s.labels.id === 'gateway#0' && s.labels.node === 'host-a'),
      'each with the instance labels',
    )
    t.same(
      of(samples, 'tandem_instance_up').map((s) => s.value),
      [state === 'ready' ? 1 : 0],
    )
  }
})

t.test('cpu and rss appear only for instances that have them', async (t) => {
  const without = parse(formatMetrics(reply([inst('gateway#0'), inst('gateway#1')]), self))
  t.same(of(without.samples, 'tandem_instance_cpu_percent'), [])
  t.same(of(without.samples, 'tandem_instance_rss_bytes'), [])
  t.ok(without.types.has('tandem_instance_cpu_percent'), 'the family is still declared')

  const sampled = { cpuPercent: 37.5, rssBytes: 73_400_320 } as Partial<Instance>
  const withSome = parse(
    formatMetrics(reply([inst('gateway#0'), inst('gateway#1', sampled)]), self),
  )
  t.same(
    of(withSome.samples, 'tandem_instance_cpu_percent').map((s) => [s.labels.id, s.value]),
    [['gateway#1', 37.5]],
  )
  t.same(
    of(withSome.samples, 'tandem_instance_rss_bytes').map((s) => [s.labels.id, s.value]),
    [['gateway#1', 73_400_320]],
  )
  const zero = parse(
    formatMetrics(reply([inst('gateway#0', { cpuPercent: 0, rssBytes: 0 })]), self),
  )
  t.same(
    of(zero.samples, 'tandem_instance_cpu_percent').map((s) => s.value),
    [0],
    'a zero sample is a sample',
  )
})

t.test(
  'output is deterministic: component, then numeric index, whatever the input order',
  async (t) => {
    const instances = [inst('gateway#10'), inst('gateway#2'), inst('discovery#0'), inst('api#1')]
    const text = formatMetrics(reply(instances), self)
    t.equal(formatMetrics(reply([...instances].reverse()), self), text)
    t.same(
      of(parse(text).samples, 'tandem_instance_up').map((s) => s.labels.id),
      ['api#1', 'discovery#0', 'gateway#2', 'gateway#10'],
    )
    t.same(instances[0]?.id, 'gateway#10', 'the caller’s array is not reordered')
  },
)

t.test('values in Go float syntax', async (t) => {
  t.equal(formatValue(1), '1')
  t.equal(formatValue(0.125), '0.125')
  t.equal(formatValue(NaN), 'NaN')
  t.equal(formatValue(Infinity), '+Inf')
  t.equal(formatValue(-Infinity), '-Inf')
  t.equal(formatValue(1e21), '1e+21')
  const { samples } = parse(
    formatMetrics(reply([]), { ...self, eventLoopLagMs: { p50: NaN, p99: 1e25, max: Infinity } }),
  )
  t.same(
    of(samples, 'tandem_supervisor_event_loop_lag_seconds').map((s) => s.value),
    [NaN, 1e22, Infinity],
  )
})
