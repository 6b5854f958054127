// `tandem completion bash|zsh` and the `tandem __complete` answers behind it: commands, options
// (read from the commander program), targets from the config file, in a real bash and a real zsh.
// Ports 26200-26209 appear in configs here; nothing listens on them.
import { spawn, spawnSync } from 'node:child_process'
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import t, { type Test } from 'tap'
import { main } from '../../src/cli/main.js'
import { BIN, cli, tempDir } from '../helpers/supervisor.js'
import { needTool } from '../helpers/need-tool.js'

/** A config with two components: web (3 instances) and db (1), and its directory. */
const configFile = (t: Parameters<typeof tempDir>[0], name = 'app.json') => {
  const dir = tempDir(t)
  const file = join(dir, name)
  writeFileSync(
    file,
    JSON.stringify({
      stateDir: 'state',
      components: {
        db: { command: ['node', 'db.js'], port: 26200 },
        web: { command: ['node', 'web.js'], instances: 3, port: 26201, dependsOn: ['db'] },
      },
    }),
  )
  return { dir, file }
}

/** Runs the CLI in this process: exit code and output. */
const run = async (...args: string[]) => {
  const out: string[] = []
  const err: string[] = []
  const code = await main(['node', 'tandem', ...args], {
    out: (s) => out.push(s),
    err: (s) => err.push(s),
  })
  return { code, out: out.join('\n'), err: err.join('\n') }
}

/** `tandem __complete ...words`: the mode, the values offered, the full lines. */
const completions = async (...words: string[]) => {
  const r = await run('__complete', ...words)
  const [mode, ...lines] = r.out.split('\n')
  return { ...r, mode, lines, values: lines.map((l) => l.split('\t')[0]!) }
}

/** The long options that `tandem <command> --help` lists. */
const helpOptions = async (command: string) =>
  [...(await run(command, '--help')).out.matchAll(/^ {2}(?:-\w, )?(--[\w-]+)/gm)].map((m) => m[1])

t.test('completes command names, each with its description, and hides __complete', async (t) => {
  const r = await completions('')
  t.equal(r.code, 0)
  t.equal(r.mode, 'words')
  for (const c of ['start', 'stop', 'restart', 'status', 'logs', 'upgrade', 'completion'])
    t.ok(r.values.includes(c), c)
  t.notOk(r.values.includes('__complete'), 'the hidden command is not offered')
  t.match(
    r.lines.find((l) => l.startsWith('stop\t')),
    /^stop\tstop instances/,
  )
  t.same((await completions('re')).values, ['restart', 'reload'], 'by prefix')
  t.same((await completions('help', 'sw')).values, ['switchover'], 'help takes a command')
})

t.test('offers each command the options its help lists, and the program-wide -c', async (t) => {
  const commands = (await completions('')).values.filter((c) => c !== 'help')
  t.ok(commands.length >= 10, 'every command is checked')
  for (const command of commands) {
    const offered = (await completions(command, '--')).values
    const listed = await helpOptions(command)
    t.same(offered.sort(), [...listed, '--config'].sort(), `${command}: ${offered.join(' ')}`)
  }
  t.same(
    (await completions('--')).values.sort(),
    ['--config', '--help', '--version'],
    'the program: its own options',
  )
  const used = (await completions('logs', '--json', '-f', '--')).values
  t.notOk(used.includes('--json') || used.includes('--follow'), 'options given are not offered')
  t.same(
    (await completions('status', '--watch', '5', '--')).values.sort(),
    ['--config', '--help', '--json'],
    'an optional value taken',
  )
  t.same(
    (await completions('status', '')).values.sort(),
    ['--config', '--help', '--json', '--watch'],
    'a command without arguments: its options',
  )
})

t.test('completes targets from the config named by -c, in every spelling', async (t) => {
  const { file } = configFile(t)
  const targets = ['all', 'db', 'web', 'db#0', 'web#0', 'web#1', 'web#2']
  t.same((await completions('-c', file, 'stop', '')).values, targets, '-c FILE before the command')
  t.same((await completions('restart', '--config', file, '')).values, targets, 'after it')
  t.same((await completions('start', `--config=${file}`, '')).values, targets, '--config=FILE')
  t.same(
    (await completions('logs', '--config', '=', file, '')).values,
    targets,
    'as bash splits --config=FILE',
  )
  t.same((await completions(`-c${file}`, 'stop', '')).values, targets, '-cFILE')
  t.same((await completions('-c', file, 'stop', '--', '')).values, targets, 'after --')
  t.same((await completions('-c', file, 'stop', '--', '-')).values, [], 'after --: no options')
  t.same((await completions('-c', file, 'stop', 'web', 'web#')).values, ['web#0', 'web#1', 'web#2'])
  t.same(
    (await completions('-c', file, 'stop', 'w')).lines,
    [
      'web\tcomponent, 3 instances',
      'web#0\tinstance on port 26201',
      'web#1\tinstance on port 26202',
      'web#2\tinstance on port 26203',
    ],
    'with descriptions',
  )
  t.match((await completions('-c', file, 'stop', 'db#')).lines, ['db#0\tinstance on port 26200'])
  t.same(
    (await completions('-c', file, 'upgrade', '')).values,
    ['db', 'web'],
    'upgrade takes components',
  )
  t.same((await completions('-c', file, 'lb-config', 'haproxy', '')).values, ['db', 'web'])
})

