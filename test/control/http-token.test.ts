import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import {
  bearerMatches,
  HTTP_TOKEN_BYTES,
  HTTP_TOKEN_FILE,
  writeHttpToken,
} from '../../src/control/http-token.js'
import { tempDir } from '../helpers/supervisor.js'

t.test('policy constants', async (t) => {
  t.equal(HTTP_TOKEN_FILE, 'http.token')
  t.equal(HTTP_TOKEN_BYTES, 32, '256 bits')
})

t.test('writes a new random token to <stateDir>/http.token, mode 0600', async (t) => {
  const dir = tempDir(t)
  const a = writeHttpToken(dir)
  t.equal(a.file, join(dir, 'http.token'))
  t.match(a.token, /^[A-Za-z0-9_-]{43}$/, '32 bytes as base64url')
  t.equal(readFileSync(a.file, 'utf8'), a.token + '\n')
  t.equal(statSync(a.file).mode & 0o777, 0o600)
  const b = writeHttpToken(dir)
  t.not(b.token, a.token, 'a new token at each start')
  t.equal(readFileSync(a.file, 'utf8'), b.token + '\n', 'the old one is replaced')
  t.equal(statSync(a.file).mode & 0o777, 0o600)
})

t.test('takes its bytes from the random source given', async (t) => {
  const dir = tempDir(t)
  const { token } = writeHttpToken(dir, (n) => Buffer.alloc(n, 0xff))
  t.equal(token, Buffer.alloc(32, 0xff).toString('base64url'))
})

t.test('bearerMatches: only "Bearer <the token>" matches', async (t) => {
  const token = 'abcDEF-_123'
  t.ok(bearerMatches('Bearer abcDEF-_123', token))
  t.ok(bearerMatches('bearer abcDEF-_123', token), 'the scheme is case-insensitive')
  t.ok(bearerMatches('BEARER  abcDEF-_123 ', token), 'spaces around the token')
  t.notOk(bearerMatches(undefined, token), 'no header')
  t.notOk(bearerMatches('', token))
  t.notOk(bearerMatches('abcDEF-_123', token), 'no scheme')
  t.notOk(bearerMatches('Basic abcDEF-_123', token), 'another scheme')
  t.notOk(bearerMatches('Bearer abcdef-_123', token), 'the token is case-sensitive')
  t.notOk(bearerMatches('Bearer abcDEF-_12', token), 'a prefix')
  t.notOk(bearerMatches('Bearer abcDEF-_1234', token), 'longer')
  t.notOk(bearerMatches('Bearer abcDEF-_123 x', token), 'something after it')
  t.notOk(bearerMatches('Bearer ', ''), 'an empty token never matches')
  t.notOk(bearerMatches('Bearer x', ''), 'an empty token never matches')
})
