import { writeFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { loadConfig } from '../../src/config/load-config.js'
import type { Plan } from '../../src/config/plan.js'
import { DEFAULTS } from '../../src/config/schema.js'

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..')

interface Problem {
  path: string
  message: string
}

/** Loads `file`, expecting a config error; returns it (or undefined, after a failed assertion). */
const loadError = (
  t: Test,
  file: string,
): { code?: unknown; message: string; problems: Problem[] } => {
  try {
    loadConfig(file, { TANDEM_NODE: 'n1' })
  } catch (err) {
    t.equal((err as { code?: unknown }).code, 'ECONFIG', 'code is ECONFIG')
    return err as { code?: unknown; message: string; problems: Problem[] }
  }
  t.fail('loadConfig accepted a bad config')
  return { message: '', problems: [] }
}

/** Writes `text` (a string as is, anything else as JSON) to config.json in a fresh test dir. */
const writeConfig = (t: Test, content: unknown): string => {
  const dir = t.testdir({})
  const file = join(dir, 'config.json')
  writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content, null, 2))
  return file
}

/** A problem at exactly `path` whose message contains every fragment. */
const hasProblem = (problems: Problem[], path: string, ...fragments: string[]): boolean =>
  problems.some((p) => p.path === path && fragments.every((f) => p.message.includes(f)))

const cmd = ['node', 'server.js']

interface BadCase {
  name: string
  content: unknown
  path: string
  fragments: string[]
  todo?: string
}

