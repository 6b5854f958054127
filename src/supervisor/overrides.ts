import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { writeFileAtomic } from '../seams/atomic-write.js'

/**
 * What an operator stopped by hand, kept in `<stateDir>/overrides.json` so that it stays
 * stopped across a supervisor restart. Written atomically (temp file, fsync, rename).
 */
export class Overrides {
  readonly file: string
  constructor(stateDir: string) {
    this.file = join(stateDir, 'overrides.json')
  }

  /** Ids stopped by hand; a missing file means none. An unreadable one is reported, not trusted. */
  read(onError: (message: string) => void): string[] {
    let text: string
    try {
      text = readFileSync(this.file, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
        onError(`cannot read ${this.file}: ${(err as Error).message}`)
      return []
    }
    try {
      const value = JSON.parse(text) as { stopped?: unknown }
      if (Array.isArray(value.stopped) && value.stopped.every((s) => typeof s === 'string'))
        return value.stopped
    } catch {
      // reported below
    }
    onError(`ignoring ${this.file}: expected {"stopped": ["component#index", ...]}`)
    return []
  }

  write(stopped: Iterable<string>): void {
    writeFileAtomic(this.file, JSON.stringify({ stopped: [...stopped].sort() }, null, 1) + '\n')
  }
}
