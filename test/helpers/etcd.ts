// A real etcd cluster (Debian's etcd-server, installed by scripts/ensure-tools.sh) of 1 or 3
// members on loopback ports 27000-27299, each member with its own data dir and process group:
// stopped, paused (SIGSTOP) and restarted by the HA tests on etcd. Optionally on https (with
// client certificates) and with etcd's authentication enabled.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdirSync, openSync, closeSync, readFileSync } from 'node:fs'
import https from 'node:https'
import { createServer } from 'node:net'
import { join } from 'node:path'
import type { Test } from 'tap'
import { httpTransport, type EtcdTransport } from '../../src/ha/etcd-transport.js'
import { needTool } from './need-tool.js'
import { killGroup, tempDir, waitUntil } from './supervisor.js'
import type { TestPki } from './tls-certs.js'

const CANDIDATES = ['/usr/bin/etcd', '/usr/local/bin/etcd']

/** The etcd binary, or undefined when none runs. */
export const etcdBin = (): string | undefined =>
  CANDIDATES.find((p) => spawnSync(p, ['--version']).status === 0)

export const etcdAvailable = (): { ok: true } | { ok: false; why: string } =>
  etcdBin() !== undefined
    ? { ok: true }
    : { ok: false, why: `no etcd (${CANDIDATES.join(' or ')}; Debian package etcd-server)` }

/**
 * True when etcd is there. Otherwise fails the test under CI (where scripts/ensure-tools.sh
 * installs it) and skips it elsewhere, saying why.
 */
export const needEtcd = (t: Test): boolean => needTool(t, etcdAvailable())

const PORT_LOW = 27000
const PORT_HIGH = 27299
/** Where this process starts looking: test files running side by side start apart. */
let nextPort = PORT_LOW + ((process.pid * 7) % 30) * 10

const portFree = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const s = createServer()
    s.once('error', () => resolve(false))
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)))
  })

/** `n` consecutive free ports in the test range. */
const freePorts = async (n: number): Promise<number[]> => {
  for (let tries = 0; tries < 60; tries++) {
    if (nextPort + n - 1 > PORT_HIGH) nextPort = PORT_LOW
    const base = nextPort
    nextPort += Math.max(10, n)
    const ports = Array.from({ length: n }, (_, i) => base + i)
    if ((await Promise.all(ports.map(portFree))).every(Boolean)) return ports
  }
  throw new Error(`no ${n} free consecutive ports in ${PORT_LOW}-${PORT_HIGH}`)
}

export interface EtcdMember {
  name: string
  clientUrl: string
  peerUrl: string
  dataDir: string
  log: string
  proc: ChildProcess | undefined
}

/** POST to one member's gateway, its JSON answer (rejects on HTTP errors and timeouts). */
export const gateway = async (url: string, path: string, body: unknown): Promise<unknown> => {
  const res = await fetch(url + path, {
    method: 'POST',
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(2000),
  })
  const json = (await res.json()) as unknown
  if (!res.ok) throw new Error(`${url}${path}: HTTP ${res.status} ${JSON.stringify(json)}`)
  return json
}

export interface EtcdStartOptions {
  /**
   * Serve clients on https with the PKI's server certificate (peers stay on http). With
   * `clientCertAuth`, etcd also wants a client certificate signed by the PKI's CA.
   */
  tls?: { pki: TestPki; clientCertAuth?: boolean }
  /** More etcd flags (`--auth-token-ttl`, `--auth-token`). */
  args?: string[]
}

/** A user `enableAuth` makes, with read and write on the keys under `prefix`. */
export interface EtcdTestUser {
  name: string
  password: string
  prefix: string
}

export class EtcdCluster {
  readonly members: EtcdMember[]
  readonly #bin: string
  readonly #options: EtcdStartOptions
  /** How the helper itself reaches the members when they are on https (the PKI's client cert). */
  readonly #tlsTransport: EtcdTransport | undefined

