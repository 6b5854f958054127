// The README's configuration reference against config.schema.json: every key of the schema is
// documented, no documented key is missing from the schema, and each row's type, default and
// allowed values are the schema's. Reads files only; runs nothing.
//
// The rule: the section `## Configuration reference` of README.md (up to the next `## ` heading)
// documents a key in a table row whose first cell is exactly the key path in backticks,
// `` | `components.*.rollout.drainMs` | type | default | meaning | ``. A key path joins property
// names with dots; the values of a map (additionalProperties, patternProperties) add a `*`
// segment and array items add `[]`; a map entry or an array item is not a key of its own.
// Variants (oneOf, anyOf, allOf) and local $refs are followed, and a key that several variants
// share is one row (`components.*.readiness.timeoutMs`). For each row:
// - the type cell (second) names every JSON type the schema gives the key (`integer`, `array` ...);
// - every enum or const value of the key appears in the row in backticks (`on-failure`, `tcp`);
// - a default that is a string, number, boolean, [] or {} appears in backticks in the default
//   cell (third): `info`, `65536`, `true`, `[]`. Object defaults are their keys' defaults.
import { readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const read = (name: string): string => readFileSync(resolve(repo, name), 'utf8')

type Json = null | boolean | number | string | Json[] | { [k: string]: Json }
type SchemaNode = { [k: string]: Json }

/** What the schema says about one key path, merged over every place the path occurs. */
interface KeyFacts {
  types: Set<string>
  values: Set<string>
  defaults: Json[]
}

const isNode = (v: Json | undefined): v is SchemaNode =>
  typeof v === 'object' && v !== null && !Array.isArray(v)

const jsonType = (v: Json): string =>
  v === null
    ? 'null'
    : Array.isArray(v)
      ? 'array'
      : typeof v === 'number'
        ? Number.isInteger(v)
          ? 'integer'
          : 'number'
        : typeof v

/** Resolves a local JSON pointer `#/$defs/name` (or `#/definitions/...`) in `root`. */
const resolveRef = (root: SchemaNode, ref: string): Json => {
  if (!ref.startsWith('#')) throw new Error(`only local $refs are supported, got ${ref}`)
  let at: Json = root
  for (const raw of ref.slice(1).split('/').slice(1)) {
    const key = decodeURIComponent(raw).replaceAll('~1', '/').replaceAll('~0', '~')
    if (!isNode(at) && !Array.isArray(at)) throw new Error(`$ref ${ref} does not resolve`)
    at = Array.isArray(at) ? (at[Number(key)] ?? null) : (at[key] ?? null)
  }
  if (at === null) throw new Error(`$ref ${ref} does not resolve`)
  return at
}

/** Every key path of a JSON Schema with its types, allowed values and defaults (see the top). */
const schemaKeys = (root: SchemaNode): Map<string, KeyFacts> => {
  const keys = new Map<string, KeyFacts>()
  const join = (path: string, segment: string) => (path ? `${path}.${segment}` : segment)
  const record = (path: string, node: SchemaNode) => {
    const facts = keys.get(path) ?? { types: new Set(), values: new Set(), defaults: [] }
    keys.set(path, facts)
    const types = node.type
    for (const type of Array.isArray(types) ? types : types !== undefined ? [types] : [])
      if (typeof type === 'string') facts.types.add(type)
    const values = [
      ...(Array.isArray(node.enum) ? node.enum : []),
      ...(node.const !== undefined ? [node.const] : []),
    ]
    for (const v of values) {
      facts.values.add(typeof v === 'string' ? v : JSON.stringify(v))
      if (node.type === undefined) facts.types.add(jsonType(v))
    }
    if (node.default !== undefined) facts.defaults.push(node.default)
  }
  // `refs`: the $refs being expanded on the way here, so that a recursive schema ends.
  const visit = (node: Json | undefined, path: string, isKey: boolean, refs: string[]) => {
    if (!isNode(node)) return // true/false schemas name no keys
    if (typeof node.$ref === 'string' && !refs.includes(node.$ref))
      visit(resolveRef(root, node.$ref), path, isKey, [...refs, node.$ref])
    for (const k of ['allOf', 'anyOf', 'oneOf']) {
      const variants = node[k]
      if (Array.isArray(variants)) for (const v of variants) visit(v, path, isKey, refs)
    }
    if (isKey) record(path, node)
    if (isNode(node.properties))
      for (const [name, sub] of Object.entries(node.properties))
        visit(sub, join(path, name), true, refs)
    if (isNode(node.additionalProperties))
      visit(node.additionalProperties, join(path, '*'), false, refs)
    if (isNode(node.patternProperties))
      for (const sub of Object.values(node.patternProperties))
        visit(sub, join(path, '*'), false, refs)
    const items = [
      ...(isNode(node.items) ? [node.items] : Array.isArray(node.items) ? node.items : []),
      ...(Array.isArray(node.prefixItems) ? node.prefixItems : []),
    ]
    for (const sub of items) visit(sub, `${path}[]`, false, refs)
  }
  visit(root, '', false, [])
  return keys
}

/** The key rows of the README's configuration reference: key path -> the row's cells. */
const referenceRows = (readme: string): { rows: Map<string, string[]>; twice: string[] } => {
  const lines = readme.split('\n')
  const start = lines.findIndex((l) => /^## Configuration reference\s*$/.test(l))
  if (start < 0) throw new Error('README.md has no "## Configuration reference" section')
  const end = lines.findIndex((l, i) => i > start && l.startsWith('## '))
  const rows = new Map<string, string[]>()
  const twice: string[] = []
  for (const line of lines.slice(start + 1, end < 0 ? undefined : end)) {
    if (!line.startsWith('|')) continue
    const cells = line
      .trim()
      .replace(/^\|/, '')
      .replace(/\|$/, '')
      .split(/(?<!\\)\|/)
      .map((c) => c.trim())
    const key = /^`([^`]+)`$/.exec(cells[0] ?? '')?.[1]
    if (key === undefined) continue // header and separator rows
    if (rows.has(key)) twice.push(key)
    rows.set(key, cells)
  }
  return { rows, twice }
}

/** How a default is written in the default cell, or undefined when it is not checked. */
const shownDefault = (d: Json): string | undefined =>
  typeof d === 'string'
    ? d
    : typeof d === 'number' || typeof d === 'boolean'
      ? String(d)
      : (Array.isArray(d) && d.length === 0) || (isNode(d) && Object.keys(d).length === 0)
        ? JSON.stringify(d)
        : undefined

/** Every disagreement between the schema and the README's reference, one line each. */
const referenceProblems = (schema: SchemaNode, readme: string): string[] => {
  const keys = schemaKeys(schema)
  const { rows, twice } = referenceRows(readme)
  const problems = twice.map((k) => `documented twice: ${k}`)
  for (const key of keys.keys()) if (!rows.has(key)) problems.push(`undocumented: ${key}`)
  for (const key of rows.keys()) if (!keys.has(key)) problems.push(`not in the schema: ${key}`)
  for (const [key, facts] of keys) {
    const cells = rows.get(key)
    if (!cells) continue
    const row = cells.join(' | ')
    for (const type of facts.types)
      if (!new RegExp(`\\b${type}\\b`).test(cells[1] ?? ''))
        problems.push(`${key}: type cell "${cells[1] ?? ''}" does not say ${type}`)
    for (const v of facts.values)
      if (!row.includes(`\`${v}\``)) problems.push(`${key}: allowed value \`${v}\` not shown`)
    const defaults = [...new Set(facts.defaults.map((d) => JSON.stringify(d)))].map(
      (d) => JSON.parse(d) as Json,
    )
    const shown = defaults.length === 1 ? shownDefault(defaults[0]!) : undefined
    if (shown !== undefined && !(cells[2] ?? '').includes(`\`${shown}\``))
      problems.push(`${key}: default cell "${cells[2] ?? ''}" does not show \`${shown}\``)
  }
  return problems
}

