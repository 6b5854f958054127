import { createSocket, type Socket as UdpSocket } from 'node:dgram'
import { readFileSync } from 'node:fs'
import { isIP, isIPv6, connect as tcpConnect, type Socket } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import type { SyslogSpec } from '../config/plan.js'
import { errorMessage } from '../errors.js'

/** Reconnects start this soon after a failure and double up to SYSLOG_RETRY_MAX_MS. */
export const SYSLOG_RETRY_MIN_MS = 100
/** A server back after a restart is found within this long. */
export const SYSLOG_RETRY_MAX_MS = 5_000
/**
 * The last bytes written on a TCP connection are sent again on the next one when it breaks:
 * what the kernel still held or the server had received but not yet read dies with the
 * connection, unseen. At least once, then: a server restart may show a few messages twice
 * rather than lose them. Also how long close() waits for the queue to go out.
 */
export const SYSLOG_RESEND_BYTES = 256 * 1024
export const SYSLOG_CLOSE_MS = 1_000
/**
 * Drops not yet reported (the server slower than the log for a long spell, no recovery to
 * report them at) are reported this long after the first of them: every drop is counted and
 * logged, at most once per this interval.
 */
export const SYSLOG_DROP_REPORT_MS = 5_000
/** Larger UDP messages are cut here (the largest IPv4 datagram, less headers). */
export const SYSLOG_MAX_DATAGRAM_BYTES = 65_000

/** What status shows of the syslog destination. */
export interface SyslogStatus {
  path: string
  error?: string
  errorSince?: number
  droppedLines: number
}

/**
 * Ships syslog messages to one server over TCP or TLS (octet-counted framing, RFC 6587 3.4.1)
 * or UDP (a datagram each, RFC 5426). It never holds up its caller: while the server is
 * unreachable or slower than the log, messages queue up to `maxBufferBytes`, and beyond that
 * they are dropped and counted; every drop is reported (`onProblem`): when shipping has caught up,
 * else SYSLOG_DROP_REPORT_MS after the first drop not yet reported, and at close (what is still
 * queued then is dropped too). A broken connection is reopened with back-off
 * (SYSLOG_RETRY_MIN_MS doubling to SYSLOG_RETRY_MAX_MS), and the last frames written on it (up to
 * SYSLOG_RESEND_BYTES, and no more than the buffer) are sent again.
 */
export class SyslogSender {
  readonly name: string
  readonly #spec: SyslogSpec
  readonly #onProblem: (message: string) => void
  #socket: Socket | undefined
  #udp: UdpSocket | undefined
  #connected = false
  /** Waiting for 'drain' on the connection. */
  #blocked = false
  #queue: Buffer[] = []
  #queuedBytes = 0
  /** Frames written on the current connection, the latest SYSLOG_RESEND_BYTES of them. */
  #sent: Buffer[] = []
  #sentBytes = 0
  #udpInFlight = 0
  #retryMs = SYSLOG_RETRY_MIN_MS
  #retryTimer: NodeJS.Timeout | undefined
  #error: { message: string; since: number } | undefined
  /** Drops not yet reported, and all of them. */
  #dropped = 0
  #droppedTotal = 0
  #dropTimer: NodeJS.Timeout | undefined
  #closed = false

  constructor(spec: SyslogSpec, onProblem: (message: string) => void) {
    this.#spec = spec
    this.#onProblem = onProblem
    this.name = `syslog ${spec.protocol}://${spec.host}:${spec.port}`
    if (spec.protocol === 'udp') this.#openUdp()
    else this.#connect()
  }

