import type { Plan } from './plan.js'

/** What is printed instead of a secret value. */
export const REDACTED = '(secret)'

/**
 * Names that are secrets whatever the config says: a password, a token or a key in an env
 * variable is the usual way to hand one to a server, and a false positive only hides a value.
 */
export const SECRET_NAME = /PASSWORD|PASSWD|SECRET|TOKEN|KEY|CREDENTIAL/i

/** Whether an env key's value is a secret: marked in secretEnv, or named like one. */
export const isSecretKey = (key: string, marked: readonly string[] = []): boolean =>
  marked.includes(key) || SECRET_NAME.test(key)

/** The plan as it may be printed: every secret env value replaced by REDACTED. */
export const redactPlan = (plan: Plan): Plan => ({
  ...plan,
  components: plan.components.map((c) => ({
    ...c,
    instances: c.instances.map((i) => ({
      ...i,
      env: Object.fromEntries(
        Object.entries(i.env).map(([k, v]) => [k, i.secretEnv.includes(k) ? REDACTED : v]),
      ),
    })),
  })),
})
