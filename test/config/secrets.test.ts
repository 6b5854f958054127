// Which env values are secrets, and that no config error shows one. No ports.
import t from 'tap'
import { buildPlan, validateConfig } from '../../src/config/load-config.js'
import { isSecretKey, redactPlan, REDACTED } from '../../src/config/secrets.js'

t.test('names like a password, secret, token or key are secrets; so are marked keys', async (t) => {
  for (const k of [
    'DB_PASSWORD',
    'db_passwd',
    'CLIENT_SECRET',
    'API_TOKEN',
    'SSH_KEY',
    'AwsCredentials',
  ])
    t.ok(isSecretKey(k), k)
  for (const k of ['PORT', 'JAVA_OPTS', 'LOG_LEVEL']) t.notOk(isSecretKey(k), k)
  t.ok(isSecretKey('LDAP_BIND', ['LDAP_BIND']), 'marked in secretEnv')
})

t.test(
  'the printable plan shows secret env values as (secret), the rest as they are',
  async (t) => {
    const config = validateConfig(
      {
        components: {
          app: {
            command: ['/bin/true'],
            env: { DB_PASSWORD: 'canary-1', LDAP_BIND: 'canary-2', PLAIN: 'shown' },
            secretEnv: ['LDAP_BIND'],
          },
        },
      },
      '/etc/tandem.json',
    )
    const plan = buildPlan(config, '/etc/tandem.json', {}, { accounts: new Map() })
    const spec = plan.components[0]!.instances[0]!
    t.same(spec.secretEnv, ['DB_PASSWORD', 'LDAP_BIND'])
    t.match(spec.env, { DB_PASSWORD: 'canary-1', LDAP_BIND: 'canary-2' }, 'the child gets them')
    const shown = JSON.stringify(redactPlan(plan))
    t.notMatch(shown, /canary/)
    t.match(redactPlan(plan).components[0]!.instances[0]!.env, {
      DB_PASSWORD: REDACTED,
      LDAP_BIND: REDACTED,
      PLAIN: 'shown',
    })
  },
)

t.test('a config error never shows an env value, not even a part of one', async (t) => {
  const bad = (env: Record<string, unknown>, secretEnv: string[] = []) => {
    try {
      validateConfig(
        { components: { app: { command: ['/bin/true'], env, secretEnv } } },
        '/etc/tandem.json',
      )
      return ''
    } catch (err) {
      return (err as Error).message
    }
  }
  const typed = bad({ DB_PASSWORD: 4242424242 })
  t.match(typed, 'components.app.env.DB_PASSWORD: Invalid input: expected string')
  t.notMatch(typed, '4242424242')
  const templated = bad({ API_TOKEN: 'abc{canary}def' })
  t.match(templated, 'components.app.env.API_TOKEN: unknown template variable in a secret value')
  t.notMatch(templated, 'canary')
  t.match(bad({ OTHER: '{nope}' }), 'unknown template variable {nope}', 'a plain value is named')
  t.notMatch(bad({ OTHER: 'x{canary}' }, ['OTHER']), 'canary', 'a marked one is not')
})
