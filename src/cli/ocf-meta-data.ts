/**
 * The OCF meta-data of `tandem ocf` (docs/pacemaker.md): what Pacemaker reads to learn the
 * agent's parameters and actions. It stays inside resource-agents' ra-api-1.dtd (what
 * `ocf-tester` validates against, and older than OCF 1.1: no `select` type, no `reloadable`)
 * and inside its OCF 1.1 metadata.rng (`lang` on every description, roles Promoted and
 * Unpromoted).
 */

/** The OCF parameters, in the order Pacemaker shows them. */
export interface OcfParameter {
  name: string
  required: boolean
  shortdesc: string
  longdesc: string
  default?: string
}

/**
 * The action timeouts Pacemaker suggests when the operator gives none. Start and promote wait
 * for every wanted instance to be ready, so they get a minute, as slow Java servers need; the
 * monitors are quick (one control request) but a deep one loads the config file.
 */
const ACTIONS: readonly Record<string, string>[] = [
  { name: 'start', timeout: '60s' },
  { name: 'stop', timeout: '60s' },
  // Two recurring monitors of one role must differ in interval: Pacemaker keys them so.
  { name: 'monitor', depth: '0', timeout: '20s', interval: '10s', role: 'Unpromoted' },
  { name: 'monitor', depth: '0', timeout: '20s', interval: '9s', role: 'Promoted' },
  { name: 'monitor', depth: '10', timeout: '30s', interval: '61s', role: 'Unpromoted' },
  { name: 'monitor', depth: '10', timeout: '30s', interval: '59s', role: 'Promoted' },
  { name: 'promote', timeout: '60s' },
  { name: 'demote', timeout: '60s' },
  { name: 'meta-data', timeout: '5s' },
  { name: 'validate-all', timeout: '20s' },
]

const escapeXml = (s: string): string =>
  s
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')

/** The meta-data XML for agent version `version`, with the parameters' defaults filled in. */
export const ocfMetaData = (version: string, parameters: readonly OcfParameter[]): string => {
  const param = (p: OcfParameter) =>
    [
      `<parameter name="${escapeXml(p.name)}" unique="${p.name === 'config' ? 1 : 0}" required="${p.required ? 1 : 0}">`,
      `<longdesc lang="en">${escapeXml(p.longdesc)}</longdesc>`,
      `<shortdesc lang="en">${escapeXml(p.shortdesc)}</shortdesc>`,
      `<content type="string"${p.default !== undefined ? ` default="${escapeXml(p.default)}"` : ''} />`,
      '</parameter>',
    ].join('\n')
  const action = (a: Record<string, string>) =>
    `<action ${Object.entries(a)
      .map(([k, v]) => `${k}="${escapeXml(v)}"`)
      .join(' ')} />`
  return [
    '<?xml version="1.0"?>',
    '<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">',
    `<resource-agent name="tandem" version="${escapeXml(version)}">`,
    '<version>1.1</version>',
    `<longdesc lang="en">${escapeXml(LONGDESC)}</longdesc>`,
    '<shortdesc lang="en">tandem process supervisor, promotable: Pacemaker picks the active node</shortdesc>',
    '<parameters>',
    ...parameters.map(param),
    '</parameters>',
    '<actions>',
    ...ACTIONS.map(action),
    '</actions>',
    '</resource-agent>',
  ].join('\n')
}

const LONGDESC = `Runs a tandem supervisor (tandem start) on each node of a promotable clone, with a config whose ha.backend is {"type": "external"}. Started means standby (Unpromoted): the components that run on every node are up, and the active-only ones are stopped (cold) or pre-started (hot). Promote makes the node active: its /leader answers 200 and the active-only components are activated; demote returns when they have stopped. Pacemaker alone decides which node is promoted: configure the clone with promoted-max=1 and real fencing (STONITH). monitor at OCF_CHECK_LEVEL 0 asks the supervisor for its role over its control socket; at 10 it also requires every wanted instance to be ready. stop is tandem shutdown, and a SIGKILL of the supervisor and its instances when the operation's timeout is near. See docs/pacemaker.md.`
