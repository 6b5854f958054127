// A key given twice in the config file (a component, or a key inside one) is a config error
// naming both places: validate and start exit 78 and start nothing; a reload changes nothing.
// Ports 29800-29849 belong to this file (test files run in parallel).
import { existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import {
  accepting,
  alive,
  cli,
  fixture,
  status,
  Supervisor,
  tempDir,
  waitUntil,
  writeConfig,
} from '../helpers/supervisor.js'

/** `components` as JSON text, each entry written as given, so that a name can come twice. */
const configText = (entries: [string, unknown][]): string =>
  [
    '{',
    '  "stateDir": "state",',
    '  "components": {',
    entries.map(([name, c]) => `    ${JSON.stringify(name)}: ${JSON.stringify(c)}`).join(',\n'),
    '  }',
    '}',
  ].join('\n')

const twoWebs = configText([
  ['web', fixture({ port: 29800 })],
  ['api', fixture({ port: 29801 })],
  ['web', fixture({ port: 29802 })],
])
const twoWebsProblem =
  /components\.web: duplicate key "web" at line 6 column 5, first at line 4 column 5: only one of them would count/

// A key inside a component: "env" given twice, as a hand edit that adds a block leaves it.
const nestedText = configText([['web', fixture({ port: 29803 })]]).replace(
  '"env":',
  '"env": {"MODE": "a"}, "env":',
)
const nestedProblem =
  /components\.web\.env: duplicate key "env" at line 4 column \d+, first at line 4 column \d+/

for (const [name, text, problem, ports] of [
  ['a component given twice', twoWebs, twoWebsProblem, [29800, 29801, 29802]],
  ['a key inside a component given twice', nestedText, nestedProblem, [29803]],
] as const) {
  t.test(`${name}: validate and start exit 78 naming both places, nothing starts`, async (t) => {
    const dir = tempDir(t)
    const config = join(dir, 'tandem.json')
    writeFileSync(config, text)

    const v = await cli(['validate', '-c', config])
    t.equal(v.code, 78, v.err)
    t.match(v.err, /invalid config .*tandem\.json/)
    t.match(v.err, problem)

    const sup = new Supervisor(config)
    t.teardown(() => sup.kill())
    let exited = false
    void sup.exited.then(() => (exited = true))
    await waitUntil('tandem start exits', () => exited)
    await sup.ended
    t.equal((await sup.exited).code, 78)
    t.match(sup.stderr.join('\n'), problem)
    t.same(sup.records, [], 'no log line: nothing started')
    t.notOk(existsSync(join(dir, 'state')), 'no state dir created')
    for (const port of ports) t.notOk(await accepting(port), `nothing listens on ${port}`)
  })
}

t.test('a reload of a config with a key given twice changes nothing that runs', async (t) => {
  const dir = tempDir(t)
  const web = fixture({ port: 29810 })
  const api = fixture({ port: 29811 })
  const config = writeConfig(dir, { web, api })
  const sup = new Supervisor(config)
  t.teardown(() => sup.kill())
  await sup.waitLog('all ready', (r) => r.event === 'all-ready')
  const pids = async () =>
    Object.fromEntries((await status(config)).instances.map((i) => [i.id, i.pid]))
  const before = await pids()
  t.same(Object.keys(before).sort(), ['api#0', 'web#0'])

  // The second "web" would replace the first (JSON.parse keeps the last): a changed web and,
  // below, a changed api env, each of which a valid reload would roll.
  const cases: [string, string, RegExp][] = [
    [
      'a component',
      configText([
        ['web', web],
        ['api', api],
        ['web', fixture({ port: 29812 })],
      ]),
      /components\.web: duplicate key "web" at line 6 column 5, first at line 4 column 5/,
    ],
    [
      'a nested key',
      configText([
        ['web', web],
        ['api', api],
      ]).replace('"PORT":"{port}"}', '"PORT":"{port}","PORT":"{port}","VERSION":"2"}'),
      /components\.web\.env\.PORT: duplicate key "PORT" at line 4 column \d+, first at line 4 column \d+/,
    ],
  ]
  for (const [what, text, problem] of cases) {
    writeFileSync(config, text)
    const r = await cli(['reload', '-c', config])
    t.equal(r.code, 78, `${what}: exit 78`)
    t.match(r.err, problem, `${what}: names both places`)
    t.same(await pids(), before, `${what}: nothing running changed`)
    for (const [id, pid] of Object.entries(before)) t.ok(alive(pid!), `${what}: ${id} still runs`)
  }
  t.notOk(await accepting(29812), 'the second web was not started')
  t.equal(sup.proc.exitCode, null, 'the supervisor runs on')
})
