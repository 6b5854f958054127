// logs.syslog against a real rsyslogd (Debian's rsyslog): RFC 5424 over TCP (octet counting)
// and UDP on loopback, rsyslog stopped and started again mid-stream; TLS against a Node TLS
// receiver with a throwaway CA (rsyslog's TLS needs its gnutls module, another package).
// Ports 29000-29019 belong to this file (test files run in parallel).
import { existsSync, readFileSync } from 'node:fs'
import { createServer as createTlsServer } from 'node:tls'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { RSYSLOGD, Rsyslog } from '../helpers/rsyslog.js'
import { makePki, needOpenssl, type TestPki } from '../helpers/tls-certs.js'
import { ROOT, status, Supervisor, tempDir, waitUntil, writeConfig } from '../helpers/supervisor.js'

const PACED = join(ROOT, 'test/fixtures/paced-printer.js')

const paced = (count: number, rate: number) => ({
  command: [process.execPath, PACED],
  env: { COUNT: String(count), RATE: String(rate) },
  readiness: { type: 'none' },
  restart: 'never',
  instances: 1,
})

const setup = async (t: Test, ports: { tcp: number; udp: number }) => {
  const dir = tempDir(t)
  const rsyslog = new Rsyslog(dir, ports)
  t.teardown(() => rsyslog.kill())
  await rsyslog.start()
  return { dir, rsyslog }
}

const start = (
  t: Test,
  dir: string,
  components: Record<string, unknown>,
  syslog: Record<string, unknown>,
) => {
  const config = writeConfig(dir, components, {
    logs: { dir: join(dir, 'logs'), stdout: true, syslog },
  })
  const sup = new Supervisor(config)
  t.teardown(() => sup.kill())
  return { sup, config }
}

/** The tick numbers in `msgs`, each once, and how many came more than once. */
const ticks = (msgs: string[]) => {
  const seen = new Set<number>()
  let twice = 0
  for (const m of msgs) {
    const n = /^tick (\d+)$/.exec(m)?.[1]
    if (n === undefined) continue
    if (seen.has(Number(n))) twice++
    seen.add(Number(n))
  }
  return { seen, twice }
}

const skip = existsSync(RSYSLOGD) ? false : `${RSYSLOGD} is missing (Debian package rsyslog)`

t.test(
  'every numbered line arrives over TCP as RFC 5424 with component, instance and port as structured data',
  { skip },
  async (t) => {
    const { dir, rsyslog } = await setup(t, { tcp: 29000, udp: 29001 })
    const COUNT = 20_000
    const { sup } = start(
      t,
      dir,
      { web: { ...paced(COUNT, 20_000), port: 29010 } },
      { port: 29000, protocol: 'tcp', facility: 'local3' },
    )
    await sup.waitLog('web stopped', (r) => r.event === 'stopped' && r.component === 'web')
    const lines = () => rsyslog.received().filter((r) => r.app === 'web' && r.msgid === 'out')
    await waitUntil(
      `${COUNT} lines at rsyslog`,
      () => ticks(lines().map((r) => r.msg)).seen.size >= COUNT,
    )
    const { seen, twice } = ticks(lines().map((r) => r.msg))
    t.equal(seen.size, COUNT, 'every line')
    t.equal(twice, 0, 'none twice')
    const first = lines()[0]!
    t.match(first, {
      app: 'web',
      msgid: 'out',
      severity: '6',
      sd: '[tandem@32473 node="',
    })
    t.match(first.sd, /component="web" instance="0" port="29010"\]$/)
    t.equal(first.procid, String(sup.records.find((r) => r.event === 'spawned')?.childPid))
    const err = rsyslog.received().find((r) => r.app === 'web' && r.msgid === 'err')
    t.match(err, { severity: '4', msg: /^done 20000 \d+$/ }, 'stderr is a warning')
    t.ok(
      rsyslog.received().some((r) => r.app === 'tandem' && r.msgid === 'stopped'),
      "the supervisor's events too",
    )
    process.kill(sup.pid, 'SIGTERM')
    await sup.ended
  },
)

