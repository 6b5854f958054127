import type { Test } from 'tap'

/** Whether a tool a test needs is here, and if not, why (naming the Debian package). */
export type ToolCheck = { ok: true } | { ok: false; why: string }

/**
 * The one rule for a test that needs a tool from Debian: true when it can run. Otherwise false,
 * after failing the test where CI is set (npm test's scripts/ensure-tools.sh installs the tools:
 * a broken install must not pass as a skip) or skipping it with the reason elsewhere.
 */
export const needTool = (t: Test, check: ToolCheck): boolean => {
  if (check.ok) return true
  if (process.env.CI) {
    t.fail(`${check.why}, and CI is set: npm test's scripts/ensure-tools.sh installs it`)
    t.end()
  } else t.plan(0, check.why)
  return false
}
