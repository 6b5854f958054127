/*
 * The files an etcd backend's config names (TLS PEM files, the auth password file), read once,
 * when the client is made: a missing or unreadable file is a config error at start, naming the
 * setting and the path, never a failure later in a renew.
 */
import { readFileSync } from 'node:fs'
import { errorMessage, TandemError } from '../errors.js'
import type { EtcdTlsMaterial } from './etcd-transport.js'

/** PEM file paths for https endpoints (absolute: the config loader resolves them). */
export interface EtcdTlsFiles {
  /** The CA that signed the members' server certificates (default: the system's CAs). */
  ca?: string
  /** A client certificate, for an etcd started with `--client-cert-auth`. */
  cert?: string
  /** The client certificate's private key. */
  key?: string
}

const readSetting = (setting: string, path: string): Buffer => {
  try {
    return readFileSync(path)
  } catch (err) {
    // The fs error's message starts with its code (ENOENT: no such file or directory, open ...).
    throw new TandemError('ECONFIG', `${setting}: cannot read ${path}: ${errorMessage(err)}`, {
      cause: err,
    })
  }
}

/**
 * The contents of the TLS files. `setting` prefixes the names in errors (`ha.backend.tls`). A
 * certificate without its key (or the reverse) is refused: Node would only fail at the first
 * handshake, with a message that names neither.
 */
export const readTlsFiles = (files: EtcdTlsFiles, setting = 'ha.backend.tls'): EtcdTlsMaterial => {
  if ((files.cert === undefined) !== (files.key === undefined)) {
    const [has, lacks] = files.cert === undefined ? ['key', 'cert'] : ['cert', 'key']
    throw new TandemError(
      'ECONFIG',
      `${setting}: a client certificate needs both cert and key; ${has} is set (${files[has as 'cert' | 'key']}), ${lacks} is not`,
    )
  }
  const material: EtcdTlsMaterial = {}
  for (const name of ['ca', 'cert', 'key'] as const) {
    const path = files[name]
    if (path !== undefined) material[name] = readSetting(`${setting}.${name}`, path)
  }
  return material
}

/**
 * The password in `path` (`ha.backend.auth.passwordFile`), without one trailing newline (what
 * `echo` or an editor adds; any other whitespace is the password's). Missing, unreadable or empty:
 * ECONFIG naming the file. The password itself is never put in a message.
 */
export const readPasswordFile = (
  path: string,
  setting = 'ha.backend.auth.passwordFile',
): string => {
  const password = readSetting(setting, path)
    .toString('utf8')
    .replace(/\r?\n$/, '')
  if (password === '') {
    throw new TandemError('ECONFIG', `${setting}: ${path} is empty; it should hold the password`)
  }
  return password
}
