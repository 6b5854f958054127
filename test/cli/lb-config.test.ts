// `tandem lb-config haproxy`: what it prints for each kind of component, checked by a real
// `haproxy -c`, and its usage errors. No ports are listened on here.
import { spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { haproxyConfig } from '../../src/cli/lb-config.js'
import { loadConfig } from '../../src/config/load-config.js'
import { haproxyBin } from '../helpers/haproxy.js'
import { cli, tempDir } from '../helpers/supervisor.js'

const server = { command: ['node', 'server.js'] }

const configFile = (t: Parameters<typeof tempDir>[0], extra: Record<string, unknown> = {}) => {
  const file = join(tempDir(t), 'tandem.json')
  writeFileSync(
    file,
    JSON.stringify({
      node: 'n1',
      stateDir: 'state',
      components: {
        gateway: {
          ...server,
          instances: 3,
          ports: [7554, 7555, 7556],
          readiness: { type: 'http', path: '/ready' },
        },
        discovery: { ...server, ports: [7560], health: { type: 'http', path: '/alive' } },
        db: { ...server, ports: [7570], host: '10.0.0.5' },
        worker: server,
      },
      ...extra,
    }),
  )
  return file
}

/** `haproxy -c` on the backends behind a minimal global/defaults/frontend. */
const haproxyCheck = (t: Parameters<typeof tempDir>[0], backends: string) => {
  const bin = haproxyBin()
  if (!bin) return { status: -1, output: 'haproxy is not installed (.ci/run installs it)' }
  const file = join(tempDir(t), 'haproxy.cfg')
  writeFileSync(
    file,
    [
      'defaults',
      '    timeout client 30s',
      '    timeout server 30s',
      'frontend www',
      '    bind 127.0.0.1:8080',
      '    mode http',
      '    default_backend tandem_gateway',
      backends,
    ].join('\n'),
  )
  const r = spawnSync(bin, ['-c', '-f', file], { encoding: 'utf8' })
  return { status: r.status, output: r.stdout + r.stderr }
}

t.test('one backend per component with ports, checked by haproxy -c', async (t) => {
  const file = configFile(t, { control: { agent: { port: 7551 } } })
  const out = haproxyConfig(loadConfig(file))
  const check = haproxyCheck(t, out)
  t.equal(check.status, 0, `haproxy -c accepts it: ${check.output}`)
  t.notMatch(check.output, /WARNING/, 'without warnings')
  const gateway = out.slice(
    out.indexOf('backend tandem_gateway'),
    out.indexOf('backend tandem_discovery'),
  )
  t.match(gateway, /mode http\n/)
  t.match(gateway, /http-check send meth GET uri \/ready\n/, 'checks the readiness path')
  t.match(gateway, /retries 3\n.*option redispatch 1\n.*retry-on conn-failure empty-response\n/s)
  t.match(gateway, /http-request disable-l7-retry unless METH_GET\n/, 'no replay of a POST')
  t.match(gateway, /agent-check agent-addr 127.0.0.1 agent-port 7551 agent-inter 250ms/)
  for (const i of [0, 1, 2])
    t.match(gateway, `server gateway.${i} 127.0.0.1:${7554 + i} agent-send "gateway#${i}\\n"\n`)
  t.match(
    out,
    /backend tandem_discovery\n(.*\n)*? {4}http-check send meth GET uri \/alive\n/,
    'else health',
  )
  t.match(out, /backend tandem_db\n {4}mode tcp\n/, 'no HTTP path: tcp')
  t.match(out, /server db.0 10.0.0.5:7570 /, "the component's host")
  t.notMatch(out, /worker/, 'components without ports are left out')
})

t.test(
  'without control.agent: health checks and retries, and the comment says what is missing',
  async (t) => {
    const out = haproxyConfig(loadConfig(configFile(t)), {
      components: ['gateway'],
      host: '10.1.1.1',
    })
    t.equal(haproxyCheck(t, out).status, 0)
    t.notMatch(out, /agent-check|agent-send/)
    t.match(out, /Without control.agent/)
    t.match(out, /server gateway.2 10.1.1.1:7556\n/, '--host replaces the address')
    t.notMatch(out, /backend tandem_db/, 'only the named components')
  },
)

t.test('usage errors name what is wrong and exit 2', async (t) => {
  const file = configFile(t)
  const kind = await cli(['lb-config', 'nginx', '-c', file])
  t.equal(kind.code, 2)
  t.match(kind.err, /lb-config supports haproxy, got "nginx"/)
  const unknown = await cli(['lb-config', 'haproxy', 'gatewy', '-c', file])
  t.equal(unknown.code, 2)
  t.match(
    unknown.err,
    /no component "gatewy" in .*; expected one of gateway, discovery, db, worker/,
  )
  const noPorts = await cli(['lb-config', 'haproxy', 'worker', '-c', file])
  t.equal(noPorts.code, 2)
  t.match(noPorts.err, /component "worker" has no ports/)
  const ok = await cli(['lb-config', 'haproxy', '-c', file])
  t.equal(ok.code, 0)
  t.match(ok.out, /^# HAProxy backends for tandem node "n1"/)
})