const bad: BadCase[] = [
  {
    name: 'rejects a "__proto__" key (it must not become the config\'s prototype)',
    content: '{ "__proto__": { "stateDir": "p" }, "components": { "a": { "command": ["x"] } } }',
    path: '',
    fragments: ['Unrecognized key', '__proto__'],
  },
  {
    name: 'rejects invalid JSON, naming the line and column',
    content:
      '{\n  "components": {\n    "a": { "command": ["x"] }\n    "b": { "command": ["y"] }\n  }\n}\n',
    path: '',
    fragments: ['invalid JSON', 'line 4 column 5'],
  },
  {
    name: 'rejects invalid JSON with CRLF line ends, naming the line and column',
    content: '{\r\n  "components": {}\r\n  "node": "x"\r\n}\r\n',
    path: '',
    fragments: ['invalid JSON', 'line 3 column 3'],
  },
  {
    name: 'rejects a truncated file',
    content: '{"components": {"a": {"command": ["x"]}}',
    path: '',
    fragments: ['invalid JSON', 'line 1 column 41'],
  },
  {
    name: 'rejects comments (strict JSON)',
    content: '// tandem\n{"components": {"a": {"command": ["x"]}}}',
    path: '',
    fragments: ['invalid JSON', 'line 1 column 1'],
  },
  {
    name: 'rejects an empty file',
    content: '',
    path: '',
    fragments: ['invalid JSON'],
  },
  {
    name: 'rejects a file of only whitespace',
    content: '  \n\n',
    path: '',
    fragments: ['invalid JSON'],
  },
  {
    name: 'rejects a file that is not an object',
    content: '[]',
    path: '',
    fragments: ['expected object'],
  },
  {
    name: 'rejects an unknown top-level key, naming it',
    content: { components: { a: { command: cmd } }, compnents: {} },
    path: '',
    fragments: ['compnents'],
  },
  {
    name: 'rejects an unknown component key, naming it',
    content: { components: { a: { command: cmd, instance: 2 } } },
    path: 'components.a',
    fragments: ['"instance"'],
  },
  {
    name: 'rejects a port given as a string: expected number, showing the value',
    content: { components: { a: { command: cmd, port: '8080' } } },
    path: 'components.a.port',
    fragments: ['expected number', '"8080"'],
  },
  {
    name: 'rejects a component without command',
    content: { components: { a: { port: 8080 } } },
    path: 'components.a.command',
    fragments: ['expected array'],
  },
  {
    name: 'rejects an empty command',
    content: { components: { a: { command: [] } } },
    path: 'components.a.command',
    fragments: ['>=1'],
  },
  {
    name: 'rejects an empty program name',
    content: { components: { a: { command: [''] } } },
    path: 'components.a.command[0]',
    fragments: ['>=1'],
  },
  {
    name: 'rejects port 0',
    content: { components: { a: { command: cmd, port: 0 } } },
    path: 'components.a.port',
    fragments: ['>=1', 'got 0'],
  },
  {
    name: 'rejects port 70000',
    content: { components: { a: { command: cmd, port: 70000 } } },
    path: 'components.a.port',
    fragments: ['<=65535', 'got 70000'],
  },
  {
    name: 'rejects an out-of-range port inside a ports list, at its index',
    content: { components: { a: { command: cmd, instances: 2, ports: [8000, 70000] } } },
    path: 'components.a.ports[1]',
    fragments: ['<=65535'],
  },
  {
    name: 'rejects ports that collide across components',
    content: {
      components: {
        a: { command: cmd, port: 8000, instances: 2 },
        b: { command: cmd, port: 8001 },
      },
    },
    path: 'components.b.port',
    fragments: ['port 8001 of b#0 is already used by a#1'],
  },
  {
    name: 'rejects an explicit ports list that collides with another component',
    content: {
      components: {
        a: { command: cmd, port: 8000 },
        b: { command: cmd, instances: 2, ports: [9000, 8000] },
      },
    },
    path: 'components.b.ports[1]',
    fragments: ['port 8000 of b#1 is already used by a#0'],
  },
  {
    name: 'rejects the same port twice in one ports list',
    content: { components: { a: { command: cmd, instances: 2, ports: [8000, 8000] } } },
    path: 'components.a.ports[1]',
    fragments: ['port 8000 of a#1 is already used by a#0'],
  },
  {
    name: 'rejects a ports list whose length does not match instances',
    content: { components: { a: { command: cmd, instances: 3, ports: [8000, 8001] } } },
    path: 'components.a.ports',
    fragments: ['expected 3 ports', 'got 2'],
  },
  {
    name: 'rejects port + instances running past 65535',
    content: { components: { a: { command: cmd, port: 65534, instances: 3 } } },
    path: 'components.a.port',
    fragments: ['past 65535'],
  },
  {
    name: 'rejects both port and ports',
    content: { components: { a: { command: cmd, port: 8000, ports: [9000] } } },
    path: 'components.a.ports',
    fragments: ['either port or ports'],
  },
  {
    name: 'rejects dependsOn naming an unknown component, listing the known ones',
    content: { components: { a: { command: cmd, dependsOn: ['nope'] }, b: { command: cmd } } },
    path: 'components.a.dependsOn[0]',
    fragments: ['unknown component "nope"', 'a, b'],
  },
  {
    name: 'rejects a hook on an unknown event, naming the hook, the name and the list',
    content: {
      components: { a: { command: cmd } },
      hooks: [
        { on: ['failed'], command: cmd },
        { on: ['ready', 'crashloop'], command: cmd },
      ],
    },
    path: 'hooks[1].on[1]',
    fragments: ['unknown event name "crashloop"', 'expected one of spawned, ready', 'crashLoop'],
  },
  {
    name: 'rejects a hook whose target names no component',
    content: {
      components: { a: { command: cmd }, b: { command: cmd } },
      hooks: [{ on: ['failed'], target: 'nope', command: cmd }],
    },
    path: 'hooks[0].target',
    fragments: ['hook 0: unknown target "nope"', 'among a, b'],
  },
  {
    name: 'rejects a hook whose target names no instance',
    content: {
      components: { a: { command: cmd, instances: 2 } },
      hooks: [{ on: ['failed'], target: 'a#2', command: cmd }],
    },
    path: 'hooks[0].target',
    fragments: ['hook 0: unknown target "a#2"', 'a has instances #0 to #1'],
  },
  {
    name: 'rejects a component that depends on itself',
    content: { components: { a: { command: cmd, dependsOn: ['a'] } } },
    path: 'components.a.dependsOn[0]',
    fragments: ['itself'],
  },
  {
    name: 'rejects a dependency cycle a -> b -> a',
    content: {
      components: { a: { command: cmd, dependsOn: ['b'] }, b: { command: cmd, dependsOn: ['a'] } },
    },
    path: 'components.a.dependsOn',
    fragments: ['dependency cycle', 'a -> b -> a'],
  },
  {
    name: 'rejects a longer dependency cycle, naming every member',
    content: {
      components: {
        root: { command: cmd },
        a: { command: cmd, dependsOn: ['root', 'b'] },
        b: { command: cmd, dependsOn: ['c'] },
        c: { command: cmd, dependsOn: ['a'] },
      },
    },
    path: 'components.a.dependsOn',
    fragments: ['dependency cycle', 'a -> b -> c -> a'],
  },
  {
    name: 'rejects an unknown stop signal name',
    content: { components: { a: { command: cmd, stop: { signal: 'SIGFOO' } } } },
    path: 'components.a.stop.signal',
    fragments: ['signal name', '"SIGFOO"'],
  },
  {
    name: 'rejects an unknown template variable in env',
    content: { components: { a: { command: cmd, env: { X: 'x-{foo}' } } } },
    path: 'components.a.env.X',
    fragments: ['unknown template variable {foo}', '{port}'],
  },
  {
    name: 'rejects an unknown template variable in the command',
    content: { components: { a: { command: ['node', '--x={foo}'] } } },
    path: 'components.a.command[1]',
    fragments: ['unknown template variable {foo}'],
  },
  {
    name: 'rejects {port} in a component without a port',
    content: { components: { a: { command: cmd, env: { PORT: '{port}' } } } },
    path: 'components.a.env.PORT',
    fragments: ['{port}', 'no port'],
  },
  {
    name: 'rejects tcp readiness without a port',
    content: { components: { a: { command: cmd, readiness: { type: 'tcp' } } } },
    path: 'components.a.readiness.type',
    fragments: ['"tcp" needs a port'],
  },
  {
    name: 'rejects http readiness without a port',
    content: { components: { a: { command: cmd, readiness: { type: 'http' } } } },
    path: 'components.a.readiness.type',
    fragments: ['"http" needs a port'],
  },
  {
    name: 'rejects a health check without a port',
    content: { components: { a: { command: cmd, health: { type: 'http', path: '/health' } } } },
    path: 'components.a.health.type',
    fragments: ['health "http" needs a port'],
  },
  {
    name: 'rejects a health check with a bad path',
    content: {
      components: { a: { command: cmd, port: 8000, health: { type: 'http', path: 'health' } } },
    },
    path: 'components.a.health.path',
    fragments: ['/'],
  },
  {
    name: 'rejects a zero or negative maxMemoryMb',
    content: { components: { a: { command: cmd, maxMemoryMb: 0 } } },
    path: 'components.a.maxMemoryMb',
    fragments: ['0'],
  },
  {
    name: 'rejects a metrics interval under 100 ms',
    content: { metrics: { intervalMs: 10 }, components: { a: { command: cmd } } },
    path: 'metrics.intervalMs',
    fragments: ['100'],
  },
  {
    name: 'rejects a control.http port that an instance uses',
    content: {
      control: { http: { port: 8001 } },
      components: { a: { command: cmd, port: 8000, instances: 2 } },
    },
    path: 'control.http.port',
    fragments: ['port 8001 is already used by a#1'],
  },
  {
    name: 'rejects an allowed host that is a URL, not a host name',
    content: {
      control: {
        http: { port: 8005, allowedHosts: ['tandem-a.example.com', 'https://x.example'] },
      },
      components: { a: { command: cmd } },
    },
    path: 'control.http.allowedHosts[1]',
    fragments: ['expected a host name such as tandem-a.example.com', 'https://x.example'],
  },
  {
    name: 'rejects a control.agent port that control.http uses',
    content: {
      control: { http: { port: 8005 }, agent: { port: 8005 } },
      components: { a: { command: cmd, port: 8000, instances: 2 } },
    },
    path: 'control.agent.port',
    fragments: ['port 8005 is already used by control.http'],
  },
  {
    name: 'rejects ha timings where a standby could take over before the active fences',
    content: {
      ha: { name: 'c1', sharedDir: '/shared', selfFenceMs: 1000, takeoverMs: 1200 },
      components: { a: { command: cmd } },
    },
    path: 'ha.takeoverMs',
    fragments: ['expected at least ha.selfFenceMs + 500 (1500)', 'got 1200'],
  },
  {
    name: 'rejects a renewMs over half of selfFenceMs',
    content: {
      ha: { name: 'c1', sharedDir: '/shared', renewMs: 600 },
      components: { a: { command: cmd } },
    },
    path: 'ha.renewMs',
    fragments: ['expected at most half of ha.selfFenceMs (1000)', 'got 600'],
  },
  {
    name: 'rejects ha.sharedDir beside ha.backend, saying how to migrate',
    content: {
      ha: { name: 'c1', sharedDir: '/shared', backend: { type: 'dir', sharedDir: '/s2' } },
      components: { a: { command: cmd } },
    },
    path: 'ha.sharedDir',
    fragments: [
      'expected either ha.sharedDir (the older form) or ha.backend, not both',
      'ha.backend: {"type": "dir", "sharedDir": "/shared"}',
    ],
  },
  {
    name: 'rejects an ha section with no backend',
    content: { ha: { name: 'c1' }, components: { a: { command: cmd } } },
    path: 'ha.backend',
    fragments: ['expected where the lease is held', '{"type": "etcd", "endpoints": [...]}'],
  },
  {
    name: 'rejects an unknown backend type',
    content: {
      ha: { name: 'c1', backend: { type: 'zookeeper' } },
      components: { a: { command: cmd } },
    },
    path: 'ha.backend.type',
    fragments: ['"zookeeper"'],
  },
  {
    name: 'rejects an etcd endpoint that is not a URL',
    content: {
      ha: { name: 'c1', backend: { type: 'etcd', endpoints: ['10.0.0.1:2379'] } },
      components: { a: { command: cmd } },
    },
    path: 'ha.backend.endpoints[0]',
    fragments: ['expected an etcd client URL such as http://10.0.0.1:2379', '"10.0.0.1:2379"'],
  },
  {
    name: 'rejects an etcd backend without endpoints',
    content: {
      ha: { name: 'c1', backend: { type: 'etcd', endpoints: [] } },
      components: { a: { command: cmd } },
    },
    path: 'ha.backend.endpoints',
    fragments: [],
  },
  {
    name: 'rejects an etcd prefix that ends with a slash',
    content: {
      ha: { name: 'c1', backend: { type: 'etcd', endpoints: ['http://e:2379'], prefix: '/t/' } },
      components: { a: { command: cmd } },
    },
    path: 'ha.backend.prefix',
    fragments: ['expected a key prefix starting with / and not ending with /'],
  },
  {
    name: 'rejects etcd tls with plain http endpoints',
    content: {
      ha: {
        name: 'c1',
        backend: { type: 'etcd', endpoints: ['http://e:2379'], tls: { ca: 'ca.pem' } },
      },
      components: { a: { command: cmd } },
    },
    path: 'ha.backend.endpoints',
    fragments: ['expected https:// endpoints with ha.backend.tls', 'http://e:2379'],
  },
  {
    name: 'rejects a client certificate without its key',
    content: {
      ha: {
        name: 'c1',
        backend: { type: 'etcd', endpoints: ['https://e:2379'], tls: { cert: 'c.pem' } },
      },
      components: { a: { command: cmd } },
    },
    path: 'ha.backend.tls.key',
    fragments: ['expected a client certificate and its key together'],
  },
  {
    name: 'rejects etcd auth without a password file',
    content: {
      ha: {
        name: 'c1',
        backend: { type: 'etcd', endpoints: ['http://e:2379'], auth: { user: 'tandem' } },
      },
      components: { a: { command: cmd } },
    },
    path: 'ha.backend.auth.passwordFile',
    fragments: [],
  },
  {
    name: 'rejects an ha section without a cluster name',
    content: { ha: { sharedDir: '/shared' }, components: { a: { command: cmd } } },
    path: 'ha.name',
    fragments: [],
  },
  {
    name: 'rejects a hot standby on a component that runs on every node',
    content: { components: { a: { command: cmd, standby: 'hot' } } },
    path: 'components.a.standby',
    fragments: ['a hot standby needs "runOn": "active"'],
  },
  {
    name: 'rejects an unknown logs key',
    content: { logs: { directory: 'x' }, components: { a: { command: cmd } } },
    path: 'logs',
    fragments: ['directory'],
  },
  {
    name: 'rejects a config with zero components',
    content: { components: {} },
    path: 'components',
    fragments: ['at least one component'],
  },
  {
    name: 'rejects a config without components',
    content: {},
    path: 'components',
    fragments: ['expected'],
  },
  {
    name: 'rejects a component name that is not a name',
    content: { components: { '9lives': { command: cmd } } },
    path: 'components.9lives',
    fragments: [],
  },
  {
    name: 'rejects metrics.idleIntervalMs below metrics.intervalMs',
    content: {
      metrics: { intervalMs: 10_000, idleIntervalMs: 5000 },
      components: { a: { command: cmd } },
    },
    path: 'metrics.idleIntervalMs',
    fragments: ['expected at least metrics.intervalMs (10000); got 5000'],
  },
  {
    name: 'says why a component name is not a name',
    content: { components: { '9lives': { command: cmd } } },
    path: 'components.9lives',
    fragments: ['starting with a letter'],
  },
]