  private constructor(bin: string, members: EtcdMember[], options: EtcdStartOptions) {
    this.#bin = bin
    this.members = members
    this.#options = options
    const pki = options.tls?.pki
    this.#tlsTransport =
      pki &&
      httpTransport({
        ca: readFileSync(pki.ca),
        cert: readFileSync(pki.clientCert),
        key: readFileSync(pki.clientKey),
      })
  }

  /** Starts `size` members, killed at teardown, and waits until the cluster is healthy. */
  static async start(t: Test, size: 1 | 3, options: EtcdStartOptions = {}): Promise<EtcdCluster> {
    const bin = etcdBin()
    if (!bin) throw new Error('etcd is not installed (needEtcd first)')
    const dir = tempDir(t)
    const ports = await freePorts(2 * size)
    const scheme = options.tls ? 'https' : 'http'
    const members = Array.from({ length: size }, (_, i): EtcdMember => {
      const dataDir = join(dir, `m${i}`)
      mkdirSync(dataDir)
      return {
        name: `m${i}`,
        clientUrl: `${scheme}://127.0.0.1:${ports[2 * i]}`,
        peerUrl: `http://127.0.0.1:${ports[2 * i + 1]}`,
        dataDir,
        log: join(dir, `m${i}.log`),
        proc: undefined,
      }
    })
    const cluster = new EtcdCluster(bin, members, options)
    t.teardown(() => cluster.killAll())
    for (let i = 0; i < size; i++) cluster.#spawn(i)
    await cluster.waitHealthy()
    return cluster
  }

  get endpoints(): string[] {
    return this.members.map((m) => m.clientUrl)
  }

