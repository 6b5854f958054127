// A 3-member etcd on loopback for bench:failover's etcd backend (issue 12): Debian's etcd-server
// (scripts/ensure-tools.sh installs it), each member in its own process group with its data dir
// under the benchmark's temp dir (so the benchmark's leftover check finds any of them), stopped
// by group at the end and on Ctrl-C.
import { spawn, spawnSync } from 'node:child_process'
import { closeSync, mkdirSync, openSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { killGroup } from './common.js'

const CANDIDATES = ['/usr/bin/etcd', '/usr/local/bin/etcd']

/** The etcd binary, or undefined when none runs. */
export const etcdBin = () => CANDIDATES.find((p) => spawnSync(p, ['--version']).status === 0)

/** Why the etcd backend cannot be measured here, or undefined. */
export const etcdMissing = () =>
  etcdBin() === undefined
    ? `no etcd (${CANDIDATES.join(' or ')}; Debian package etcd-server, or BENCH_BACKENDS=dir)`
    : undefined

const healthy = async (url) => {
  try {
    const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) })
    return (await res.json()).health === 'true'
  } catch {
    return false
  }
}

/**
 * Starts three members in `home`, member i on ports[2i] (client) and ports[2i+1] (peer), and
 * waits until each reports health. Resolves with { endpoints, pids, version, stop(), logs() }.
 */
export const startEtcd = async (home, ports) => {
  const bin = etcdBin()
  if (!bin) throw new Error(etcdMissing())
  const members = [0, 1, 2].map((i) => ({
    name: `m${i}`,
    clientUrl: `http://127.0.0.1:${ports[2 * i]}`,
    peerUrl: `http://127.0.0.1:${ports[2 * i + 1]}`,
    dataDir: join(home, `m${i}`),
    log: join(home, `m${i}.log`),
  }))
  const initial = members.map((m) => `${m.name}=${m.peerUrl}`).join(',')
  const pids = []
  for (const m of members) {
    mkdirSync(m.dataDir, { recursive: true })
    const out = openSync(m.log, 'a')
    const child = spawn(
      bin,
      [
        '--name',
        m.name,
        '--data-dir',
        m.dataDir,
        '--listen-client-urls',
        m.clientUrl,
        '--advertise-client-urls',
        m.clientUrl,
        '--listen-peer-urls',
        m.peerUrl,
        '--initial-advertise-peer-urls',
        m.peerUrl,
        '--initial-cluster',
        initial,
        '--initial-cluster-token',
        `tandem-bench-${ports[0]}`,
        '--initial-cluster-state',
        'new',
      ],
      { detached: true, stdio: ['ignore', out, out] },
    )
    closeSync(out)
    pids.push(child.pid)
  }
  const stop = () => {
    for (const pid of pids) killGroup(pid, 'SIGKILL')
  }
  const logs = () =>
    members
      .map((m) => `--- ${m.name}\n${readFileSync(m.log, 'utf8').split('\n').slice(-15).join('\n')}`)
      .join('\n')
  const deadline = performance.now() + 30_000
  for (;;) {
    if ((await Promise.all(members.map((m) => healthy(m.clientUrl)))).every(Boolean)) break
    if (performance.now() > deadline) {
      stop()
      throw new Error(`etcd not healthy after 30 s:\n${logs()}`)
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  const version = spawnSync(bin, ['--version']).stdout.toString().split('\n')[0]
  return { endpoints: members.map((m) => m.clientUrl), pids, version, stop, logs }
}