t.test('bad configs', async (t) => {
  for (const c of bad) {
    t.test(c.name, { ...(c.todo ? { todo: c.todo } : {}) }, async (t) => {
      const err = loadError(t, writeConfig(t, c.content))
      t.ok(
        hasProblem(err.problems, c.path, ...c.fragments),
        `a problem at "${c.path}" mentions ${c.fragments.map((f) => JSON.stringify(f)).join(' and ')}`,
        { problems: err.problems },
      )
      t.match(err.message, c.path === '' ? '(root)' : c.path, 'the error message names the path')
    })
  }
})

t.test('says "the file is empty" for an empty file', async (t) => {
  const err = loadError(t, writeConfig(t, ''))
  t.ok(hasProblem(err.problems, '', 'empty'), 'says the file is empty', { problems: err.problems })
})

t.test(
  'a key given twice in one object is a problem at its path, naming both places',
  async (t) => {
    const text = [
      '{',
      '  "components": {',
      '    "a": { "command": ["x"], "env": { "A": "1", "A": "2" } },',
      '    "b": { "command": ["y"] },',
      '    "a": { "command": ["z"], "dependsOn": ["b"] },',
      '    "a": { "command": ["w"] }',
      '  },',
      '  "logs": { "file": "one.log" }, "logs": { "file": "two.log" }',
      '}',
    ].join('\r\n')
    const err = loadError(t, writeConfig(t, text))
    const twice = (key: string, at: string, first: string) =>
      `duplicate key "${key}" at ${at}, first at ${first}: only one of them would count; remove or rename one`
    t.same(err.problems, [
      {
        path: 'components.a.env.A',
        message: twice('A', 'line 3 column 49', 'line 3 column 39'),
      },
      { path: 'components.a', message: twice('a', 'line 5 column 5', 'line 3 column 5') },
      { path: 'components.a', message: twice('a', 'line 6 column 5', 'line 3 column 5') },
      { path: 'logs', message: twice('logs', 'line 8 column 34', 'line 8 column 3') },
    ])
    t.match(err.message, /components\.a: duplicate key "a" at line 5 column 5, first at line 3/)
  },
)

