// Run by `npm run build` after tsc: copies the files that are not TypeScript but are part of
// the program (the status page, one self-contained HTML file) from src/ to the same place
// under dist/, where the compiled modules read them beside themselves.
import { copyFileSync, mkdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const ASSETS = ['control/status-page.html']

for (const a of ASSETS) {
  mkdirSync(dirname(join(root, 'dist', a)), { recursive: true })
  copyFileSync(join(root, 'src', a), join(root, 'dist', a))
}
