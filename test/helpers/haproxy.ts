// A real HAProxy (Debian package haproxy, installed by .ci/run) in front of tandem's instances,
// configured with what `tandem lb-config haproxy` prints, and a constant request load through it.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import autocannon from 'autocannon'
import { cli, killGroup, waitUntil } from './supervisor.js'

/** The haproxy binary, or undefined when it is not installed (.ci/run installs it). */
export const haproxyBin = (): string | undefined => {
  for (const p of ['/usr/sbin/haproxy', '/usr/local/sbin/haproxy', '/usr/bin/haproxy']) {
    if (spawnSync(p, ['-v']).status === 0) return p
  }
  return undefined
}

/** One HAProxy process: a frontend on `port` in front of the backends tandem generated. */
export class Haproxy {
  readonly proc: ChildProcess
  readonly output: string[] = []
  readonly stats: string

  constructor(
    bin: string,
    dir: string,
    backends: string,
    readonly port: number,
    backend: string,
  ) {
    this.stats = join(dir, 'haproxy.sock')
    const cfg = join(dir, 'haproxy.cfg')
    writeFileSync(
      cfg,
      [
        'global',
        `    stats socket ${this.stats} mode 600 level admin`,
        '    log stderr format raw local0 notice',
        'defaults',
        '    log global',
        '    timeout client 30s',
        '    timeout server 30s',
        '    timeout connect 1s',
        'frontend www',
        `    bind 127.0.0.1:${port}`,
        '    mode http',
        `    default_backend ${backend}`,
        '',
        backends,
      ].join('\n'),
    )
    // -db: foreground, no daemon; its own process group, killed at teardown.
    this.proc = spawn(bin, ['-db', '-f', cfg], {
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    for (const s of [this.proc.stdout!, this.proc.stderr!])
      s.on('data', (d: Buffer) => this.output.push(...d.toString().split('\n').filter(Boolean)))
  }

  kill(): void {
    if (this.proc.pid) killGroup(this.proc.pid)
  }

  /** A command on the stats socket (`show stat`, `show servers state`...), its answer. */
  command(line: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const s = connect(this.stats)
      let out = ''
      s.on('data', (d: Buffer) => (out += d.toString()))
      s.on('end', () => resolve(out))
      s.on('error', reject)
      s.end(`${line}\n`)
    })
  }

  /** Each server of `backend` with its status as HAProxy shows it (UP, DOWN, DRAIN, MAINT...). */
  async servers(backend: string): Promise<Record<string, string>> {
    const csv = await this.command('show stat')
    const lines = csv.split('\n')
    const head = lines[0]!.replace(/^# /, '').split(',')
    const col = (name: string) => head.indexOf(name)
    const out: Record<string, string> = {}
    for (const l of lines.slice(1)) {
      const f = l.split(',')
      if (f[col('pxname')] !== backend) continue
      const sv = f[col('svname')]!
      if (sv !== 'BACKEND' && sv !== 'FRONTEND') out[sv] = f[col('status')]!
    }
    return out
  }

  /** Waits until every server of `backend` is UP. */
  async waitAllUp(backend: string, count: number): Promise<void> {
    await waitUntil(`all ${count} servers of ${backend} UP in HAProxy`, async () => {
      if (this.proc.exitCode !== null)
        throw new Error(`haproxy exited ${this.proc.exitCode}: ${this.output.join('\n')}`)
      const s = await this.servers(backend).catch(() => ({}))
      const up = Object.values(s).filter((v) => v === 'UP').length
      return up === count
    })
  }
}

/** `tandem lb-config haproxy` for `config`: the backends, as an operator would paste them. */
export const lbConfig = async (config: string, ...args: string[]): Promise<string> => {
  const r = await cli(['lb-config', 'haproxy', '-c', config, ...args])
  if (r.code !== 0) throw new Error(`lb-config failed (${r.code}): ${r.err}`)
  return r.out
}

export interface LoadResult {
  requests: number
  /** Connection errors and timeouts: requests that got no answer. */
  errors: number
  /** Answers other than 2xx. */
  non2xx: number
  p99Ms: number
}

/**
 * A constant request load on `url` (autocannon, `rate` requests/s over `connections` keep-alive
 * connections) until stop() is called: what a load balancer's clients see during a rollout.
 */
export const startLoad = (url: string, rate = 300, connections = 8) => {
  let finished!: (r: autocannon.Result) => void
  let failed!: (e: unknown) => void
  const done = new Promise<autocannon.Result>((resolve, reject) => {
    finished = resolve
    failed = reject
  })
  const instance = autocannon(
    { url, connections, overallRate: rate, duration: 3600, timeout: 10 },
    (err, result) => (err ? failed(err) : finished(result)),
  )
  return {
    stop: async (): Promise<LoadResult> => {
      instance.stop()
      const r = await done
      return {
        requests: r.requests.total,
        errors: r.errors + r.timeouts,
        non2xx: r.non2xx,
        p99Ms: r.latency.p99,
      }
    },
  }
}

/** The x-version headers of `n` requests to `url`, counted. */
export const versionsServed = async (url: string, n: number): Promise<Record<string, number>> => {
  const seen: Record<string, number> = {}
  for (let i = 0; i < n; i++) {
    const res = await fetch(url)
    await res.arrayBuffer()
    const v = `${res.status} ${res.headers.get('x-version') ?? '-'}`
    seen[v] = (seen[v] ?? 0) + 1
  }
  return seen
}