t.test('a key in an array element, or the same key in different objects', async (t) => {
  const inArray = loadError(
    t,
    writeConfig(t, '{"components": {"a": {"command": ["x"], "ports": [{"p": 1, "p": 2}]}}}'),
  )
  t.same(
    inArray.problems.map((p) => p.path),
    ['components.a.ports[0].p'],
  )
  // The same names in sibling objects are no duplicate: this file is valid.
  const file = writeConfig(
    t,
    '{"components": {"a": {"command": ["x"], "env": {"A": "1"}}, "b": {"command": ["x"], "env": {"A": "1"}}}}',
  )
  t.same(
    loadConfig(file, { TANDEM_NODE: 'n1' }).components.map((c) => c.name),
    ['a', 'b'],
  )
})

t.test('rejects a missing file with "cannot read", naming the file', async (t) => {
  const file = join(t.testdir({}), 'nope.json')
  const err = loadError(t, file)
  t.ok(hasProblem(err.problems, '', 'cannot read'), 'problem says cannot read', {
    problems: err.problems,
  })
  t.match(err.message, file)
})

t.test('reports every problem in a file at once', async (t) => {
  const file = writeConfig(t, {
    components: {
      a: { command: cmd, port: '8000', stop: { signal: 'SIGFOO' }, bogus: true },
      b: { command: [], port: 70000 },
    },
  })
  const err = loadError(t, file)
  t.ok(hasProblem(err.problems, 'components.a.port', 'expected number'), 'a.port')
  t.ok(hasProblem(err.problems, 'components.a.stop.signal', 'SIGFOO'), 'a.stop.signal')
  t.ok(hasProblem(err.problems, 'components.a', 'bogus'), 'a.bogus')
  t.ok(hasProblem(err.problems, 'components.b.command', '>=1'), 'b.command')
  t.ok(hasProblem(err.problems, 'components.b.port', '<=65535'), 'b.port')
  t.equal(err.problems.length, 5, 'exactly five problems', { problems: err.problems })
  for (const p of [
    'components.a.port',
    'components.a.stop.signal',
    'components.b.command',
    'components.b.port',
  ]) {
    t.match(err.message, p, `message lists ${p}`)
  }
})

