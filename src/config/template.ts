/** Variables that command arguments and env values may use, written `{name}`. */
export const TEMPLATE_VARIABLES = ['port', 'instance', 'node', 'component'] as const
export type TemplateVariables = Record<(typeof TEMPLATE_VARIABLES)[number], string>

const VARIABLE = /\{([A-Za-z_][A-Za-z0-9_]*)\}/g

/** The names of the `{name}` variables in `text`, known or not. */
export const templateVariablesIn = (text: string): string[] =>
  [...text.matchAll(VARIABLE)].map((m) => m[1]!)

/** Replaces known `{name}` variables; anything else is left as written (checked at load). */
export const fillTemplate = (text: string, vars: Partial<TemplateVariables>): string =>
  text.replace(VARIABLE, (whole, v: string) => (vars as Record<string, string>)[v] ?? whole)
