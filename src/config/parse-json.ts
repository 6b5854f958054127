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
  const value: unknown = parse(text, errors, { disallowComments: true, allowTrailingComma: false })
  const problems = errors.map((e) => {
    const { line, column } = lineColumn(text, e.offset)
    return {
      path: '',
      message: `invalid JSON at line ${line} column ${column}: ${printParseErrorCode(e.error)}`,
    }
  })
  return { value, problems }
}
