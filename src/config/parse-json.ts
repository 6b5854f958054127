import { parse, printParseErrorCode, visit, type ParseError } from 'jsonc-parser'
import type { ConfigProblem } from '../errors.js'
import { pathText } from './json-path.js'

/** 1-based line and column of a character offset in `text`. */
export const lineColumn = (text: string, offset: number): { line: number; column: number } => {
  const before = text.slice(0, offset)
  const line = before.split('\n').length
  return { line, column: offset - before.lastIndexOf('\n') }
}

/**
 * Parses strict JSON (no comments, no trailing commas) and reports every syntax error with its
 * line and column; JSON.parse names a position for only some errors and stops at the first.
 * A key given twice in one object is a problem too, naming its JSON path and both places:
 * JSON.parse keeps the last silently, so a second component of the same name would replace the
 * first without a word. `value` is meaningful only when there are no problems.
 */
export const parseJson = (text: string): { value: unknown; problems: ConfigProblem[] } => {
  if (text.trim() === '') {
    return {
      value: undefined,
      problems: [{ path: '', message: 'invalid JSON: the file is empty' }],
    }
  }
  const options = { disallowComments: true, allowTrailingComma: false }
  const errors: ParseError[] = []
  const duplicates: ConfigProblem[] = []
  // For each object being read, its keys so far, with the offset of each key's first occurrence.
  const open: Map<string, number>[] = []
  visit(
    text,
    {
      onObjectBegin: () => {
        open.push(new Map())
      },
      onObjectEnd: () => {
        open.pop()
      },
      onObjectProperty: (key, offset, _length, _line, _column, parentPath) => {
        const keys = open.at(-1)
        const first = keys?.get(key)
        if (first === undefined) {
          keys?.set(key, offset)
          return
        }
        const at = (o: number) => {
          const { line, column } = lineColumn(text, o)
          return `line ${line} column ${column}`
        }
        duplicates.push({
          path: pathText([...parentPath(), key]),
          message: `duplicate key ${JSON.stringify(key)} at ${at(offset)}, first at ${at(first)}: only one of them would count; remove or rename one`,
        })
      },
      onError: (error, offset, length) => {
        errors.push({ error, offset, length })
      },
    },
    options,
  )
  const problems = [
    ...errors.map((e) => {
      const { line, column } = lineColumn(text, e.offset)
      return {
        path: '',
        message: `invalid JSON at line ${line} column ${column}: ${printParseErrorCode(e.error)}`,
      }
    }),
    ...duplicates,
  ]
  if (problems.length) return { value: undefined, problems }
  // The value comes from JSON.parse, which keeps a "__proto__" key as a key (jsonc-parser
  // assigns it, making it the object's prototype: its keys would be read as inherited config
  // and pass the schema's unknown-key check).
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    // what jsonc-parser accepts beyond JSON: its value it is
    value = parse(text, [], options)
  }
  return { value, problems }
}
