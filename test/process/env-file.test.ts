// Env files: the systemd EnvironmentFile syntax, and the checks that keep a secret file safe.
// No ports.
import { chmodSync, chownSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import t from 'tap'
import { parseEnvFile, readEnvFiles } from '../../src/process/env-file.js'
import { tempDir } from '../helpers/supervisor.js'

const CANARY = 'canary-7f3a9'

t.test('parses KEY=VALUE lines as systemd does, evaluating nothing', async (t) => {
  const env = parseEnvFile(
    [
      '# a comment',
      '; another comment',
      '',
      '   INDENTED = spaced value   ',
      'EMPTY=',
      'DOUBLE="a \\"quoted\\" $HOME `x` \\\\ \\n"',
      "SINGLE='literal $HOME \\n'",
      'MIXED=a"b c"\'d e\'',
      'MULTI="line one',
      'line two"',
      'CONT=first \\',
      'second',
      'DOLLAR=$HOME/${USER}',
      'HASH=value # not a comment',
      'CRLF=windows\r',
      'LAST=no newline at the end',
    ].join('\n'),
    'x.env',
  )
  t.same(env, {
    INDENTED: 'spaced value',
    EMPTY: '',
    DOUBLE: 'a "quoted" $HOME `x` \\ \\n',
    SINGLE: 'literal $HOME \\n',
    MIXED: 'ab cd e',
    MULTI: 'line one\nline two',
    CONT: 'first second',
    DOLLAR: '$HOME/${USER}',
    HASH: 'value # not a comment',
    CRLF: 'windows',
    LAST: 'no newline at the end',
  })
})

t.test('a later line and a later file win', async (t) => {
  const dir = tempDir(t)
  const a = join(dir, 'a.env')
  const b = join(dir, 'b.env')
  writeFileSync(a, 'X=1\nY=1\nY=2\n', { mode: 0o600 })
  writeFileSync(b, 'X=3\n', { mode: 0o600 })
  t.same(readEnvFiles([a, b]), { X: '3', Y: '2' })
})

t.test('a malformed line is named by its number, never by its content', async (t) => {
  const cases: [string, number, RegExp][] = [
    [`OK=1\n${CANARY}\n`, 2, /no "="/],
    [`OK=1\n\n1BAD=${CANARY}\n`, 3, /variable name/],
    [`export TOKEN=${CANARY}\n`, 1, /variable name/],
    [`A="${CANARY}\nB=2\n`, 1, /unterminated double quote/],
    [`# c\nA='${CANARY}\n`, 2, /unterminated single quote/],
  ]
  for (const [text, line, why] of cases) {
    try {
      parseEnvFile(text, '/etc/x.env')
      t.fail(`expected a parse error for ${JSON.stringify(text)}`)
    } catch (err) {
      const e = err as Error & { code: string }
      t.equal(e.code, 'ECONFIG')
      t.match(e.message, `env file /etc/x.env, line ${line}: `)
      t.match(e.message, why)
      t.notMatch(e.message, CANARY, 'the secret is not in the message')
    }
  }
})

t.test(
  'refuses a file that is missing, a directory, shared, or owned by another user',
  async (t) => {
    const dir = tempDir(t)
    const ok = join(dir, 'ok.env')
    writeFileSync(ok, `S=${CANARY}\n`, { mode: 0o600 })
    t.same(readEnvFiles([ok]), { S: CANARY })
    const sub = join(dir, 'sub')
    mkdirSync(sub)
    const refused = (file: string, why: string | RegExp) =>
      t.throws(() => readEnvFiles([file]), { code: 'ECONFIG', message: why }, file)
    refused(
      join(dir, 'missing.env'),
      `env file ${join(dir, 'missing.env')} does not exist (ENOENT)`,
    )
    refused(sub, `env file ${sub} is not a regular file (a directory)`)
    const fifo = join(dir, 'fifo')
    execFileSync('mkfifo', [fifo])
    refused(fifo, /is not a regular file \(a special file\)/)
    for (const [mode, who] of [
      [0o640, 'its group'],
      [0o604, 'others'],
      [0o644, 'others'],
    ] as const) {
      const f = join(dir, `m${mode.toString(8)}.env`)
      writeFileSync(f, `S=${CANARY}\n`)
      chmodSync(f, mode)
      refused(f, `has mode 0${mode.toString(8)}, readable by ${who}`)
    }
    if (process.geteuid?.() === 0) {
      const theirs = join(dir, 'theirs.env')
      writeFileSync(theirs, `S=${CANARY}\n`, { mode: 0o600 })
      chownSync(theirs, 65534, 65534)
      refused(theirs, /is owned by uid 65534; expected the supervisor's user \(uid 0\) or root/)
    } else {
      t.comment('not root: the test of a file owned by another user is skipped')
    }
  },
)
