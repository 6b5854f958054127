// Throwaway PKIs made with the openssl command line: a CA, a server certificate for 127.0.0.1
// and localhost, and a client certificate, all on P-256 keys (quick to make), valid for a day.
import { spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Test } from 'tap'
import { needTool, type ToolCheck } from './need-tool.js'

export const opensslAvailable = (): ToolCheck =>
  spawnSync('openssl', ['version']).status === 0
    ? { ok: true }
    : { ok: false, why: 'no openssl on PATH (Debian package openssl)' }

/** True when openssl is there; otherwise fails under CI and skips elsewhere (needTool). */
export const needOpenssl = (t: Test): boolean => needTool(t, opensslAvailable())

/** PEM file paths of one throwaway PKI. */
export interface TestPki {
  ca: string
  serverCert: string
  serverKey: string
  /** Its CN is `client` (etcd takes a client certificate's CN as the user with auth on). */
  clientCert: string
  clientKey: string
}

const openssl = (args: string[], cwd: string): void => {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.stderr}`)
}

const KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']

/** A new CA named `name` in `dir` (files `<name>-*.pem`) with a server and a client certificate. */
export const makePki = (dir: string, name: string): TestPki => {
  const f = (s: string) => join(dir, `${name}-${s}`)
  openssl(
    [
      'req',
      '-x509',
      ...KEY,
      '-keyout',
      f('ca-key.pem'),
      '-out',
      f('ca.pem'),
      '-days',
      '1',
      '-subj',
      `/CN=${name} test CA`,
    ],
    dir,
  )
  const sign = (who: string, cn: string, ext: string): void => {
    writeFileSync(f(`${who}.ext`), ext)
    openssl(
      [
        'req',
        ...KEY,
        '-keyout',
        f(`${who}-key.pem`),
        '-out',
        f(`${who}.csr`),
        '-subj',
        `/CN=${cn}`,
      ],
      dir,
    )
    openssl(
      [
        'x509',
        '-req',
        '-in',
        f(`${who}.csr`),
        '-CA',
        f('ca.pem'),
        '-CAkey',
        f('ca-key.pem'),
        '-set_serial',
        String(Date.now()),
        '-days',
        '1',
        '-extfile',
        f(`${who}.ext`),
        '-out',
        f(`${who}.pem`),
      ],
      dir,
    )
  }
  sign(
    'server',
    'etcd',
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n',
  )
  sign('client', 'client', 'extendedKeyUsage=clientAuth\n')
  return {
    ca: f('ca.pem'),
    serverCert: f('server.pem'),
    serverKey: f('server-key.pem'),
    clientCert: f('client.pem'),
    clientKey: f('client-key.pem'),
  }
}
