// HAProxy's agent-check protocol on a real TCP listener: what each instance state answers, and
// clients that do not speak it. Ports 24960-24969 belong to this file (haproxy.test.ts has the
// rest of 24900-24999).
import { connect } from 'node:net'
import t from 'tap'
import type { StatusReply } from '../../src/status.js'
import { AGENT_MAX_REQUEST, agentReply, startLbAgent } from '../../src/control/lb-agent.js'
import { statusInstance as inst } from '../helpers/status.js'

const HOST = '127.0.0.1'

t.test('agentReply: each state answers what HAProxy needs', async (t) => {
  t.equal(agentReply('web#0', inst('web#0')), 'up ready #tandem: web#0 ready\n')
  t.equal(agentReply('web#0', inst('web#0', { draining: true })), 'drain #tandem: web#0 draining\n')
  for (const state of ['starting', 'stopping', 'backoff', 'failed', 'exited'] as const)
    t.equal(agentReply('web#0', inst('web#0', { state })), `down #tandem: web#0 ${state}\n`, state)
  t.equal(
    agentReply('web#0', inst('web#0', { state: 'stopped', stoppedByOperator: true })),
    'down #tandem: web#0 stopped by operator\n',
  )
  t.equal(agentReply('web#9', undefined), 'down #tandem: no instance web#9 on this node\n')
  t.match(agentReply('', undefined), /^# tandem: send the instance id/, 'no id: a comment only')
})

/** Sends `text` (half-closing after it when `end`), resolves with all the agent answered. */
const ask = (port: number, text: string, end = false): Promise<string> =>
  new Promise((resolve, reject) => {
    const s = connect({ host: HOST, port })
    let out = ''
    s.setEncoding('latin1')
    s.on('data', (d: string) => (out += d))
    s.on('close', () => resolve(out))
    s.on('error', reject)
    if (end) s.end(text)
    else s.write(text)
  })

t.test('the listener answers the instance HAProxy names, then closes', async (t) => {
  let reply: StatusReply = {
    node: 'n1',
    role: 'standalone',
    pid: 1,
    config: '/c.json',
    instances: [inst('web#0'), inst('web#1', { state: 'starting' })],
  }
  const errors: string[] = []
  const close = await startLbAgent(
    { host: HOST, port: 24960 },
    () => reply,
    (m) => errors.push(m),
  )
  t.teardown(close)
  t.equal(await ask(24960, 'web#0\n'), 'up ready #tandem: web#0 ready\n')
  t.equal(await ask(24960, 'web#1\r\n'), 'down #tandem: web#1 starting\n', 'CRLF')
  t.equal(
    await ask(24960, 'web#0', true),
    'up ready #tandem: web#0 ready\n',
    'no newline, half-closed',
  )
  reply = { ...reply, instances: [inst('web#0', { draining: true })] }
  t.equal(await ask(24960, 'web#0\n'), 'drain #tandem: web#0 draining\n', 'read at each check')
  t.equal(await ask(24960, 'x'.repeat(AGENT_MAX_REQUEST + 10)), '', 'too long: closed unanswered')
  reply = undefined as unknown as StatusReply
  t.equal(await ask(24960, 'web#0\n'), '', 'a failing source: closed unanswered')
  t.match(errors, [/control.agent answering "web#0" failed/], 'and reported')
})

t.test('a port in use is an ECONTROL error naming it', async (t) => {
  const close = await startLbAgent(
    { host: HOST, port: 24961 },
    () => ({}) as StatusReply,
    () => {},
  )
  t.teardown(close)
  await t.rejects(
    startLbAgent(
      { host: HOST, port: 24961 },
      () => ({}) as StatusReply,
      () => {},
    ),
    {
      code: 'ECONTROL',
      message: /control.agent cannot listen on 127.0.0.1:24961: the port is already in use/,
    },
  )
})