t.test('reports every cross-field problem at once', async (t) => {
  const file = writeConfig(t, {
    components: {
      a: { command: ['x', '{foo}'], port: 8000, ports: [8000], dependsOn: ['a'] },
      b: { command: cmd, port: 8000, env: { Y: '{bar}' }, dependsOn: ['nope'] },
      c: { command: cmd, readiness: { type: 'tcp' }, env: { P: '{port}' } },
    },
  })
  const err = loadError(t, file)
  const expected: [string, string][] = [
    ['components.a.ports', 'either port or ports'],
    ['components.a.command[1]', '{foo}'],
    ['components.a.dependsOn[0]', 'itself'],
    ['components.b.port', 'already used by a#0'],
    ['components.b.env.Y', '{bar}'],
    ['components.b.dependsOn[0]', '"nope"'],
    ['components.c.readiness.type', 'needs a port'],
    ['components.c.env.P', '{port}'],
  ]
  for (const [path, fragment] of expected) {
    t.ok(hasProblem(err.problems, path, fragment), `${path}: ${fragment}`, {
      problems: err.problems,
    })
  }
  t.equal(err.problems.length, expected.length, 'nothing else', { problems: err.problems })
})

/** Loads a good config written to a test dir. */
const loadGood = (
  t: Test,
  content: unknown,
  env: NodeJS.ProcessEnv = { TANDEM_NODE: 'n1' },
): { plan: Plan; dir: string } => {
  const file = writeConfig(t, content)
  return { plan: loadConfig(file, env), dir: dirname(file) }
}

