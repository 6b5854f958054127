// The etcd client against a real etcd: https with client certificates (and the errors of a wrong
// CA or missing files), etcd's own authentication (a wrong password, a token etcd forgot or let
// expire), and the members' health while one of three is down.
import { execFileSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import {
  connectEtcd,
  EtcdClient,
  readPasswordFile,
  type EtcdTransport,
} from '../../src/ha/etcd-client.js'
import { httpTransport } from '../../src/ha/etcd-transport.js'
import { EtcdCluster, needEtcd } from '../helpers/etcd.js'
import { tempDir, waitUntil } from '../helpers/supervisor.js'
import { makePki, needOpenssl } from '../helpers/tls-certs.js'

const put = (c: EtcdClient, key: string, value: string) =>
  c.request(
    '/v3/kv/put',
    { key: Buffer.from(key).toString('base64'), value: Buffer.from(value).toString('base64') },
    2000,
    `put of ${key}`,
  )
const read = async (c: EtcdClient, key: string) => {
  const kv = await c.get(key, 2000)
  return kv && Buffer.from(kv.value ?? '', 'base64').toString()
}

/** The default transport, counting authentications and the answers that refused a token. */
const counting = () => {
  const seen = { authentications: 0, refused: 0 }
  const base = httpTransport()
  const transport: EtcdTransport = async (endpoint, path, body, signal, headers) => {
    if (path === '/v3/auth/authenticate') seen.authentications++
    try {
      return await base(endpoint, path, body, signal, headers)
    } catch (err) {
      if ((err as { grpcCode?: number }).grpcCode === 16) seen.refused++
      throw err
    }
  }
  return { seen, transport }
}

t.test('the files of the config: ECONFIG naming the setting and the path', async (t) => {
  const dir = tempDir(t)
  const missing = join(dir, 'nope.pem')
  const endpoints = ['https://127.0.0.1:1']
  t.throws(() => connectEtcd({ endpoints, tls: { ca: missing } }), {
    code: 'ECONFIG',
    message: `ha.backend.tls.ca: cannot read ${missing}: ENOENT`,
  })
  t.throws(() => connectEtcd({ endpoints, tls: { cert: join(dir, 'c.pem'), key: missing } }), {
    code: 'ECONFIG',
    message: /^ha\.backend\.tls\.cert: cannot read .*c\.pem: ENOENT/,
  })
  t.throws(() => connectEtcd({ endpoints, tls: { cert: missing } }), {
    code: 'ECONFIG',
    message:
      /ha\.backend\.tls: a client certificate needs both cert and key; cert is set .*, key is not/,
  })
  t.throws(() => connectEtcd({ endpoints, tls: { ca: dir } }), {
    code: 'ECONFIG',
    message: /ha\.backend\.tls\.ca: cannot read .*: EISDIR/,
  })
  t.throws(() => connectEtcd({ endpoints: ['http://127.0.0.1:2379'], tls: {} }), {
    code: 'ECONFIG',
    message:
      'ha.backend.endpoints[0]: http://127.0.0.1:2379 is plain http, but ha.backend.tls is set: use https://',
  })
  t.throws(() => connectEtcd({ endpoints: ['http://a:1', '127.0.0.1:2379'] }), {
    code: 'ECONFIG',
    message:
      /^ha\.backend\.endpoints\[1\]: expected an http:\/\/ or https:\/\/ URL .*"127\.0\.0\.1:2379"/,
  })
  t.throws(() => connectEtcd({ endpoints: [] }), { code: 'ECONFIG' })

  const pw = join(dir, 'pw')
  writeFileSync(pw, 's3cret \n')
  t.equal(readPasswordFile(pw), 's3cret ', 'one trailing newline trimmed, nothing else')
  writeFileSync(pw, 's3cret\r\n')
  t.equal(readPasswordFile(pw), 's3cret')
  writeFileSync(pw, '\n')
  t.throws(() => readPasswordFile(pw), {
    code: 'ECONFIG',
    message: `ha.backend.auth.passwordFile: ${pw} is empty; it should hold the password`,
  })
  t.throws(() => readPasswordFile(missing), {
    code: 'ECONFIG',
    message: `ha.backend.auth.passwordFile: cannot read ${missing}: ENOENT`,
  })
})

t.test(
  'a member that never answers costs its share of the deadline; one that answers no JSON is named',
  async (t) => {
    const serve = async (handler: (req: IncomingMessage, res: ServerResponse) => void) => {
      const server = createServer(handler)
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
      t.teardown(() => {
        server.closeAllConnections()
        server.close()
      })
      return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    }
    const hangs = await serve(() => {
      // never answers
    })
    const garbled = await serve((_req, res) => res.writeHead(502).end('<html>bad gateway'))
    const client = new EtcdClient([hangs, garbled])
    const err = (await client.get('/k', 1000).catch((e: unknown) => e)) as Error
    t.match(err, { code: 'EETCD' })
    // Half the deadline each (less what the setup took, so the figure is not pinned).
    t.match(
      err.message,
      /^etcd read of \/k failed within 1000 ms on every endpoint: (\S+): no answer within \d+ ms; (\S+): HTTP 502 that is not JSON: "<html>bad gateway"$/,
    )
    t.ok(err.message.includes(`${hangs}: no answer`) && err.message.includes(`${garbled}: HTTP`))
    t.match(await client.health(100), [
      { endpoint: hangs, ok: false, error: 'no answer within 100 ms' },
      { endpoint: garbled, ok: false, error: /^HTTP 502 that is not JSON/ },
    ])
  },
)

t.test(
  'https with client certificates; a wrong CA or no certificate named with the endpoint',
  async (t) => {
    if (!needEtcd(t) || !needOpenssl(t)) return
    const dir = tempDir(t)
    const pki = makePki(dir, 'ca')
    const other = makePki(dir, 'other')
    const etcd = await EtcdCluster.start(t, 1, { tls: { pki, clientCertAuth: true } })
    const endpoint = etcd.endpoints[0]!
    t.match(endpoint, /^https:/)
    const client = connectEtcd({
      endpoints: etcd.endpoints,
      tls: { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey },
    })
    await put(client, '/tandem/tls/k', 'v')
    t.equal(await read(client, '/tandem/tls/k'), 'v', 'a put and a linearizable read over TLS')
    const [health] = await client.health(2000)
    t.match(health, { endpoint, ok: true, leader: true, version: /^3\./ })

    const wrongCa = connectEtcd({
      endpoints: etcd.endpoints,
      tls: { ca: other.ca, cert: pki.clientCert, key: pki.clientKey },
    })
    const escaped = endpoint.replace(/[.:/]/g, '\\$&')
    await t.rejects(read(wrongCa, '/tandem/tls/k'), {
      code: 'EETCD',
      message: new RegExp(
        `read of /tandem/tls/k failed within 2000 ms on every endpoint: ${escaped}: TLS: .*certificate.*not trusted by the CA given`,
      ),
    })
    t.match(await wrongCa.health(2000), [{ endpoint, ok: false, error: /^TLS: / }])

    const noCert = connectEtcd({ endpoints: etcd.endpoints, tls: { ca: pki.ca } })
    const refused = (await read(noCert, '/tandem/tls/k').catch((e: unknown) => e)) as Error
    t.match(refused, {
      code: 'EETCD',
      message: new RegExp(
        `on every endpoint: ${escaped}: TLS: .*alert.* certificate .*: the member did not accept this client's certificate`,
      ),
    })
    t.notMatch(refused.message, /openssl|\n/, "OpenSSL's reason, not its multi-line dump")
  },
)

t.test(
  'auth: the password works, a wrong one is named by user and endpoint, a token etcd forgot is renewed',
  async (t) => {
    if (!needEtcd(t)) return
    const etcd = await EtcdCluster.start(t, 1)
    const endpoint = etcd.endpoints[0]!
    const password = 'tandem-pw-Zq7'
    await etcd.enableAuth('root-pw-Xk2', [{ name: 'tandem', password, prefix: '/tandem/zowe/' }])
    const { seen, transport } = counting()
    const client = connectEtcd(
      { endpoints: etcd.endpoints, auth: { user: 'tandem', password } },
      transport,
    )
    await Promise.all([put(client, '/tandem/zowe/a', '1'), put(client, '/tandem/zowe/b', '2')])
    t.equal(await read(client, '/tandem/zowe/a'), '1')
    t.equal(seen.authentications, 1, 'one authentication, shared by concurrent requests')
    await t.rejects(read(client, '/elsewhere'), {
      code: 'EETCD',
      grpcCode: 7,
      message: /read of \/elsewhere: .* answered: etcdserver: permission denied/,
    })

    const wrong = connectEtcd({
      endpoints: etcd.endpoints,
      auth: { user: 'tandem', password: 'not-it-Pw9' },
    })
    const err = (await read(wrong, '/tandem/zowe/a').catch((e: unknown) => e)) as Error
    t.match(err, {
      code: 'EETCD',
      message: `etcd authentication of user tandem (for the read of /tandem/zowe/a): ${endpoint} answered: etcdserver: authentication failed, invalid user ID or password`,
    })
    t.notMatch(
      JSON.stringify(err, Object.getOwnPropertyNames(err)) + String(err.stack),
      /not-it-Pw9/,
      'never the password',
    )

    await t.rejects(read(new EtcdClient(etcd.endpoints), '/tandem/zowe/a'), {
      code: 'EETCD',
      message: /user name is empty \(etcd has authentication enabled: set ha\.backend\.auth\)/,
    })

    // Turning authentication off and on makes etcd forget every token it gave (as it does when a
    // simple token's TTL passes unused): the next request is refused, authenticates again and
    // is repeated, unseen by the caller.
    const root = (await etcd.call(0, '/v3/auth/authenticate', {
      name: 'root',
      password: 'root-pw-Xk2',
    })) as { token: string }
    await etcd.call(0, '/v3/auth/disable', {}, root.token)
    await etcd.call(0, '/v3/auth/enable', {})
    t.equal(await read(client, '/tandem/zowe/b'), '2', 'the request after the restart answers')
    t.equal(seen.refused, 1, 'the old token was refused once')
    t.equal(seen.authentications, 2, 'and replaced')
  },
)

t.test('an expired token (JWT with a 1 s TTL) is renewed transparently', async (t) => {
  if (!needEtcd(t) || !needOpenssl(t)) return
  const dir = tempDir(t)
  const [priv, pub] = [join(dir, 'jwt.key'), join(dir, 'jwt.pub')]
  execFileSync('openssl', ['genrsa', '-out', priv, '2048'], { stdio: 'ignore' })
  execFileSync('openssl', ['rsa', '-in', priv, '-pubout', '-out', pub], { stdio: 'ignore' })
  const etcd = await EtcdCluster.start(t, 1, {
    args: ['--auth-token', `jwt,pub-key=${pub},priv-key=${priv},sign-method=RS256,ttl=1s`],
  })
  const password = 'tandem-pw-Jw1'
  await etcd.enableAuth('root-pw-Jw2', [{ name: 'tandem', password, prefix: '/tandem/jwt/' }])
  const { seen, transport } = counting()
  const client = connectEtcd(
    { endpoints: etcd.endpoints, auth: { user: 'tandem', password } },
    transport,
  )
  await put(client, '/tandem/jwt/k', 'v')
  // Every read must answer; once the token's second has passed, one of them is refused, and
  // the client authenticates again.
  let reads = 0
  await waitUntil('a second authentication', async () => {
    const v = await read(client, '/tandem/jwt/k')
    if (v !== 'v') throw new Error(`read ${v}`)
    reads++
    return seen.authentications >= 2
  })
  // On a busy machine the put can outlast the token's second: then the first read is the one
  // refused, and it must answer too (the loop throws on any read that does not).
  t.equal(seen.authentications, 2, `authenticated again once, over ${reads} read(s), all answered`)
  t.equal(seen.refused, 1, 'one refusal of the expired token, and the request repeated')
})

t.test(
  'health: a stopped member of three is not ok, exactly one leader among the others; alone, none',
  async (t) => {
    if (!needEtcd(t)) return
    const etcd = await EtcdCluster.start(t, 3)
    const client = new EtcdClient(etcd.endpoints)
    const all = await client.health(2000)
    t.equal(all.length, 3)
    t.ok(
      all.every((h) => h.ok),
      'all three answer',
    )
    t.equal(all.filter((h) => h.ok && h.leader).length, 1, 'one leader')
    t.ok(
      all.every((h) => h.ok && typeof h.dbSize === 'number' && h.dbSize > 0),
      'each with its db size',
    )
    // The leader goes: the other two elect another.
    const stopped = await etcd.leader()
    etcd.stop(stopped)
    // Both others answering, one of them leader: the new leader can know itself elected while
    // the other, under load, has not yet heard of it (it answers "knows no raft leader" then).
    const after = await waitUntil('a new leader among the two left, both answering', async () => {
      const h = await client.health(1000)
      return (
        h.filter((x) => x.ok).length === 2 && h.filter((x) => x.ok && x.leader).length === 1 && h
      )
    })
    t.match(after[stopped], {
      endpoint: etcd.endpoints[stopped],
      ok: false,
      error: /ECONNREFUSED/,
    })
    t.equal(after.filter((h) => h.ok).length, 2, 'the two others answer')
    t.equal(after.filter((h) => h.ok && h.leader).length, 1, 'exactly one leader')
    // One of three left: it answers, but without a quorum it soon knows no leader.
    const last = after.findIndex((h) => h.ok && !h.leader)
    etcd.stop(after.findIndex((h) => h.ok && h.leader))
    const alone = await waitUntil('the last member without a leader', async () => {
      const h = await client.health(1000)
      return !h[last]!.ok && !/ECONNREFUSED/.test(h[last]!.error) && h
    })
    t.match(alone[last], {
      ok: false,
      error: 'answers, but knows no raft leader (an election, or no quorum)',
    })
    t.notOk(
      alone.some((h) => h.ok),
      'nobody ok',
    )
  },
)
