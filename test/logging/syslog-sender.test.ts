// Ports 29870-29879 belong to this file (test files run in parallel).
import { createServer, type Socket } from 'node:net'
import t, { type Test } from 'tap'
import { SYSLOG_DROP_REPORT_MS, SyslogSender } from '../../src/logging/syslog-sender.js'
import { waitUntil } from '../helpers/supervisor.js'

const spec = (port: number) => ({
  host: '127.0.0.1',
  port,
  protocol: 'tcp' as const,
  facility: 'local0',
  minLevel: 'info',
  format: 'rfc5424' as const,
  maxBufferBytes: 16 * 1024,
})

/** A TCP server that accepts and then reads nothing: a syslog server slower than the log. */
const stalledServer = async (t: Test, port: number) => {
  const sockets: Socket[] = []
  const server = createServer((s) => {
    s.pause()
    sockets.push(s)
  })
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r))
  t.teardown(() => {
    sockets.forEach((s) => s.destroy())
    server.close()
  })
  return sockets
}

/** The counts in "N messages were dropped" messages. */
const droppedIn = (messages: string[]) =>
  messages.reduce((n, m) => n + Number(/(\d+) messages were dropped/.exec(m)?.[1] ?? 0), 0)

t.test('pins the drop report interval', async (t) => {
  t.equal(SYSLOG_DROP_REPORT_MS, 5_000)
})

t.test(
  'a server slower than the log, with no outage: every drop is counted and logged within the report interval, and at close',
  async (t) => {
    const sockets = await stalledServer(t, 29870)
    const problems: string[] = []
    const sender = new SyslogSender(spec(29870), (m) => problems.push(m))
    await waitUntil('connected', () => sockets.length === 1)
    const message = Buffer.from(`<134>1 - h app - - - ${'x'.repeat(200)}`)
    // Far more than the socket's buffers and the 16 KiB queue take: drops are certain.
    const flood = () => {
      for (let i = 0; i < 50_000; i++) sender.send(message)
    }
    flood()
    const first = sender.status().droppedLines
    t.ok(first > 0, `dropped ${first}`)
    await waitUntil(
      'the drops logged',
      () => droppedIn(problems) === first,
      SYSLOG_DROP_REPORT_MS + 10_000,
    )
    t.match(problems.at(-1), /messages were dropped in 5 s: the server takes them slower/)
    // More drops, then close while frames are still queued: those are drops too, said at once.
    flood()
    await sender.close()
    const total = sender.status().droppedLines
    t.ok(total > first)
    t.equal(droppedIn(problems), total, `every drop logged: ${problems.join(' | ')}`)
    t.match(problems.at(-1), /dropped at close/)
  },
)