t.test(
  'rsyslog stopped and started again mid-stream: the child is never held up, lost lines are counted drops',
  { skip },
  async (t) => {
    const { dir, rsyslog } = await setup(t, { tcp: 29002, udp: 29003 })
    const COUNT = 12_000
    const RATE = 2_000
    const { sup, config } = start(
      t,
      dir,
      { web: paced(COUNT, RATE) },
      // A small buffer, so that the outage overflows it and drops are certain.
      { port: 29002, protocol: 'tcp', maxBufferBytes: 65536, match: { components: ['web'] } },
    )
    const received = () => ticks(rsyslog.received().map((r) => r.msg))
    await waitUntil('the first 1,000 lines at rsyslog', () => received().seen.size >= 1000)
    await rsyslog.stop()
    const stoppedAt = sup.count((r) => r.stream === 'out')
    // 2 s of lines at 2,000 a second: about 4,000 lines, 40 bytes each with the header: 160 KB.
    await waitUntil(
      '2 s of lines while it is down',
      () => sup.count((r) => r.stream === 'out') >= stoppedAt + 2 * RATE,
    )
    await rsyslog.start()
    const done = await sup.waitLog('done', (r) => r.stream === 'err' && /^done/.test(r.msg))
    const printMs = Number(/^done \d+ (\d+)$/.exec(done.msg)?.[1])
    t.ok(printMs < (COUNT / RATE) * 1000 + 3000, `the child printed at its pace: ${printMs} ms`)
    t.equal(
      sup.count((r) => r.stream === 'out'),
      COUNT,
      'every line in the unified log',
    )
    const recovered = await sup.waitLog('shipping again', (r) =>
      /syslog tcp:\/\/127\.0\.0\.1:29002: shipping again/.test(r.msg),
    )
    const dropped = Number(/(\d+) messages were dropped/.exec(recovered.msg)?.[1] ?? 0)
    t.ok(dropped > 0, `drops counted and logged on recovery: ${recovered.msg}`)
    t.ok(
      sup.records.some((r) => /cannot ship to syslog tcp:\/\/127\.0\.0\.1:29002/.test(r.msg)),
      'the outage is logged',
    )
    // The last lines get through once it is back; what is missing is no more than was dropped.
    await waitUntil('the last line at rsyslog', () => received().seen.has(COUNT - 1))
    // Drops can go on after the first "shipping again" (what was buffered and resent overflows
    // the small buffer again): they are logged too, within SYSLOG_DROP_REPORT_MS, so the
    // counts logged add up to status's total.
    const s = (await status(config)) as unknown as {
      logs: { path: string; droppedLines: number }[]
    }
    const total = s.logs.find((l) => l.path.startsWith('syslog'))?.droppedLines ?? 0
    t.ok(total >= dropped, `status counts every drop: ${total}, of which ${dropped} logged first`)
    const logged = () =>
      sup.records
        .filter((r) => /^syslog tcp:\/\/127\.0\.0\.1:29002: /.test(r.msg))
        .reduce((n, r) => n + Number(/(\d+) messages were dropped/.exec(r.msg)?.[1] ?? 0), 0)
    const dropTotal = async () =>
      (
        (await status(config)) as unknown as { logs: { path: string; droppedLines: number }[] }
      ).logs.find((l) => l.path.startsWith('syslog'))?.droppedLines ?? 0
    await waitUntil(
      `the log says every drop (${total})`,
      async () => logged() === (await dropTotal()),
    )
    t.pass(`the drops logged add up to status's total: ${logged()}`)
    const { seen, twice } = received()
    const missing = COUNT - seen.size
    t.ok(missing <= total, `${missing} lines missing, ${total} dropped, ${twice} sent twice`)
    t.ok(missing > 0, 'the outage lost lines (the buffer is smaller than 2 s of them)')
    process.kill(sup.pid, 'SIGTERM')
    await sup.ended
  },
)