t.test('loads config.example.json', async (t) => {
  const file = join(repo, 'config.example.json')
  const plan = loadConfig(file, { TANDEM_NODE: 'n1' })
  t.equal(plan.configFile, file)
  t.equal(plan.stateDir, join(repo, '.tandem'))
  t.same(
    plan.components.map((c) => c.name),
    ['discovery', 'gateway'],
  )
  const gateway = plan.components.find((c) => c.name === 'gateway')!
  t.same(
    gateway.instances.map((i) => i.id),
    ['gateway#0', 'gateway#1', 'gateway#2'],
  )
  t.same(
    gateway.instances.map((i) => i.port),
    [7554, 7555, 7556],
  )
  t.same(
    gateway.instances.map((i) => i.env.PORT),
    ['7554', '7555', '7556'],
  )
  t.same(gateway.dependsOn, ['discovery'])
  t.match(gateway.instances[0]!.readiness, { type: 'http', path: '/health' })
  t.same(gateway.instances[0]!.stop, { signal: 'SIGTERM', timeoutMs: 5000 })
})

t.test('gives instance i the port port + i', async (t) => {
  const { plan } = loadGood(t, { components: { a: { command: cmd, port: 9000, instances: 4 } } })
  t.same(
    plan.components[0]!.instances.map((i) => i.port),
    [9000, 9001, 9002, 9003],
  )
  t.same(
    plan.components[0]!.instances.map((i) => i.index),
    [0, 1, 2, 3],
  )
})

t.test('accepts port + instances ending exactly at 65535', async (t) => {
  const { plan } = loadGood(t, { components: { a: { command: cmd, port: 65533, instances: 3 } } })
  t.same(
    plan.components[0]!.instances.map((i) => i.port),
    [65533, 65534, 65535],
  )
})

t.test('uses an explicit ports list as given', async (t) => {
  const { plan } = loadGood(t, {
    components: { a: { command: cmd, instances: 3, ports: [9100, 9050, 9300] } },
  })
  t.same(
    plan.components[0]!.instances.map((i) => i.port),
    [9100, 9050, 9300],
  )
  t.same(
    plan.components[0]!.instances.map((i) => i.env.TANDEM_PORT),
    ['9100', '9050', '9300'],
  )
})

t.test('gives instances without a port no port', async (t) => {
  const { plan } = loadGood(t, { components: { a: { command: cmd, instances: 2 } } })
  for (const i of plan.components[0]!.instances) {
    t.equal(i.port, undefined)
    t.notOk('TANDEM_PORT' in i.env, 'no TANDEM_PORT')
  }
})

t.test('fills {port}, {instance}, {node} and {component} in env', async (t) => {
  const { plan } = loadGood(t, {
    node: 'alpha',
    components: {
      api: {
        command: cmd,
        port: 8000,
        instances: 2,
        env: {
          ALL: '{component}#{instance}@{node}:{port}',
          PLAIN: 'no vars',
          TWICE: '{port}/{port}',
        },
      },
    },
  })
  const [i0, i1] = plan.components[0]!.instances
  t.equal(i0!.env.ALL, 'api#0@alpha:8000')
  t.equal(i1!.env.ALL, 'api#1@alpha:8001')
  t.equal(i0!.env.PLAIN, 'no vars')
  t.equal(i1!.env.TWICE, '8001/8001')
})

t.test('fills templates in argv', async (t) => {
  const { plan } = loadGood(t, {
    components: {
      api: {
        command: ['node', 'srv.js', '--port={port}', '--name={component}-{instance}', '{node}'],
        port: 8000,
        instances: 2,
      },
    },
  })
  t.same(plan.components[0]!.instances[1]!.argv, [
    'node',
    'srv.js',
    '--port=8001',
    '--name=api-1',
    'n1',
  ])
})

t.test('leaves text that only looks like a template alone', async (t) => {
  const { plan } = loadGood(t, {
    components: { a: { command: ['echo', '{}', '{ port }', '{1x}'], port: 8000 } },
  })
  t.same(plan.components[0]!.instances[0]!.argv, ['echo', '{}', '{ port }', '{1x}'])
})

t.test('sets TANDEM_NODE, TANDEM_COMPONENT, TANDEM_INSTANCE and TANDEM_PORT', async (t) => {
  const { plan } = loadGood(t, {
    components: { api: { command: cmd, port: 8000, instances: 2, env: { X: '1' } } },
  })
  t.same(plan.components[0]!.instances[1]!.env, {
    TANDEM_NODE: 'n1',
    TANDEM_COMPONENT: 'api',
    TANDEM_INSTANCE: '1',
    TANDEM_PORT: '8001',
    X: '1',
  })
})

