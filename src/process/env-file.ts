import { closeSync, fstatSync, openSync, readFileSync, constants } from 'node:fs'
import { TandemError } from '../errors.js'

/** An environment variable name, as systemd accepts one in an EnvironmentFile. */
const KEY = /^[A-Za-z_][A-Za-z0-9_]*$/

/** Characters a backslash escapes inside double quotes (the rest keep their backslash). */
const DOUBLE_QUOTE_ESCAPES = '"\\`$'

/**
 * Parses the text of an env file with the syntax of systemd's EnvironmentFile=: `KEY=VALUE` lines;
 * blank lines and lines starting with `#` or `;` are ignored; whitespace around the key and the
 * `=` and at the end of an unquoted value is dropped; a value may be (partly) in double quotes
 * (backslash escapes `"`, `\`, `` ` ``, `$`) or single quotes (literal), and a quoted value or a
 * trailing backslash continues it on the next line. Nothing is evaluated: `$HOME` stays `$HOME`.
 *
 * A malformed line throws, naming the file and the line number but never the line's content,
 * which may be a secret.
 */
export const parseEnvFile = (text: string, file: string): Record<string, string> => {
  const env: Record<string, string> = {}
  const bad = (line: number, what: string) =>
    new TandemError('ECONFIG', `env file ${file}, line ${line}: ${what}`)
  let i = 0
  let line = 1
  const n = text.length
  while (i < n) {
    // Skip leading whitespace of the line.
    while (i < n && (text[i] === ' ' || text[i] === '\t' || text[i] === '\r')) i++
    if (i >= n) break
    if (text[i] === '\n') {
      i++
      line++
      continue
    }
    if (text[i] === '#' || text[i] === ';') {
      while (i < n && text[i] !== '\n') i++
      continue
    }
    const startLine = line
    const eq = text.indexOf('=', i)
    const eol = text.indexOf('\n', i)
    if (eq === -1 || (eol !== -1 && eol < eq)) {
      throw bad(startLine, 'expected KEY=VALUE (no "=" on the line)')
    }
    const key = text.slice(i, eq).trim()
    if (!KEY.test(key)) {
      throw bad(
        startLine,
        'expected a variable name of letters, digits and "_" before "=", not starting with a digit',
      )
    }
    i = eq + 1
    while (i < n && (text[i] === ' ' || text[i] === '\t')) i++
    let value = ''
    // Unquoted whitespace is kept only if more value follows it (trailing whitespace is dropped).
    let pendingSpace = ''
    for (;;) {
      if (i >= n) break
      const c = text[i]!
      if (c === '\n') {
        i++
        line++
        break
      }
      if (c === '\r' && text[i + 1] === '\n') {
        i++
        continue
      }
      if (c === ' ' || c === '\t' || c === '\r') {
        pendingSpace += c
        i++
        continue
      }
      value += pendingSpace
      pendingSpace = ''
      if (c === '\\') {
        const next = text[i + 1]
        if (next === undefined) {
          i++
          continue
        }
        if (next === '\n') line++
        else value += next
        i += 2
        continue
      }
      if (c === "'") {
        const end = text.indexOf("'", i + 1)
        if (end === -1) throw bad(startLine, 'unterminated single quote')
        const part = text.slice(i + 1, end)
        line += part.split('\n').length - 1
        value += part
        i = end + 1
        continue
      }
      if (c === '"') {
        i++
        for (;;) {
          if (i >= n) throw bad(startLine, 'unterminated double quote')
          const q = text[i]!
          if (q === '"') {
            i++
            break
          }
          if (q === '\\' && i + 1 < n) {
            const next = text[i + 1]!
            if (next === '\n') line++
            else value += DOUBLE_QUOTE_ESCAPES.includes(next) ? next : `\\${next}`
            i += 2
            continue
          }
          if (q === '\n') line++
          value += q
          i++
        }
        continue
      }
      value += c
      i++
    }
    env[key] = value
  }
  return env
}

/** Who may own an env file: the supervisor's own user, or root. */
const trustedOwner = (uid: number): boolean => uid === 0 || uid === process.geteuid?.()

/**
 * Opens an env file and checks it: it must be a regular file, owned by the supervisor's user or
 * root, and not readable by group or others (it holds secrets). Returns its text, or why it may
 * not be used: the answer names the path, never the content. One open: what is checked is what
 * is read.
 */
const openEnvFile = (file: string): { text: string } | { problem: string } => {
  let fd: number
  try {
    // O_NONBLOCK keeps a FIFO from blocking the supervisor (it is refused below).
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error'
    return {
      problem:
        code === 'ENOENT'
          ? `env file ${file} does not exist (ENOENT)`
          : `env file ${file} cannot be read (${code})`,
    }
  }
  try {
    const st = fstatSync(fd)
    if (!st.isFile()) {
      return {
        problem: `env file ${file} is not a regular file (${st.isDirectory() ? 'a directory' : 'a special file'})`,
      }
    }
    if (!trustedOwner(st.uid)) {
      return {
        problem: `env file ${file} is owned by uid ${st.uid}; expected the supervisor's user (uid ${process.geteuid?.()}) or root`,
      }
    }
    if ((st.mode & 0o044) !== 0) {
      return {
        problem: `env file ${file} has mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}, readable by ${st.mode & 0o004 ? 'others' : 'its group'}; expected no read access for group and others (chmod 600)`,
      }
    }
    return { text: readFileSync(fd, 'utf8') }
  } catch (err) {
    return {
      problem: `env file ${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    }
  } finally {
    closeSync(fd)
  }
}

/**
 * Reads and parses env files in order (a later file wins). Throws (code ECONFIG) naming the
 * path and what is wrong with it, or the line number of a malformed line.
 */
export const readEnvFiles = (files: readonly string[]): Record<string, string> => {
  const env: Record<string, string> = {}
  for (const file of files) {
    const opened = openEnvFile(file)
    if ('problem' in opened) throw new TandemError('ECONFIG', opened.problem)
    Object.assign(env, parseEnvFile(opened.text, file))
  }
  return env
}