const schema = JSON.parse(read('config.schema.json')) as SchemaNode
const readme = read('README.md')

t.test(
  'the README configuration reference documents every key of config.schema.json and no other',
  async (t) => {
    t.strictSame(referenceProblems(schema, readme), [], 'no key missing, unknown or wrong')
  },
)

t.test('the schema walk reaches nested keys, map values and every readiness variant', async (t) => {
  const keys = schemaKeys(schema)
  for (const key of [
    'ha.takeoverMs',
    'logs.rotate.keep',
    'components.*.rollout.drainMs',
    'components.*.readiness.path',
    'components.*.activate.command',
  ])
    t.ok(keys.has(key), key)
  t.notOk(keys.has('components.*'), 'a map entry is not a key of its own')
  t.notOk(keys.has('components.*.env.*'), 'nor is an entry of a map of strings')
  t.same([...keys.get('components.*.readiness.type')!.values], ['tcp', 'http', 'ipc', 'none'])
})

t.test(
  'the check names a removed row, a stale row, a wrong default and a missing value',
  async (t) => {
    const takeover = readme.split('\n').find((l) => l.startsWith('| `ha.takeoverMs` |'))
    t.ok(takeover, 'the README has a row for ha.takeoverMs')
    const drain = readme.split('\n').find((l) => l.startsWith('| `components.*.rollout.drainMs` |'))
    t.ok(drain, 'the README has a row for components.*.rollout.drainMs')
    const restart = readme.split('\n').find((l) => l.startsWith('| `components.*.restart` |'))
    t.ok(restart, 'the README has a row for components.*.restart')
    const edited = readme
      .replace(`${takeover}\n`, '')
      .replace(`${drain}\n`, `${drain}\n| \`logs.colour\` | boolean | \`true\` | gone |\n`)
      .replace(drain!, drain!.replace('`0`', '`5`'))
      .replace(restart!, restart!.replaceAll('`always`', 'always'))
    t.strictSame(referenceProblems(schema, edited), [
      'undocumented: ha.takeoverMs',
      'not in the schema: logs.colour',
      'components.*.restart: allowed value `always` not shown',
      'components.*.rollout.drainMs: default cell "`5`" does not show `0`',
    ])
  },
)