t.test('takes the node name from the config, then TANDEM_NODE, then the host name', async (t) => {
  t.equal(
    loadGood(t, { node: 'alpha', components: { a: { command: cmd } } }, { TANDEM_NODE: 'beta' })
      .plan.node,
    'alpha',
  )
  t.equal(
    loadGood(t, { components: { a: { command: cmd } } }, { TANDEM_NODE: 'beta' }).plan.node,
    'beta',
  )
  const { hostname } = await import('node:os')
  t.equal(loadGood(t, { components: { a: { command: cmd } } }, {}).plan.node, hostname())
})

t.test('resolves cwd and stateDir relative to the config file', async (t) => {
  const { plan, dir } = loadGood(t, {
    stateDir: 'run/state',
    components: {
      a: { command: cmd, cwd: 'srv/a' },
      b: { command: cmd },
      c: { command: cmd, cwd: '/abs/c' },
    },
  })
  t.equal(plan.stateDir, join(dir, 'run/state'))
  const byName = Object.fromEntries(plan.components.map((c) => [c.name, c.instances[0]!]))
  t.equal(byName.a!.cwd, join(dir, 'srv/a'))
  t.equal(byName.b!.cwd, dir, 'default cwd is the config file directory')
  t.equal(byName.c!.cwd, '/abs/c', 'absolute cwd kept')
})

t.test(
  'resolves paths relative to the config file even when loaded by a relative path',
  async (t) => {
    const dir = t.testdir({
      'config.json': JSON.stringify({ components: { a: { command: cmd, cwd: 'x' } } }),
    })
    const cwd = process.cwd()
    process.chdir(dirname(dir))
    t.teardown(() => process.chdir(cwd))
    const plan = loadConfig(join(basenameOf(dir), 'config.json'), { TANDEM_NODE: 'n1' })
    t.equal(plan.configFile, join(dir, 'config.json'))
    t.equal(plan.stateDir, join(dir, '.tandem'))
    t.equal(plan.components[0]!.instances[0]!.cwd, join(dir, 'x'))
  },
)

const basenameOf = (p: string): string => p.slice(dirname(p).length + 1)

t.test('orders components so that dependencies come first', async (t) => {
  const { plan } = loadGood(t, {
    components: {
      web: { command: cmd, dependsOn: ['api', 'cache'] },
      api: { command: cmd, dependsOn: ['db'] },
      cache: { command: cmd },
      db: { command: cmd },
      lone: { command: cmd },
    },
  })
  const order = plan.components.map((c) => c.name)
  t.same([...order].sort(), ['api', 'cache', 'db', 'lone', 'web'], 'each component once')
  const before = (a: string, b: string) =>
    t.ok(order.indexOf(a) < order.indexOf(b), `${a} before ${b} in ${order.join(', ')}`)
  before('db', 'api')
  before('api', 'web')
  before('cache', 'web')
})

t.test('defaults readiness to tcp with a port and none without', async (t) => {
  const { plan } = loadGood(t, {
    components: {
      withPort: { command: cmd, port: 8000 },
      withPorts: { command: cmd, ports: [8100] },
      noPort: { command: cmd },
    },
  })
  const by = Object.fromEntries(plan.components.map((c) => [c.name, c.instances[0]!]))
  t.same(by.withPort!.readiness, {
    type: 'tcp',
    timeoutMs: DEFAULTS.readinessTimeoutMs,
    intervalMs: DEFAULTS.readinessIntervalMs,
  })
  t.same(by.withPorts!.readiness, {
    type: 'tcp',
    timeoutMs: DEFAULTS.readinessTimeoutMs,
    intervalMs: DEFAULTS.readinessIntervalMs,
  })
  t.same(by.noPort!.readiness, { type: 'none' })
})

t.test('fills the documented defaults', async (t) => {
  const { plan } = loadGood(t, { components: { a: { command: cmd } } })
  t.match(plan.logs, {
    level: 'info',
    stdout: true,
    perInstance: false,
    maxLineBytes: DEFAULTS.logMaxLineBytes,
    rotate: { maxBytes: DEFAULTS.logRotateMaxBytes, keep: DEFAULTS.logRotateKeep },
  })
  t.equal(
    plan.logs.dir,
    join(dirname(plan.configFile), 'logs'),
    'logs.dir is relative to the config file',
  )
  const i = plan.components[0]!.instances[0]!
  t.equal(i.host, '127.0.0.1')
  t.equal(i.restart, 'on-failure')
  t.same(i.backoff, {
    initialMs: DEFAULTS.backoffInitialMs,
    factor: DEFAULTS.backoffFactor,
    maxMs: DEFAULTS.backoffMaxMs,
    jitter: DEFAULTS.backoffJitter,
    resetAfterMs: DEFAULTS.backoffResetAfterMs,
  })
  t.same(i.crashLoop, {
    maxExits: DEFAULTS.crashLoopMaxExits,
    windowMs: DEFAULTS.crashLoopWindowMs,
    retry: false,
  })
  t.same(i.stop, { signal: 'SIGTERM', timeoutMs: DEFAULTS.stopTimeoutMs })
  t.same(plan.components[0]!.dependsOn, [])
})

