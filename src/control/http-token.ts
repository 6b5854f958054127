import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { join } from 'node:path'
import { writeFileAtomic } from '../seams/atomic-write.js'

/** The file in the state dir that holds the token of control.http's actions. */
export const HTTP_TOKEN_FILE = 'http.token'
/** 32 random bytes (256 bits), base64url: 43 characters an operator pastes once. */
export const HTTP_TOKEN_BYTES = 32

/**
 * Makes a new random token for the actions of control.http and writes it to
 * `<stateDir>/http.token` (mode 0600, replaced atomically): whoever can read the state dir may
 * act, as whoever can open the control socket may. A new one at every start, so a token seen
 * once does not outlive the supervisor that made it. Returns the token and the file's path.
 */
export const writeHttpToken = (
  stateDir: string,
  random: (n: number) => Buffer = randomBytes,
): { token: string; file: string } => {
  const token = random(HTTP_TOKEN_BYTES).toString('base64url')
  const file = join(stateDir, HTTP_TOKEN_FILE)
  writeFileAtomic(file, token + '\n')
  return { token, file }
}

const digest = (s: string) => createHash('sha256').update(s).digest()

/**
 * Whether an `Authorization` header carries `Bearer <token>`. Compared in constant time (on
 * digests, so the length of a wrong guess tells nothing either); the scheme is case-insensitive
 * (RFC 9110), the token exact. An empty token never matches.
 */
export const bearerMatches = (authorization: string | undefined, token: string): boolean => {
  if (!token || authorization === undefined) return false
  const m = /^bearer[ ]+(\S+)[ ]*$/i.exec(authorization)
  if (!m) return false
  return timingSafeEqual(digest(m[1]!), digest(token))
}