t.test('completes targets from $TANDEM_CONFIG, else tandem.json, as start finds it', async (t) => {
  const { dir, file } = configFile(t, 'tandem.json')
  const complete = (cwd: string, env: NodeJS.ProcessEnv) =>
    new Promise<string>((res) => {
      const p = spawn(process.execPath, [BIN, '__complete', 'stop', 'web#0'], {
        cwd,
        env,
        stdio: ['ignore', 'pipe', 'inherit'],
      })
      let out = ''
      p.stdout.on('data', (d) => (out += d))
      p.once('close', () => res(out))
    })
  const web = 'words\nweb#0\tinstance on port 26201\n'
  const env: NodeJS.ProcessEnv = { ...process.env, TANDEM_CONFIG: file }
  t.equal(await complete(tempDir(t), env), web, '$TANDEM_CONFIG')
  delete env.TANDEM_CONFIG
  t.equal(await complete(dir, env), web, 'tandem.json in the current directory')
  t.equal(await complete(tempDir(t), env), 'words\n', 'neither: no targets')
})

t.test('a missing or invalid config completes no targets, silently', async (t) => {
  const dir = tempDir(t)
  const bad = join(dir, 'bad.json')
  writeFileSync(bad, '{"components": {"web": {"port": "x"}}')
  for (const file of [join(dir, 'missing.json'), bad]) {
    const r = await completions('-c', file, 'stop', '')
    t.equal(r.code, 0)
    t.equal(r.err, '', 'nothing on stderr')
    t.same(r.values, ['all'])
  }
})

t.test('an option value completes as a file name, or not at all', async (t) => {
  t.equal((await completions('-c', '')).out, 'files')
  t.equal((await completions('stop', '--config', 'x')).out, 'files', 'after the command too')
  t.equal((await completions('--config=co')).out, 'files', '--config=FILE in one word')
  t.equal((await completions('--config', '=', '')).out, 'files', 'as bash splits it')
  t.equal((await completions('--config', '=')).out, 'files', 'bash, before a letter is typed')
  t.equal((await completions('logs', '-n', '')).out, 'words', '-n N: no file names')
  t.equal((await completions('logs', '--level', '')).out, 'words')
  t.same((await completions('completion', '')).values, ['bash', 'zsh'])
})

t.test('an unknown shell exits 2, naming the value and the choices', async (t) => {
  const r = await cli(['completion', 'fish'])
  t.equal(r.code, 2)
  t.equal(r.out, '')
  t.match(r.err, /unknown shell "fish": expected one of bash, zsh/)
  t.equal((await cli(['completion'])).code, 2, 'no shell: usage')
})