t.test('fills defaults inside a partly given block', async (t) => {
  const { plan } = loadGood(t, {
    components: {
      a: { command: cmd, port: 8000, backoff: { maxMs: 5000 }, readiness: { type: 'http' } },
    },
  })
  const i = plan.components[0]!.instances[0]!
  t.same(i.backoff, {
    ...{
      initialMs: DEFAULTS.backoffInitialMs,
      factor: DEFAULTS.backoffFactor,
      jitter: DEFAULTS.backoffJitter,
      resetAfterMs: DEFAULTS.backoffResetAfterMs,
    },
    maxMs: 5000,
  })
  t.same(i.readiness, {
    type: 'http',
    path: '/',
    timeoutMs: DEFAULTS.readinessTimeoutMs,
    intervalMs: DEFAULTS.readinessIntervalMs,
  })
})

t.test(
  'ha.backend: the older ha.sharedDir is the dir backend; paths resolve against the config',
  async (t) => {
    const older = loadGood(t, {
      ha: { name: 'c1', sharedDir: 'shared' },
      components: { a: { command: cmd } },
    })
    t.same(older.plan.ha?.backend, { type: 'dir', sharedDir: join(older.dir, 'shared') })
    t.notOk('sharedDir' in older.plan.ha!, 'one place for it in the plan')
    const dir = loadGood(t, {
      ha: { name: 'c1', backend: { type: 'dir', sharedDir: 'shared' } },
      components: { a: { command: cmd } },
    })
    t.same(dir.plan.ha?.backend, { type: 'dir', sharedDir: join(dir.dir, 'shared') })
    const etcd = loadGood(t, {
      ha: {
        name: 'c1',
        backend: {
          type: 'etcd',
          endpoints: ['https://10.0.0.1:2379/', 'https://10.0.0.2:2379'],
          tls: { ca: 'ca.pem', cert: '/etc/tandem/c.pem', key: 'c-key.pem' },
          auth: { user: 'tandem', passwordFile: 'etcd-password' },
        },
      },
      components: { a: { command: cmd } },
    })
    t.same(etcd.plan.ha?.backend, {
      type: 'etcd',
      endpoints: ['https://10.0.0.1:2379', 'https://10.0.0.2:2379'],
      prefix: '/tandem/c1',
      tls: {
        ca: join(etcd.dir, 'ca.pem'),
        cert: '/etc/tandem/c.pem',
        key: join(etcd.dir, 'c-key.pem'),
      },
      auth: { user: 'tandem', passwordFile: join(etcd.dir, 'etcd-password') },
    })
    t.equal(etcd.plan.ha?.takeoverMs, DEFAULTS.haTakeoverMs)
    const external = loadGood(t, {
      ha: { name: 'c1', backend: { type: 'external' } },
      components: { a: { command: cmd } },
    })
    t.same(external.plan.ha?.backend, { type: 'external' })
  },
)

t.test('hooks: defaults, target split, run in the config file directory', async (t) => {
  const { plan, dir } = loadGood(t, {
    components: { a: { command: cmd, instances: 2 } },
    hooks: [
      { on: ['failed', 'crashLoop'], command: ['/bin/page', 'x'] },
      { on: ['ready'], target: 'a#1', command: ['y'], timeoutMs: 500, maxQueued: 0 },
      { on: ['ready'], target: 'a', command: ['z'] },
    ],
  })
  t.same(plan.hooks, [
    {
      on: ['failed', 'crashLoop'],
      command: ['/bin/page', 'x'],
      timeoutMs: DEFAULTS.hookTimeoutMs,
      maxQueued: DEFAULTS.hookMaxQueued,
      cwd: dir,
    },
    {
      on: ['ready'],
      target: { component: 'a', index: 1 },
      command: ['y'],
      timeoutMs: 500,
      maxQueued: 0,
      cwd: dir,
    },
    {
      on: ['ready'],
      target: { component: 'a' },
      command: ['z'],
      timeoutMs: DEFAULTS.hookTimeoutMs,
      maxQueued: DEFAULTS.hookMaxQueued,
      cwd: dir,
    },
  ])
  t.same(loadGood(t, { components: { a: { command: cmd } } }).plan.hooks, [], 'none by default')
})
