// Headless Chromium from Debian (package chromium, installed by scripts/ensure-tools.sh), driven
// by playwright-core: never `playwright install`, never a downloaded browser.
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { chromium, type BrowserContext } from 'playwright-core'
import type { Test } from 'tap'
import type { ToolCheck } from './need-tool.js'
import { tempDir } from './supervisor.js'

/** Debian's Chromium and its flags, shared with `npm run screenshot` (scripts/chromium.json). */
const chromiumJson = JSON.parse(
  readFileSync(new URL('../../scripts/chromium.json', import.meta.url), 'utf8'),
) as { executablePath: string; args: string[] }

export const CHROMIUM = chromiumJson.executablePath

/** The flags every test browser gets: headless, no sandbox (root in CI), nothing phoned home. */
export const CHROMIUM_ARGS = chromiumJson.args

export const chromiumCheck = (): ToolCheck =>
  existsSync(CHROMIUM)
    ? { ok: true }
    : { ok: false, why: `${CHROMIUM} is missing (Debian package chromium)` }

/** The pids whose command line names `marker` (this browser's own profile dir). */
const processesNaming = (marker: string): number[] => {
  const pids: number[] = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      if (readFileSync(`/proc/${name}/cmdline`, 'utf8').includes(marker)) pids.push(Number(name))
    } catch {
      // gone meanwhile
    }
  }
  return pids
}

/**
 * A browser with a fresh profile (its own user-data-dir), closed at teardown; whatever of it is
 * still running then (found by that profile dir in its command line) is killed.
 */
export const launchBrowser = async (
  t: Test,
  options: { viewport?: { width: number; height: number } } = {},
): Promise<BrowserContext> => {
  const profile = tempDir(t)
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    args: CHROMIUM_ARGS,
    viewport: options.viewport ?? { width: 1280, height: 900 },
  })
  t.teardown(async () => {
    await Promise.race([context.close(), new Promise((r) => setTimeout(r, 5000))])
    for (const pid of processesNaming(profile)) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // gone
      }
    }
  })
  return context
}
