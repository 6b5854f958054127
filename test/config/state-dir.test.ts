import { mkdirSync, writeFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import t from 'tap'
import { loadConfig } from '../../src/config/load-config.js'
import { controlStateDir } from '../../src/config/control-state-dir.js'
import { DEFAULT_STATE_DIR } from '../../src/config/state-dir.js'

const components = { web: { command: ['node', 'server.js'] } }

t.test('controlStateDir finds the state dir exactly where loadConfig puts it', async (t) => {
  const dir = t.testdir({})
  mkdirSync(join(dir, 'sub'))
  const cases: [string, Record<string, unknown>][] = [
    ['missing', {}],
    ['relative', { stateDir: 'state' }],
    ['dotted', { stateDir: './st/' }],
    ['upwards', { stateDir: '../up' }],
    ['absolute', { stateDir: join(dir, 'abs') }],
  ]
  for (const [name, extra] of cases) {
    const file = join(dir, 'sub', `${name}.json`)
    writeFileSync(file, JSON.stringify({ ...extra, components }))
    for (const path of [
      file,
      relative(process.cwd(), file),
      join(dir, 'sub/../sub', `${name}.json`),
    ]) {
      t.equal(await controlStateDir(path), loadConfig(path).stateDir, `${name} via ${path}`)
    }
  }
  t.equal(
    await controlStateDir(join(dir, 'sub', 'missing.json')),
    join(dir, 'sub', DEFAULT_STATE_DIR),
  )
})

t.test('the rest of the file is not validated: an operator may ask while editing it', async (t) => {
  const dir = t.testdir({})
  const file = join(dir, 'tandem.json')
  writeFileSync(file, JSON.stringify({ stateDir: 's', components: { web: { bogus: 1 } } }))
  t.equal(await controlStateDir(file), join(dir, 's'))
})

t.test('a component named "stateDir" does not hide the key', async (t) => {
  const dir = t.testdir({})
  const file = join(dir, 'tandem.json')
  writeFileSync(
    file,
    JSON.stringify({ stateDir: 's', components: { stateDir: { command: ['x'] } } }),
  )
  t.equal(await controlStateDir(file), join(dir, 's'))
})

t.test(
  'a state dir that cannot be read alone gets the whole validation and its error',
  async (t) => {
    const dir = t.testdir({})
    const cases: [string, string, RegExp][] = [
      ['not-a-string.json', JSON.stringify({ stateDir: 5, components }), /stateDir/],
      ['not-json.json', '{ "stateDir": ', /invalid JSON/],
      ['array.json', '[]', /expected object/i],
      [
        'twice.json',
        '{ "stateDir": "a", "components": {}, "stateDir": "b" }',
        /stateDir: duplicate key "stateDir" at line 1 column 38, first at line 1 column 3/,
      ],
    ]
    for (const [name, text, message] of cases) {
      writeFileSync(join(dir, name), text)
      await t.rejects(controlStateDir(join(dir, name)), { code: 'ECONFIG', message }, name)
    }
    await t.rejects(controlStateDir(join(dir, 'nope.json')), {
      code: 'ECONFIG',
      message: /cannot read/,
    })
  },
)
