import { describeBackend } from '../ha/backend.js'
import { describeExit } from '../supervisor/instance.js'
import type { StatusReply } from '../status.js'

/** 1h2m, 3m4s, 5.1s: uptimes an operator reads at a glance. */
export const formatDuration = (ms: number | undefined): string => {
  if (ms === undefined) return '-'
  const s = Math.floor(ms / 1000)
  if (s < 60) return `${(ms / 1000).toFixed(1)}s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m}m${s % 60}s`
  const h = Math.floor(m / 60)
  return h < 48 ? `${h}h${m % 60}m` : `${Math.floor(h / 24)}d${h % 24}h`
}

/** 812K, 97.3M, 1.2G. */
export const formatBytes = (n: number): string =>
  n < 1024 * 1024
    ? `${Math.round(n / 1024)}K`
    : n < 1024 ** 3
      ? `${(n / 1048576).toFixed(1)}M`
      : `${(n / 1024 ** 3).toFixed(1)}G`

/** The table `tandem status` prints. */
export const formatStatus = (s: StatusReply): string => {
  const head = [
    'INSTANCE',
    'PORT',
    'PID',
    'STATE',
    'RESTARTS',
    'UPTIME',
    'CPU',
    'MEM',
    'USER',
    'LAST EXIT / REASON',
  ]
  const rows = s.instances.map((i) => [
    i.id,
    i.port === undefined ? '-' : String(i.port),
    i.pid === undefined ? '-' : String(i.pid),
    i.stoppedByOperator && i.state === 'stopped' ? 'stopped (by operator)' : i.state,
    String(i.restarts),
    formatDuration(i.uptimeMs),
    i.cpuPercent === undefined ? '-' : `${i.cpuPercent.toFixed(1)}%`,
    i.rssBytes === undefined ? '-' : formatBytes(i.rssBytes),
    i.user ?? '-',
    i.reason ?? (i.lastExit ? describeExit(i.lastExit) : '-'),
  ])
  const widths = head.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)))
  const line = (r: string[]) =>
    r.map((v, c) => (c === r.length - 1 ? v : v.padEnd(widths[c]!))).join('  ')
  return [
    `node ${s.node}  role ${s.role}  supervisor pid ${s.pid}  config ${s.config}`,
    ...(s.cluster
      ? [
          `cluster ${s.cluster.name}  epoch ${s.cluster.epoch}  ${s.cluster.backend ? describeBackend(s.cluster.backend) : ''}` +
            (s.cluster.heartbeat
              ? `  active heartbeat (epoch ${s.cluster.heartbeat.epoch}) last changed ${formatDuration(s.cluster.heartbeat.quietMs)} ago`
              : ''),
        ]
      : []),
    ...(s.cluster?.backend?.endpoints ?? []).map(
      (e) =>
        `etcd ${e.endpoint}  ${e.ok === undefined ? 'not checked yet' : e.ok ? `ok${e.leader ? ' (leader)' : ''}${e.version ? `  version ${e.version}` : ''}` : `failing: ${e.error ?? 'no answer'}`}`,
    ),
    ...(s.cluster?.peers ?? []).map(
      (p) =>
        `peer ${p.node}  role ${p.role}  epoch ${p.epoch}  pid ${p.pid}  presence last changed ${formatDuration(p.lastChangeAgoMs)} ago`,
    ),
    line(head),
    ...rows.map(line),
    ...(s.logs ?? []).flatMap((w) =>
      w.error || w.droppedLines
        ? [
            `LOG ${w.path}: ${w.error ? `cannot write since ${new Date(w.errorSince ?? 0).toISOString()}: ${w.error}` : 'writing'}${w.droppedLines ? `; ${w.droppedLines} lines dropped` : ''}`,
          ]
        : [],
    ),
  ].join('\n')
}