t.test(
  'UDP: lines arrive as datagrams; while rsyslog is down sends fail and are counted',
  { skip },
  async (t) => {
    const { dir, rsyslog } = await setup(t, { tcp: 29004, udp: 29005 })
    const COUNT = 6_000
    const RATE = 1_000
    const { sup } = start(t, dir, { web: paced(COUNT, RATE) }, { port: 29005, protocol: 'udp' })
    const received = () => ticks(rsyslog.received().map((r) => r.msg))
    await waitUntil('the first 500 lines at rsyslog', () => received().seen.size >= 500)
    await rsyslog.stop()
    const before = received().seen.size
    const failed = await sup.waitLog('the failed sends', (r) =>
      /cannot ship to syslog udp:\/\/127\.0\.0\.1:29005/.test(r.msg),
    )
    t.match(failed.msg, /ECONNREFUSED/)
    await rsyslog.start()
    await sup.waitLog('web stopped', (r) => r.event === 'stopped' && r.component === 'web')
    const recovered = await sup.waitLog('shipping again', (r) =>
      /syslog udp:\/\/127\.0\.0\.1:29005: shipping again/.test(r.msg),
    )
    t.match(recovered.msg, /[1-9]\d* messages were dropped/, 'drops counted')
    await waitUntil('the last line at rsyslog', () => received().seen.has(COUNT - 1))
    t.ok(received().seen.size > before, 'shipping resumed')
    t.equal(
      sup.count((r) => r.stream === 'out'),
      COUNT,
      'every line in the unified log',
    )
    process.kill(sup.pid, 'SIGTERM')
    await sup.ended
  },
)

/** A TLS syslog receiver: octet-counted frames (RFC 6587 3.4.1) off each connection. */
const tlsReceiver = async (t: Test, port: number, pki: TestPki) => {
  const messages: string[] = []
  const errors: string[] = []
  const server = createTlsServer(
    { cert: readFileSync(pki.serverCert), key: readFileSync(pki.serverKey) },
    (socket) => {
      let buf = Buffer.alloc(0)
      socket.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d])
        for (;;) {
          const sp = buf.indexOf(0x20)
          if (sp < 0) return
          const len = Number(buf.toString('latin1', 0, sp))
          if (!Number.isInteger(len))
            return void errors.push(`bad frame: ${buf.toString('utf8', 0, 40)}`)
          if (buf.length < sp + 1 + len) return
          messages.push(buf.toString('utf8', sp + 1, sp + 1 + len))
          buf = buf.subarray(sp + 1 + len)
        }
      })
      socket.on('error', () => {})
    },
  )
  server.on('tlsClientError', (err) => errors.push(err.message))
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r))
  t.teardown(() => server.close())
  return { messages, errors }
}

t.test(
  'TLS: octet-counted RFC 5424 messages to a server whose certificate the given CA signed; another CA is refused, and said so',
  async (t) => {
    if (!needOpenssl(t)) return
    const dir = tempDir(t)
    const pki = makePki(dir, 'syslog')
    const other = makePki(dir, 'other')
    const rx = await tlsReceiver(t, 29006, pki)
    const COUNT = 2_000
    const { sup } = start(
      t,
      dir,
      { web: paced(COUNT, 10_000) },
      { port: 29006, protocol: 'tls', caFile: pki.ca, facility: 'local0' },
    )
    await waitUntil(`${COUNT} lines over TLS`, () =>
      ticks(rx.messages.map((m) => m.slice(m.lastIndexOf('] ') + 2))).seen.has(COUNT - 1),
    )
    const lines = rx.messages.filter((m) => / web \d+ out /.test(m))
    t.equal(
      ticks(lines.map((m) => m.slice(m.lastIndexOf('] ') + 2))).seen.size,
      COUNT,
      'every line',
    )
    // local0 (16) * 8 + info (6) = 134; version 1; a UTC time stamp with milliseconds.
    t.match(
      lines[0],
      /^<134>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \S+ web \d+ out \[tandem@32473 node="[^"]+" component="web" instance="0"\] tick 0$/,
    )
    t.same(rx.errors, [], 'no bad frame')
    process.kill(sup.pid, 'SIGTERM')
    await sup.ended

    const dir2 = tempDir(t)
    const wrong = start(
      t,
      dir2,
      { web: paced(10, 100) },
      { port: 29006, protocol: 'tls', caFile: other.ca },
    )
    const refused = await wrong.sup.waitLog('the refused certificate', (r) =>
      /cannot ship to syslog tls:\/\/127\.0\.0\.1:29006/.test(r.msg),
    )
    t.match(refused.msg, /certificate/i)
    await wrong.sup.waitLog('web stopped', (r) => r.event === 'stopped' && r.component === 'web')
    t.equal(
      wrong.sup.count((r) => r.stream === 'out'),
      10,
      'the child is not held up',
    )
    process.kill(wrong.sup.pid, 'SIGTERM')
    await wrong.sup.ended
  },
)
