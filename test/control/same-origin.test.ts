import t from 'tap'
import { crossOriginReason } from '../../src/control/same-origin.js'

const HOST = '127.0.0.1:7550'

t.test('same origin, or no browser at all, passes', async (t) => {
  t.equal(crossOriginReason({ host: HOST }), undefined, 'curl: neither Origin nor Sec-Fetch-Site')
  t.equal(
    crossOriginReason({
      host: HOST,
      origin: 'http://127.0.0.1:7550',
      'sec-fetch-site': 'same-origin',
    }),
    undefined,
  )
  t.equal(
    crossOriginReason({ host: HOST, 'sec-fetch-site': 'none' }),
    undefined,
    'typed by the user',
  )
  t.equal(
    crossOriginReason({ host: 'Tandem.Example.COM', origin: 'https://tandem.example.com' }),
    undefined,
    'behind a TLS proxy that passes Host: the scheme is not compared, names ignore case',
  )
})

t.test('another origin is refused, saying why', async (t) => {
  t.match(
    crossOriginReason({ host: HOST, 'sec-fetch-site': 'cross-site' }),
    /Sec-Fetch-Site is cross-site, expected same-origin/,
  )
  t.match(
    crossOriginReason({ host: HOST, 'sec-fetch-site': 'same-site' }),
    /Sec-Fetch-Site is same-site/,
    'a sibling port or subdomain is another origin',
  )
  t.match(
    crossOriginReason({ host: HOST, origin: 'http://evil.example' }),
    /Origin http:\/\/evil.example is not this server \(Host 127.0.0.1:7550\)/,
  )
  t.match(
    crossOriginReason({ host: HOST, origin: 'http://127.0.0.1:7551' }),
    /is not this server/,
    'another port',
  )
  t.match(
    crossOriginReason({ host: 'evil.example:7550', origin: 'http://127.0.0.1:7550' }),
    /is not this server/,
  )
  t.match(crossOriginReason({ host: HOST, origin: 'null' }), /Origin is null/)
  t.match(crossOriginReason({ host: HOST, origin: 'not a url' }), /Origin is not a URL/)
  t.match(crossOriginReason({ origin: 'http://127.0.0.1:7550' }), /no Host header/)
  t.match(
    crossOriginReason({
      host: HOST,
      origin: 'http://127.0.0.1:7550',
      'sec-fetch-site': 'cross-site',
    }),
    /Sec-Fetch-Site/,
    'Sec-Fetch-Site decides even when Origin looks right',
  )
})
