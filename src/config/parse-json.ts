import { parse, printParseErrorCode, type ParseError } from 'jsonc-parser'
import type { ConfigProblem } from '../errors.js'

/** 1-based line and column of a character offset in `text`. */
export const lineColumn = (text: string, offset: number): { line: number; column: number } => {
  const before = text.slice(0, offset)
  const line = before.split('\n').length
  return { line, column: offset - before.lastIndexOf('\n') }
}

/**
 * Parses strict JSON (no comments, no trailing commas) and reports every syntax error with its
 * line and column; JSON.parse names a position for only some errors and stops at the first.
 */
export const parseJson = (text: string): { value: unknown; problems: ConfigProblem[] } => {
  if (text.trim() === '') {
    return {
      value: undefined,
      problems: [{ path: '', message: 'invalid JSON: the file is empty' }],
    }
  }
  const errors: ParseError[] = []
  // jsonc-parser finds every syntax error; the value comes from JSON.parse, which keeps a
  // "__proto__" key as a key (jsonc-parser assigns it, making it the object's prototype: its
  // keys would be read as inherited config and pass the schema's unknown-key check).
  const parsed: unknown = parse(text, errors, { disallowComments: true, allowTrailingComma: false })
  let value = parsed
  if (!errors.length) {
    try {
      value = JSON.parse(text)
    } catch {
      // what jsonc-parser accepts beyond JSON (a byte order mark): its value it is
    }
  }
  const problems = errors.map((e) => {
    const { line, column } = lineColumn(text, e.offset)
    return {
      path: '',
      message: `invalid JSON at line ${line} column ${column}: ${printParseErrorCode(e.error)}`,
    }
  })
  return { value, problems }
}
