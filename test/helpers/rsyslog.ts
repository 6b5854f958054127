// A real rsyslogd (Debian's rsyslog) as an unprivileged-style foreground process with its own
// config, work dir and pid file: a TCP and a UDP input on loopback, every message to a file, one
// line each: `<app-name>|<procid>|<msgid>|<severity>|<structured-data>|<msg>`.
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { accepting, killGroup, waitUntil } from './supervisor.js'

export const RSYSLOGD = '/usr/sbin/rsyslogd'

export interface Received {
  app: string
  procid: string
  msgid: string
  severity: string
  sd: string
  msg: string
}

export class Rsyslog {
  readonly out: string
  readonly #conf: string
  readonly #pidFile: string
  readonly #tcpPort: number
  #proc: ChildProcess | undefined
  #exited: Promise<void> = Promise.resolve()

  constructor(dir: string, ports: { tcp: number; udp: number }) {
    const work = join(dir, 'rsyslog')
    mkdirSync(work, { recursive: true })
    this.out = join(work, 'received.log')
    this.#conf = join(work, 'rsyslog.conf')
    this.#pidFile = join(work, 'rsyslogd.pid')
    this.#tcpPort = ports.tcp
    writeFileSync(
      this.#conf,
      `global(workDirectory="${work}" maxMessageSize="64k")
module(load="imtcp")
module(load="imudp")
input(type="imtcp" address="127.0.0.1" port="${ports.tcp}")
input(type="imudp" address="127.0.0.1" port="${ports.udp}")
template(name="fields" type="string" string="%app-name%|%procid%|%msgid%|%syslogseverity%|%structured-data%|%msg%\\n")
*.* action(type="omfile" file="${this.out}" template="fields")
`,
    )
  }

  /** Starts rsyslogd and waits until its TCP input accepts connections. */
  async start(): Promise<void> {
    const proc = spawn(RSYSLOGD, ['-n', '-f', this.#conf, '-i', this.#pidFile], {
      detached: true,
      stdio: ['ignore', 'ignore', 'pipe'],
    })
    let stderr = ''
    proc.stderr.on('data', (d) => (stderr += d))
    this.#proc = proc
    this.#exited = new Promise((r) => proc.once('exit', () => r()))
    await waitUntil(`rsyslogd to accept on ${this.#tcpPort} (${stderr})`, async () => {
      if (proc.exitCode !== null) throw new Error(`rsyslogd exited: ${stderr}`)
      return accepting(this.#tcpPort)
    })
  }

  /** Stops it (SIGTERM, then SIGKILL) and waits for its exit. */
  async stop(): Promise<void> {
    const proc = this.#proc
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return
    process.kill(proc.pid!, 'SIGTERM')
    const killed = setTimeout(() => killGroup(proc.pid!), 10_000)
    await this.#exited
    clearTimeout(killed)
  }

  kill(): void {
    if (this.#proc?.pid) killGroup(this.#proc.pid)
  }

  /** Every message received so far. */
  received(): Received[] {
    if (!existsSync(this.out)) return []
    return readFileSync(this.out, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => {
        const [app = '', procid = '', msgid = '', severity = '', ...rest] = l.split('|')
        const tail = rest.join('|')
        const cut = tail.indexOf(']|')
        return {
          app,
          procid,
          msgid,
          severity,
          sd: cut < 0 ? '' : tail.slice(0, cut + 1),
          msg: cut < 0 ? tail.replace(/^-\|/, '') : tail.slice(cut + 2),
        }
      })
  }
}
