// The arrows of the module graph point down only: no cycle between the directories of src/
// (cli and the composition root sit on top and may import anything), and the core that the
// composition root wires (supervisor/) imports none of what wires it (ha, control, ops, cli).
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const src = resolve(dirname(fileURLToPath(import.meta.url)), '../../src')
const files = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  )
/** The directory of src/ a file is in; a file at the top (errors, status, index, the
 * composition root) is its own area. */
const area = (file: string) => {
  const [first] = relative(src, file)
    .replace(/\.(js|ts)$/, '')
    .split('/')
  return first!
}

const edges = new Map<string, Set<string>>()
for (const file of files(src)) {
  for (const m of readFileSync(file, 'utf8').matchAll(/from '(\.[^']+)'/g)) {
    const to = area(resolve(dirname(file), m[1]!))
    const from = area(file)
    if (to !== from) edges.set(from, (edges.get(from) ?? new Set()).add(to))
  }
}

t.test('no cycle between the directories of src/', async (t) => {
  const cycles: string[] = []
  const walk = (node: string, path: string[]) => {
    if (path.includes(node)) {
      cycles.push([...path.slice(path.indexOf(node)), node].join(' -> '))
      return
    }
    for (const next of edges.get(node) ?? []) walk(next, [...path, node])
  }
  for (const node of edges.keys()) walk(node, [])
  t.same([...new Set(cycles)], [])
})

t.test('the core does not import what wires it', async (t) => {
  t.same(
    [...(edges.get('supervisor') ?? [])].filter((a) =>
      ['ha', 'control', 'ops', 'cli', 'index', 'run-supervisor'].includes(a),
    ),
    [],
  )
  t.ok(edges.get('run-supervisor')?.has('supervisor'), 'the composition root imports the core')
})