t.test(
  'the schema walk follows $ref, $defs, allOf, anyOf, oneOf, patternProperties and items',
  async (t) => {
    const keys = schemaKeys({
      $defs: {
        port: { type: 'integer', default: 80 },
        server: {
          type: 'object',
          properties: {
            port: { $ref: '#/$defs/port' },
            tags: { type: 'array', items: { type: 'string' } },
          },
        },
        tree: { type: 'object', properties: { child: { $ref: '#/$defs/tree' } } },
      },
      type: 'object',
      properties: {
        servers: { type: 'array', items: { $ref: '#/$defs/server' } },
        byName: { type: 'object', patternProperties: { '^[a-z]+$': { $ref: '#/$defs/server' } } },
        mode: {
          anyOf: [{ const: 'fast' }, { type: 'string', enum: ['slow', 'off'] }],
          default: 'off',
        },
        probe: {
          oneOf: [
            { type: 'object', properties: { kind: { const: 'tcp' } } },
            { type: 'object', properties: { kind: { const: 'http' }, path: { type: 'string' } } },
          ],
        },
        both: {
          allOf: [
            { properties: { a: { type: 'boolean' } } },
            { properties: { b: { type: 'number' } } },
          ],
        },
        tree: { $ref: '#/$defs/tree' },
      },
    })
    t.strictSame(
      [...keys.keys()].sort(),
      [
        'both',
        'both.a',
        'both.b',
        'byName',
        'byName.*.port',
        'byName.*.tags',
        'mode',
        'probe',
        'probe.kind',
        'probe.path',
        'servers',
        'servers[].port',
        'servers[].tags',
        'tree',
        'tree.child',
      ],
      'keys of arrays and maps, variants merged, a recursive $ref expanded once',
    )
    t.strictSame(keys.get('servers[].port'), {
      types: new Set(['integer']),
      values: new Set(),
      defaults: [80],
    })
    t.strictSame([...keys.get('mode')!.values], ['fast', 'slow', 'off'])
    t.strictSame([...keys.get('probe.kind')!.values], ['tcp', 'http'])
  },
)
