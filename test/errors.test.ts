// Every error code is documented where users and callers look: the TSDoc of ErrorCode in
// src/errors.ts and the README's table of error codes, whose exit codes are the CLI's. Reads
// files only; runs nothing.
import { readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { exitCodeOf } from '../src/cli/main.js'
import { ERROR_CODES, hasCode, TandemError } from '../src/errors.js'

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const read = (name: string): string => readFileSync(resolve(repo, name), 'utf8')

t.test('the TSDoc of ErrorCode describes every code, in order, and no other', async (t) => {
  const source = read('src/errors.ts')
  const doc = /\/\*\*((?:(?!\*\/)[\s\S])*)\*\/\s*export type ErrorCode\b/.exec(source)?.[1]
  t.ok(doc, 'ErrorCode has a TSDoc comment')
  const described = [...(doc ?? '').matchAll(/^\s*\* - (E[A-Z]+): \S/gm)].map((m) => m[1])
  t.same(described, [...ERROR_CODES])
})

t.test('the README lists every code with the exit code the CLI gives it', async (t) => {
  const readme = read('README.md')
  const at = readme.indexOf('**Error codes**')
  t.ok(at >= 0, 'the README has an error code table')
  const table = readme.slice(at, readme.indexOf('\n\n', readme.indexOf('| code |', at)))
  const rows = [...table.matchAll(/^\| `(E[A-Z]+)` \| (.+) \| (\d+) \|$/gm)]
  t.same(
    rows.map((r) => r[1]),
    [...ERROR_CODES],
    'one row per code, in the order of src/errors.ts',
  )
  for (const [, code, , exit] of rows) {
    const err = new TandemError(code as (typeof ERROR_CODES)[number], 'x')
    t.ok(hasCode(err, code!))
    t.equal(exitCodeOf(err), Number(exit), `${code}: exit ${exit}`)
  }
})
