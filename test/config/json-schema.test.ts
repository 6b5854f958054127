import { readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { configJsonSchema } from '../../src/config/json-schema.js'

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const read = (name: string): string => readFileSync(resolve(repo, name), 'utf8')

t.test(
  'config.schema.json is what configJsonSchema() produces (run `npm run schema` after a schema change)',
  async (t) => {
    const committed = read('config.schema.json')
    t.same(JSON.parse(committed), JSON.parse(configJsonSchema()), 'same schema')
    t.equal(committed, configJsonSchema() + '\n', 'same text, as scripts/write-schema.js writes it')
  },
)

t.test('config.schema.json is a draft 2020-12 schema titled for tandem', async (t) => {
  const schema = JSON.parse(read('config.schema.json')) as Record<string, unknown>
  t.equal(schema.$schema, 'https://json-schema.org/draft/2020-12/schema')
  t.equal(schema.title, 'tandem configuration')
  t.match(schema, {
    type: 'object',
    required: ['components'],
    properties: { components: { type: 'object' } },
  })
})

t.test('config.example.json points $schema at config.schema.json', async (t) => {
  const example = JSON.parse(read('config.example.json')) as { $schema?: string }
  t.equal(example.$schema, './config.schema.json')
  t.equal(
    resolve(repo, example.$schema!),
    resolve(repo, 'config.schema.json'),
    'resolves to the repo schema',
  )
})
