import { closeSync, fsyncSync, openSync, renameSync, writeSync } from 'node:fs'
import { dirname } from 'node:path'

/**
 * Replaces a file so that a reader (or a crash) sees the old content or the new, never a mix:
 * write a temp file beside it, fsync it, rename it over, fsync the directory.
 */
export const writeFileAtomic = (file: string, data: string): void => {
  const tmp = `${file}.${process.pid}.tmp`
  const fd = openSync(tmp, 'w', 0o600)
  try {
    writeSync(fd, data)
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
  renameSync(tmp, file)
  try {
    const dir = openSync(dirname(file), 'r')
    try {
      fsyncSync(dir)
    } finally {
      closeSync(dir)
    }
  } catch {
    // Some systems cannot fsync a directory; the rename itself is still atomic.
  }
}
