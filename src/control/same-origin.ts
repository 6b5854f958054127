import type { IncomingHttpHeaders } from 'node:http'

/**
 * Why a request comes from another origin (a page of another site in the operator's browser),
 * or undefined when it does not or cannot be told. The actions of control.http refuse such a
 * request, token or not: the token lives in the status page's own storage, but nothing that a
 * browser sends on a user's behalf from elsewhere should reach an action (no CSRF).
 *
 * - `Sec-Fetch-Site` (every current browser sends it): anything but `same-origin` (or `none`,
 *   a request the user made by hand) is refused.
 * - `Origin`: its host and port must be this request's `Host`. The scheme is not compared, as a
 *   TLS proxy in front (README) turns `https://` into plain HTTP here; such a proxy must pass the
 *   `Host` header through (nginx: `proxy_set_header Host $host`). `Origin: null` (a sandboxed
 *   frame, a file: page) is refused.
 * - Neither header (curl, a script): not a browser acting for someone else; the token decides.
 */
export const crossOriginReason = (headers: IncomingHttpHeaders): string | undefined => {
  const site = headers['sec-fetch-site']
  if (site !== undefined && site !== 'same-origin' && site !== 'none')
    return `Sec-Fetch-Site is ${site}, expected same-origin`
  const origin = headers.origin
  if (origin === undefined) return undefined
  if (origin === 'null') return 'Origin is null (a sandboxed or file: page)'
  let host: string
  try {
    host = new URL(origin).host
  } catch {
    return `Origin is not a URL: ${JSON.stringify(origin)}`
  }
  const own = headers.host
  if (own === undefined) return `Origin is ${origin} and the request has no Host header`
  if (host.toLowerCase() !== own.toLowerCase())
    return `Origin ${origin} is not this server (Host ${own})`
  return undefined
}
