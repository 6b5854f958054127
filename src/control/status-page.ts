import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'

/**
 * The status page: one self-contained HTML file (its script and style inline, nothing fetched
 * from elsewhere), kept as `status-page.html` beside this module (the build copies it into
 * dist/) so that it is edited, and opened in a browser, as what it is.
 */
export const STATUS_PAGE_FILE = new URL('./status-page.html', import.meta.url)

export interface StatusPage {
  html: string
  /**
   * The Content-Security-Policy it is served with: its own inline script and style only (by
   * their sha256), requests to its own origin only, and no framing (no clickjacking of the
   * action buttons).
   */
  csp: string
}

const hashes = (html: string, tag: 'script' | 'style'): string[] =>
  [...html.matchAll(new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, 'g'))].map(
    (m) => `'sha256-${createHash('sha256').update(m[1]!).digest('base64')}'`,
  )

/** The page and its policy, from the HTML given (read once at start by startHttpEndpoints). */
export const statusPage = (html: string): StatusPage => ({
  html,
  csp: [
    "default-src 'none'",
    `script-src ${hashes(html, 'script').join(' ')}`,
    `style-src ${hashes(html, 'style').join(' ')}`,
    "connect-src 'self'",
    "img-src 'self' data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; '),
})

/** Reads status-page.html (throws ENOENT naming it when a build left it out). */
export const loadStatusPage = (): StatusPage => statusPage(readFileSync(STATUS_PAGE_FILE, 'utf8'))