/** A directory with a `tandem` on PATH: a symlink to bin/tandem.js, as npm installs it. */
const pathWithTandem = (t: Parameters<typeof tempDir>[0]) => {
  const bin = join(tempDir(t), 'bin')
  mkdirSync(bin)
  symlinkSync(BIN, join(bin, 'tandem'))
  return [bin, dirname(process.execPath), process.env.PATH].join(':')
}

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`

t.test('the bash script completes commands, options and targets in a real bash', async (t) => {
  const { dir, file } = configFile(t)
  writeFileSync(join(dir, 'other.json'), '{}')
  const cases: [string, string[]][] = [
    ['commands', ['tandem', 're']],
    ['options', ['tandem', 'stop', '--']],
    ['targets', ['tandem', '-c', file, 'restart', 'web#']],
    ['components', ['tandem', '--config', '=', file, 'upgrade', '']],
    ['file', ['tandem', '--config', '=', 'ap']],
    ['after -c', ['tandem', 'status', '-c', 'oth']],
    ['after =', ['tandem', '--config', '=']],
  ]
  const script = [
    'source <(tandem completion bash) || exit 9',
    'complete -p tandem',
    'comp() { COMP_WORDS=("${@:2}"); COMP_CWORD=$(( $# - 2 )); COMPREPLY=()',
    '  _tandem_completion; local IFS=" "; echo "$1: ${COMPREPLY[*]}"; }',
    ...cases.map(([name, words]) => `comp ${[name, ...words].map(shellQuote).join(' ')}`),
  ].join('\n')
  const r = spawnSync('bash', ['--norc', '--noprofile', '-c', script], {
    cwd: dir,
    env: { ...process.env, PATH: pathWithTandem(t) },
    encoding: 'utf8',
  })
  t.equal(r.status, 0, r.stderr)
  t.equal(r.stderr, '')
  const got: Record<string, string[]> = Object.fromEntries(
    r.stdout
      .trim()
      .split('\n')
      .slice(1)
      .map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 2).split(' ')]),
  )
  t.match(r.stdout, /^complete -F _tandem_completion tandem$/m, 'registered for tandem')
  t.same(got.commands, ['restart', 'reload'])
  t.same(got.options?.sort(), ['--config', '--help', '--json'])
  t.same(got.targets, ['web#0', 'web#1', 'web#2'])
  t.same(got.components, ['db', 'web'])
  t.same(got.file, ['app.json'], 'file names after --config=')
  t.same(got['after -c'], ['other.json'])
  t.same(got['after =']?.sort(), ['app.json', 'other.json'])
})

/**
 * Whether zsh is here. Without it the test is skipped, except where CI is set (npm test's
 * scripts/ensure-tools.sh installs it): there it fails.
 */
const zsh = (t: Test): boolean =>
  needTool(
    t,
    spawnSync('zsh', ['--version']).status === 0
      ? { ok: true }
      : { ok: false, why: 'needs zsh (Debian package zsh)' },
  )

t.test('the zsh script parses, and its function hands zsh the candidates', async (t) => {
  if (!zsh(t)) return
  const { dir, file } = configFile(t)
  const scriptFile = join(dir, '_tandem')
  writeFileSync(scriptFile, (await run('completion', 'zsh')).out)
  const syntax = spawnSync('zsh', ['-n', scriptFile], { encoding: 'utf8' })
  t.equal(syntax.status, 0, `zsh -n: ${syntax.stderr}`)
  // The completion system's functions, recorded: what _tandem asks of zsh.
  const driver = [
    'compdef() { print -r -- "compdef $*" }',
    '_describe() { print -rl -- "describe $3" "${(@P)4}" }',
    '_files() { print -r -- "files $PREFIX" }',
    'compset() { [[ $1 == -P ]] && PREFIX=${PREFIX#*=} }',
    `source ${shellQuote(scriptFile)}`,
    `words=(tandem -c ${shellQuote(file)} stop 'web\\#'); CURRENT=5; _tandem`,
    "words=(tandem --config=ap); CURRENT=2; PREFIX='--config=ap'; _tandem",
  ].join('\n')
  const r = spawnSync('zsh', ['-f', '-c', driver], {
    cwd: dir,
    env: { ...process.env, PATH: pathWithTandem(t) },
    encoding: 'utf8',
  })
  t.equal(r.stderr, '')
  t.equal(
    r.stdout,
    [
      'compdef _tandem tandem',
      'describe tandem',
      'web#0:instance on port 26201',
      'web#1:instance on port 26202',
      'web#2:instance on port 26203',
      'files ap',
      '',
    ].join('\n'),
  )
})

t.test('completes targets and commands in an interactive zsh', async (t) => {
  if (!zsh(t)) return
  const { dir, file } = configFile(t)
  // A zsh drives another through a pseudo-terminal (zpty): keys typed, the screen polled for
  // the expected text (20 s at most each), as an operator would see it.
  const driver = `
zmodload zsh/zpty zsh/zselect zsh/datetime
expect() {
  local chunk deadline=$(( EPOCHREALTIME + 20 ))
  while (( EPOCHREALTIME < deadline )); do
    while zpty -r -t z chunk; do screen+=$chunk; done
    [[ $screen == $~1 ]] && return 0
    zselect -t 5
  done
  print -r -- "timed out waiting for $1 in: \${(q)screen}"
  exit 1
}
screen=
zpty z env TERM=xterm zsh -f -i
zpty -w z 'autoload -U compinit && compinit -u -D && source <(tandem completion zsh) && print RE""ADY'
expect '*READY*'
screen=
zpty -w -n z 'tandem -c ${file} restart web#'$'\\t'
expect '*\\\\\\#*'
screen=
zpty -w -n z $'\\t'
expect '*web\\#0*instance on port 26201*web\\#2*'
print targets listed
screen=
zpty -w -n z $'\\C-u''tandem re'$'\\t'
expect '*reload*restart*'
print commands listed
zpty -d z
`
  const r = spawnSync('zsh', ['-f', '-c', driver], {
    cwd: dir,
    env: { ...process.env, PATH: pathWithTandem(t) },
    encoding: 'utf8',
    timeout: 120_000,
  })
  t.equal(r.stdout, 'targets listed\ncommands listed\n', r.stderr)
})
