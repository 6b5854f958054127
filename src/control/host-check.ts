import { isIP } from 'node:net'
import { hostname } from 'node:os'

/**
 * The names control.http answers to, against DNS rebinding: a page of another site whose name
 * the attacker makes resolve to 127.0.0.1 would reach the endpoints as that site (same origin
 * for the browser), and read the status and the events. Such a request carries the attacker's
 * name in `Host`; tandem answers only to
 *
 * - IP addresses (a rebinding needs a name) and `localhost` (and `*.localhost`, which resolve
 *   locally);
 * - the name it listens on (`control.http.host`, when that is a name) and this host's name;
 * - the names in `control.http.allowedHosts` (the name a proxy in front is reached by, when it
 *   passes `Host` through; `"*"` turns the check off).
 *
 * A request without `Host` (HTTP/1.0 tools, HAProxy's `option httpchk`) is not a browser's and is
 * let through.
 */
export interface HostCheck {
  /**
   * Why `Host` is refused, or undefined when it is fine: the whole reason, with the names it
   * answers to, for the log; `short` the same without them, for the answer (the page that
   * rebinds reads it).
   */
  problem(host: string | undefined): { reason: string; short: string } | undefined
}

/** The name part of a `Host` header, lower case, without port or trailing dot. */
export const hostName = (host: string): string => {
  const h = host.trim().toLowerCase()
  // An IPv6 address as a config gives it ("::", "fe80::1"), not in brackets.
  if (isIP(h) === 6) return `[${h}]`
  if (h.startsWith('[')) return h.slice(0, h.indexOf(']') + 1 || h.length)
  const colon = h.lastIndexOf(':')
  const name = colon >= 0 && /^\d*$/.test(h.slice(colon + 1)) ? h.slice(0, colon) : h
  return name.endsWith('.') ? name.slice(0, -1) : name
}

export const hostCheck = (options: {
  listenHost: string
  allowedHosts?: readonly string[]
  /** This host's name (tests pass their own). */
  thisHost?: string
}): HostCheck => {
  const allowed = (options.allowedHosts ?? []).map((h) => hostName(h))
  if (allowed.includes('*')) return { problem: () => undefined }
  const names = new Set(allowed)
  names.add(hostName(options.listenHost))
  names.add(hostName(options.thisHost ?? hostname()))
  const listed = [...names].filter((n) => n !== '' && !n.startsWith('[') && !isIP(n))
  return {
    problem: (host) => {
      if (host === undefined || host === '') return undefined
      const name = hostName(host)
      if (name.startsWith('[') || isIP(name) !== 0) return undefined
      if (name === 'localhost' || name.endsWith('.localhost')) return undefined
      if (names.has(name)) return undefined
      const what = `Host ${JSON.stringify(host)} is not a name this endpoint answers to (a guard against DNS rebinding)`
      return {
        reason: `${what}: expected an IP address, localhost${listed.length ? `, ${listed.join(', ')}` : ''} or a name listed in control.http.allowedHosts`,
        short: `${what}: use an IP address or localhost, or list the name in control.http.allowedHosts`,
      }
    },
  }
}