  status(): SyslogStatus {
    return {
      path: this.name,
      ...(this.#error ? { error: this.#error.message, errorSince: this.#error.since } : {}),
      droppedLines: this.#droppedTotal,
    }
  }

  /** Ships one message (an RFC 5424 message without framing); never blocks, may drop. */
  send(message: Buffer): void {
    if (this.#closed) return
    if (this.#udp) return this.#sendUdp(message)
    const frame = Buffer.concat([Buffer.from(`${message.length} `), message])
    if (this.#connected && !this.#blocked && this.#queue.length === 0) return this.#write(frame)
    if (this.#queuedBytes + frame.length > this.#spec.maxBufferBytes) return this.#drop()
    this.#queue.push(frame)
    this.#queuedBytes += frame.length
  }

  /** Sends what is queued (for up to SYSLOG_CLOSE_MS), then closes the connection. */
  async close(): Promise<void> {
    if (this.#closed) return
    const deadline = Date.now() + SYSLOG_CLOSE_MS
    while ((this.#queue.length > 0 || this.#udpInFlight > 0) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 10))
    this.#closed = true
    clearTimeout(this.#retryTimer)
    clearTimeout(this.#dropTimer)
    // What could not go out in time is dropped, and the drops not yet reported are said now.
    if (this.#queue.length > 0) this.#drop(this.#queue.length)
    this.#queue = []
    this.#queuedBytes = 0
    this.#reportDrops('at close')
    const socket = this.#socket
    if (socket && this.#connected)
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, SYSLOG_CLOSE_MS)
        socket.end(() => {
          clearTimeout(t)
          resolve()
        })
      })
    socket?.destroy()
    this.#udp?.close()
  }

  #drop(n = 1): void {
    this.#dropped += n
    this.#droppedTotal += n
    if (this.#dropTimer || this.#closed) return
    // A real timer, not the Clock seam: it only decides when a count is logged.
    this.#dropTimer = setTimeout(() => {
      this.#dropTimer = undefined
      this.#reportDrops(`in ${SYSLOG_DROP_REPORT_MS / 1000} s`)
    }, SYSLOG_DROP_REPORT_MS)
    this.#dropTimer.unref()
  }

  /** Logs the drops not yet reported, if any. */
  #reportDrops(when: string): void {
    const dropped = this.#dropped
    if (dropped === 0) return
    this.#dropped = 0
    const why = this.#error
      ? `still failing ("${this.#error.message}")`
      : 'the server takes them slower than the log writes them'
    this.#onProblem(
      `${this.name}: ${dropped} messages were dropped ${when}: ${why}; ${this.#droppedTotal} in all`,
    )
  }

  #write(frame: Buffer): void {
    this.#sent.push(frame)
    this.#sentBytes += frame.length
    // No more than the buffer: what is sent again on a new connection is queued over it.
    const keep = Math.min(SYSLOG_RESEND_BYTES, this.#spec.maxBufferBytes)
    while (this.#sentBytes - this.#sent[0]!.length >= keep)
      this.#sentBytes -= this.#sent.shift()!.length
    if (!this.#socket!.write(frame)) this.#blocked = true
  }

  /** Writes queued frames until the connection pushes back. */
  #flush(): void {
    while (this.#connected && !this.#blocked && this.#queue.length > 0) {
      const frame = this.#queue.shift()!
      this.#queuedBytes -= frame.length
      this.#write(frame)
    }
    if (this.#queue.length === 0 && this.#connected && !this.#blocked) this.#caughtUp()
  }

  #connect(): void {
    if (this.#closed) return
    const { host, port } = this.#spec
    const socket =
      this.#spec.protocol === 'tls'
        ? tlsConnect({
            host,
            port,
            // SNI names a host, never an address (RFC 6066).
            ...(isIP(host) ? {} : { servername: host }),
            ...(this.#spec.caFile ? { ca: readFileSync(this.#spec.caFile) } : {}),
          })
        : tcpConnect({ host, port })
    this.#socket = socket
    socket.setNoDelay(false)
    socket.on(this.#spec.protocol === 'tls' ? 'secureConnect' : 'connect', () => {
      this.#connected = true
      this.#blocked = false
      this.#retryMs = SYSLOG_RETRY_MIN_MS
      this.#flush()
    })
    socket.on('drain', () => {
      this.#blocked = false
      this.#flush()
    })
    // A syslog server sends nothing; reading keeps the socket's end and errors seen.
    socket.resume()
    socket.on('error', (err) => this.#failed(errorMessage(err)))
    socket.on('close', () => {
      if (this.#socket !== socket) return
      const wasConnected = this.#connected
      this.#connected = false
      this.#blocked = false
      this.#socket = undefined
      if (wasConnected) {
        // What the broken connection may not have delivered goes out again first.
        this.#queue = [...this.#sent, ...this.#queue]
        this.#queuedBytes += this.#sentBytes
        this.#sent = []
        this.#sentBytes = 0
        this.#failed('the connection was closed')
      }
      this.#retry()
    })
  }

  #retry(): void {
    if (this.#closed || this.#retryTimer) return
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined
      this.#connect()
    }, this.#retryMs)
    this.#retryTimer.unref()
    this.#retryMs = Math.min(SYSLOG_RETRY_MAX_MS, this.#retryMs * 2)
  }

  #openUdp(): void {
    const udp = createSocket(isIPv6(this.#spec.host) ? 'udp6' : 'udp4')
    this.#udp = udp
    udp.on('error', (err) => this.#failed(errorMessage(err)))
    udp.connect(this.#spec.port, this.#spec.host, () => (this.#connected = true))
  }

  #sendUdp(message: Buffer): void {
    if (!this.#connected || this.#udpInFlight + message.length > this.#spec.maxBufferBytes)
      return this.#drop()
    const datagram =
      message.length > SYSLOG_MAX_DATAGRAM_BYTES
        ? message.subarray(0, SYSLOG_MAX_DATAGRAM_BYTES)
        : message
    this.#udpInFlight += datagram.length
    this.#udp!.send(datagram, (err) => {
      this.#udpInFlight -= datagram.length
      if (err) {
        // Nothing listens (an ICMP port unreachable, reported on a later send), or no route.
        this.#drop()
        this.#failed(errorMessage(err))
      } else if (this.#error) this.#caughtUp()
    })
  }

  #failed(message: string): void {
    if (this.#closed || this.#error) return
    this.#error = { message, since: Date.now() }
    this.#onProblem(
      `cannot ship to ${this.name}: ${message}; children keep running, messages are kept up to ${Math.round(this.#spec.maxBufferBytes / 1048576)} MiB, then dropped and counted; retrying`,
    )
  }

  /**
   * Everything queued went out: after an outage, say so with the drops not yet reported (drops
   * with no outage, a server slower than the log, are left to the report timer: a queue that
   * fills and empties again many times a second would otherwise log as often).
   */
  #caughtUp(): void {
    const dropped = this.#dropped
    if (!this.#error) return
    const since = this.#error?.since
    const what = this.#error?.message
    this.#error = undefined
    this.#dropped = 0
    clearTimeout(this.#dropTimer)
    this.#dropTimer = undefined
    this.#onProblem(
      `${this.name}: shipping again${since !== undefined ? ` after ${((Date.now() - since) / 1000).toFixed(1)} s of "${what}"` : ''}; ${dropped ? `${dropped} messages were dropped meanwhile` : 'no message dropped'}; ${this.#droppedTotal} in all`,
    )
  }
}
