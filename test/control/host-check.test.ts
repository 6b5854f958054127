// The Host names control.http answers to (a guard against DNS rebinding).
import t from 'tap'
import { hostCheck, hostName } from '../../src/control/host-check.js'

t.test('hostName: lower case, no port, no trailing dot, IPv6 in brackets', async (t) => {
  t.equal(hostName('Tandem-A.Example.com:7550'), 'tandem-a.example.com')
  t.equal(hostName('example.com.'), 'example.com')
  t.equal(hostName('127.0.0.1:80'), '127.0.0.1')
  t.equal(hostName('[::1]:7550'), '[::1]')
  t.equal(hostName('[::1]'), '[::1]')
  t.equal(hostName('localhost'), 'localhost')
  t.equal(hostName('::'), '[::]', 'an IPv6 address as a config gives it')
  t.equal(hostName('FE80::1'), '[fe80::1]')
})

t.test('answers to IP addresses, localhost, its own names and the allowed ones', async (t) => {
  const c = hostCheck({
    listenHost: '127.0.0.1',
    allowedHosts: ['Tandem-A.example.com'],
    thisHost: 'zos-a',
  })
  for (const ok of [
    undefined,
    '',
    '127.0.0.1:7550',
    '10.1.2.3',
    '[::1]:7550',
    'localhost:7550',
    'app.localhost',
    'zos-a:7550',
    'tandem-a.example.com',
    'TANDEM-A.EXAMPLE.COM:443',
    'tandem-a.example.com.',
  ])
    t.equal(c.problem(ok), undefined, `${ok} is answered`)
  for (const bad of ['evil.example', 'evil.example:7550', 'zos-a.evil.example', 'localhost.evil'])
    t.match(
      c.problem(bad)?.reason,
      new RegExp(
        `^Host "${bad.replace(/\./g, '\\.')}" is not a name this endpoint answers to \\(a guard against DNS rebinding\\): expected an IP address, localhost, tandem-a\\.example\\.com, zos-a or a name listed in control\\.http\\.allowedHosts$`,
      ),
      `${bad} is refused, saying why and what would do`,
    )
  t.same(
    c.problem('evil.example')?.short,
    'Host "evil.example" is not a name this endpoint answers to (a guard against DNS rebinding): use an IP address or localhost, or list the name in control.http.allowedHosts',
    'the answer names none of the names it answers to (the rebinding page reads it)',
  )
})

t.test('a listen host that is a name is answered to; "*" answers to any', async (t) => {
  const named = hostCheck({ listenHost: 'tandem-a.internal', thisHost: 'h' })
  t.equal(named.problem('tandem-a.internal:7550'), undefined)
  t.match(
    named.problem('other.internal')?.reason,
    /expected an IP address, localhost, tandem-a\.internal, h or/,
  )
  const any = hostCheck({ listenHost: '0.0.0.0', allowedHosts: ['*'], thisHost: 'h' })
  t.equal(any.problem('evil.example'), undefined)
  t.match(
    hostCheck({ listenHost: '0.0.0.0', thisHost: 'h' }).problem('evil.example')?.reason,
    /expected an IP address, localhost, h or a name/,
    'a wildcard address is not a name',
  )
  t.match(
    hostCheck({ listenHost: '::', thisHost: 'h' }).problem('evil.example')?.reason,
    /expected an IP address, localhost, h or a name/,
    'nor is an IPv6 one',
  )
  t.equal(hostCheck({ listenHost: '::', thisHost: 'h' }).problem('[fe80::1]:7550'), undefined)
})
