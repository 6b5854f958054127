import { accessSync, constants, statSync } from 'node:fs'
import { delimiter, isAbsolute, join, resolve } from 'node:path'
import { TandemError } from '../errors.js'

/**
 * Finds the program of an argv the way execvp would (PATH for a bare name, else relative to
 * cwd), so that a missing or non-executable program is reported by name with ENOENT or EACCES
 * before anything is spawned.
 */
export const resolveCommand = (
  program: string,
  cwd: string,
  path = process.env.PATH ?? '',
): string => {
  const candidates = program.includes('/')
    ? [isAbsolute(program) ? program : resolve(cwd, program)]
    : path
        .split(delimiter)
        .filter(Boolean)
        .map((d) => join(resolve(cwd, d), program))
  let denied: string | undefined
  for (const c of candidates) {
    try {
      if (!statSync(c).isFile()) continue
      accessSync(c, constants.X_OK)
      return c
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EACCES') denied ??= c
    }
  }
  if (denied) {
    throw new TandemError('ESPAWN', `cannot execute ${denied}: permission denied (EACCES)`)
  }
  throw new TandemError(
    'ESPAWN',
    program.includes('/')
      ? `cannot execute ${candidates[0]}: no such file (ENOENT)`
      : `cannot execute ${program}: not found in PATH (ENOENT)`,
  )
}