  #spawn(i: number): void {
    const m = this.members[i]!
    const cluster = this.members.map((x) => `${x.name}=${x.peerUrl}`).join(',')
    const out = openSync(m.log, 'a')
    const tls = this.#options.tls
    const tlsArgs = tls
      ? [
          '--cert-file',
          tls.pki.serverCert,
          '--key-file',
          tls.pki.serverKey,
          '--trusted-ca-file',
          tls.pki.ca,
          ...(tls.clientCertAuth ? ['--client-cert-auth'] : []),
        ]
      : []
    // Its own process group, killed by group at teardown. A restart reuses the data dir: etcd
    // then ignores the initial-cluster flags and rejoins with what it stored.
    m.proc = spawn(
      this.#bin,
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
        cluster,
        '--initial-cluster-token',
        `tandem-test-${this.members[0]!.peerUrl}`,
        '--initial-cluster-state',
        'new',
        ...tlsArgs,
        ...(this.#options.args ?? []),
      ],
      { detached: true, stdio: ['ignore', out, out] },
    )
    closeSync(out)
  }

  /** True when `i` answers /health with quorum (its own view). */
  async healthy(i: number): Promise<boolean> {
    const url = `${this.members[i]!.clientUrl}/health`
    try {
      const pki = this.#options.tls?.pki
      const body = pki
        ? await httpsGet(url, pki)
        : await (await fetch(url, { signal: AbortSignal.timeout(1000) })).text()
      return (JSON.parse(body) as { health?: string }).health === 'true'
    } catch {
      return false
    }
  }

  /** POST to member `i`'s gateway (over https with the PKI's client certificate if on TLS). */
  call(i: number, path: string, body: unknown, token?: string): Promise<unknown> {
    const url = this.members[i]!.clientUrl
    if (!this.#tlsTransport && token === undefined) return gateway(url, path, body)
    return (this.#tlsTransport ?? httpTransport())(
      url,
      path,
      body,
      AbortSignal.timeout(2000),
      token === undefined ? {} : { authorization: token },
    )
  }

  /**
   * Turns etcd's authentication on: `root` (role root) with `rootPassword`, and each user with a
   * role of its own name that reads and writes the keys under its prefix.
   */
  async enableAuth(rootPassword: string, users: EtcdTestUser[]): Promise<void> {
    await this.call(0, '/v3/auth/user/add', { name: 'root', password: rootPassword })
    await this.call(0, '/v3/auth/user/grant', { user: 'root', role: 'root' })
    for (const u of users) {
      const key = Buffer.from(u.prefix)
      const end = Buffer.from(key)
      end[end.length - 1] = end[end.length - 1]! + 1
      await this.call(0, '/v3/auth/user/add', { name: u.name, password: u.password })
      await this.call(0, '/v3/auth/role/add', { name: u.name })
      await this.call(0, '/v3/auth/role/grant', {
        name: u.name,
        perm: {
          permType: 'READWRITE',
          key: key.toString('base64'),
          range_end: end.toString('base64'),
        },
      })
      await this.call(0, '/v3/auth/user/grant', { user: u.name, role: u.name })
    }
    await this.call(0, '/v3/auth/enable', {})
  }

  /** Waits until every running member reports health (a quorum and a leader). */
  async waitHealthy(): Promise<void> {
    const running = this.members.map((m, i) => (m.proc ? i : -1)).filter((i) => i >= 0)
    await waitUntil(
      `etcd members ${running.join(', ')} healthy (logs: ${this.members.map((m) => m.log).join(' ')})`,
      async () => (await Promise.all(running.map((i) => this.healthy(i)))).every(Boolean),
    )
  }

  /** The index of the current raft leader, as the first running member that answers says. */
  async leader(): Promise<number> {
    return waitUntil('an etcd leader', async () => {
      for (const m of this.members) {
        if (!m.proc) continue
        try {
          const s = (await this.call(this.members.indexOf(m), '/v3/maintenance/status', {})) as {
            header?: { member_id?: string }
            leader?: string
          }
          if (!s.leader || s.leader === '0') continue
          if (s.header?.member_id === s.leader) return this.members.indexOf(m) + 1
          const ids = await Promise.all(
            this.members.map((_, j) =>
              this.call(j, '/v3/maintenance/status', {})
                .then((y) => (y as { header?: { member_id?: string } }).header?.member_id)
                .catch(() => undefined),
            ),
          )
          const i = ids.indexOf(s.leader)
          if (i >= 0) return i + 1
        } catch {
          // ask the next one
        }
      }
      return 0
    }).then((i) => i - 1)
  }

  /** kill -9 of member `i`'s process group. */
  stop(i: number): void {
    const m = this.members[i]!
    if (m.proc?.pid) killGroup(m.proc.pid)
    m.proc = undefined
  }

  pause(i: number): void {
    const pid = this.members[i]!.proc?.pid
    if (pid) process.kill(-pid, 'SIGSTOP')
  }

  resume(i: number): void {
    const pid = this.members[i]!.proc?.pid
    if (pid) process.kill(-pid, 'SIGCONT')
  }

  /** Starts a stopped member again on its data dir. */
  restart(i: number): void {
    if (this.members[i]!.proc) throw new Error(`etcd member ${i} is running`)
    this.#spawn(i)
  }

  killAll(): void {
    for (let i = 0; i < this.members.length; i++) {
      this.resume(i)
      this.stop(i)
    }
  }

  /** The members' logs, for a failing test's diagnostics. */
  logs(): string {
    return this.members
      .map((m) => `--- ${m.name}\n${readFileSync(m.log, 'utf8').split('\n').slice(-30).join('\n')}`)
      .join('\n')
  }
}

/** GET over https with the PKI's CA and client certificate: the body (rejects after 1 s). */
const httpsGet = (url: string, pki: TestPki): Promise<string> =>
  new Promise((resolve, reject) => {
    const req = https.get(
      url,
      {
        ca: readFileSync(pki.ca),
        cert: readFileSync(pki.clientCert),
        key: readFileSync(pki.clientKey),
        signal: AbortSignal.timeout(1000),
      },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
        res.on('error', reject)
      },
    )
    req.on('error', reject)
  })
