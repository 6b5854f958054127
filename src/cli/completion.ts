import type { Argument, Command, Option } from 'commander'
import { homedir } from 'node:os'
import { loadConfig } from '../config/load-config.js'
import { planInstances } from '../config/plan.js'
import { TandemError } from '../errors.js'

/** The shells `tandem completion` writes a script for. */
export const SHELLS = ['bash', 'zsh'] as const
export type Shell = (typeof SHELLS)[number]

export { COMPLETE_COMMAND } from './complete-command.js'
import { COMPLETE_COMMAND } from './complete-command.js'

/** One completion: the word, and a description that zsh shows beside it. */
export interface Candidate {
  value: string
  description: string
}

/**
 * What the shell should offer: these words, or file names (the value of an option such as
 * `--config <file>`).
 */
export interface Completion {
  mode: 'words' | 'files'
  candidates: Candidate[]
}

/** The components and instances of a config file, for completing targets. */
export interface ConfigNames {
  components: { name: string; instances: number }[]
  instances: { id: string; port: number | undefined }[]
}

const NO_NAMES: ConfigNames = { components: [], instances: [] }

/**
 * Reads the component and instance names of a config file. Silent on purpose: a completion must
 * not print errors into the command line being typed, so a missing or invalid file completes no
 * targets.
 */
export const configNames = (file: string): ConfigNames => {
  try {
    const plan = loadConfig(file.startsWith('~/') ? homedir() + file.slice(1) : file, process.env, {
      host: 'none',
    })
    return {
      components: plan.components.map((c) => ({ name: c.name, instances: c.instances.length })),
      instances: planInstances(plan).map((i) => ({ id: i.id, port: i.port })),
    }
  } catch {
    return NO_NAMES
  }
}

/** Placeholders of option values that name a file: the shell completes them as paths. */
const FILE_VALUE = /[<[](file|path|dir)[\]>]/

const takesValue = (o: Option) => o.required || o.optional

const firstLine = (s: string) => s.split('\n')[0] ?? ''

/** The program's commands an operator can type (commander's `help` included, hidden ones not). */
const commandsOf = (program: Command): Command[] => program.createHelp().visibleCommands(program)

/**
 * The options commander accepts after `command`: its own (with `--help`) and those of the
 * commands above it, which commander finds anywhere on the line (`tandem stop -c FILE x`).
 * `--version` belongs to the program alone.
 */
const optionsOf = (command: Command): Option[] => {
  const options = command.createHelp().visibleOptions(command)
  for (let c = command.parent; c; c = c.parent)
    options.push(...c.options.filter((o) => !o.hidden && o.long !== '--version'))
  return options
}

const findOption = (options: Option[], word: string): Option | undefined =>
  options.find((o) => o.long === word || o.short === word)

interface Parsed {
  command: Command
  /** Operands given to `command` so far. */
  operands: string[]
  used: Set<Option>
  /** Option values given so far, by commander attribute name. */
  values: Map<string, string>
  /** The option whose value the current word is. */
  valueOf: Option | undefined
  /** After `--`: every word is an operand. */
  literal: boolean
}

/**
 * Reads the words before the current one as commander would: the command, options with their
 * values, operands. A value may follow its option as the next word, after `=` in the same word,
 * or as bash splits `--config=FILE` at the `=`: `--config`, `=`, `FILE`.
 */
const parseWords = (program: Command, words: readonly string[]): Parsed => {
  const p: Parsed = {
    command: program,
    operands: [],
    used: new Set(),
    values: new Map(),
    valueOf: undefined,
    literal: false,
  }
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!
    if (p.literal || w === '-' || !w.startsWith('-')) {
      // A command's first operand may name one of its subcommands (`cluster init`).
      const sub =
        p.operands.length === 0
          ? commandsOf(p.command).find((c) => c.name() === w || c.aliases().includes(w))
          : undefined
      if (sub) p.command = sub
      else p.operands.push(w)
      continue
    }
    if (w === '--') {
      p.literal = true
      continue
    }
    const options = optionsOf(p.command)
    const eq = w.indexOf('=')
    const o = findOption(options, eq > 0 ? w.slice(0, eq) : w)
    if (o) {
      p.used.add(o)
      if (eq > 0) {
        p.values.set(o.attributeName(), w.slice(eq + 1))
        continue
      }
      if (!takesValue(o)) continue
      let at = i + 1
      if (words[at] === '=') at++
      // An optional value is taken only when the next word is not an option, as commander does.
      if (o.optional && words[at]?.startsWith('-') !== false) continue
      if (at < words.length) p.values.set(o.attributeName(), words[at]!)
      else p.valueOf = o
      i = at
      continue
    }
    // `-cFILE`: a short option with its value attached.
    const short = findOption(options, w.slice(0, 2))
    if (short && takesValue(short)) {
      p.used.add(short)
      p.values.set(short.attributeName(), w.slice(2))
    }
  }
  return p
}

const matching = (candidates: Candidate[], prefix: string): Candidate[] =>
  candidates.filter((c) => c.value.startsWith(prefix))

const optionCandidates = (p: Parsed): Candidate[] =>
  optionsOf(p.command)
    .filter((o) => o.variadic || !p.used.has(o))
    .map((o) => ({ value: o.long ?? o.short ?? '', description: o.description }))

/** The values of the argument that the next operand fills. */
const argumentCandidates = (program: Command, p: Parsed): Candidate[] => {
  if (p.operands.length === 0 && p.command.commands.length > 0) {
    return commandsOf(p.command).map((c) => ({
      value: c.name(),
      description: firstLine(c.description()),
    }))
  }
  const args = p.command.registeredArguments
  const last = args.at(-1)
  const arg: Argument | undefined = args[p.operands.length] ?? (last?.variadic ? last : undefined)
  if (!arg) return []
  if (arg.argChoices) return arg.argChoices.map((value) => ({ value, description: arg.name() }))
  const configOption = program.options.find((o) => o.attributeName() === 'config')
  const names = () =>
    configNames(p.values.get('config') ?? String(configOption?.defaultValue ?? ''))
  switch (arg.name()) {
    case 'targets': {
      const n = names()
      return [
        { value: 'all', description: 'every instance' },
        ...n.components.map((c) => ({
          value: c.name,
          description: `component, ${c.instances} instance${c.instances === 1 ? '' : 's'}`,
        })),
        ...n.instances.map((i) => ({
          value: i.id,
          description: i.port === undefined ? 'instance' : `instance on port ${i.port}`,
        })),
      ]
    }
    case 'components':
      return names().components.map((c) => ({ value: c.name, description: 'component' }))
    case 'command':
      // commander's `help [command]`
      return commandsOf(program)
        .filter((c) => c.name() !== 'help')
        .map((c) => ({ value: c.name(), description: firstLine(c.description()) }))
    case 'shell':
      return SHELLS.map((value) => ({ value, description: 'shell' }))
    default:
      return []
  }
}

/**
 * Completes the last of `words` (the command line after the program name, the word being typed
 * last, empty after a space): a command, an option of the command, an option's value, or an
 * argument: targets (`all`, components, `component#i`) and components from the config file the
 * command would use (`-c`, else `$TANDEM_CONFIG`, else `tandem.json`, as the program's `-c`
 * option resolves it).
 */
export const complete = (program: Command, words: readonly string[]): Completion => {
  const prior = words.slice(0, -1)
  let current = words.at(-1) ?? ''
  // bash hands `--config=` over as `--config`, `=`: the value being typed is empty.
  if (current === '=' && prior.at(-1)?.startsWith('-')) {
    prior.push('=')
    current = ''
  }
  const p = parseWords(program, prior)
  const valueOf = (o: Option | undefined): Completion => ({
    mode: o && FILE_VALUE.test(o.flags) ? 'files' : 'words',
    candidates: [],
  })
  if (p.valueOf) return valueOf(p.valueOf)
  if (!p.literal && current.startsWith('-')) {
    const eq = current.indexOf('=')
    if (eq > 0) return valueOf(findOption(optionsOf(p.command), current.slice(0, eq)))
    return { mode: 'words', candidates: matching(optionCandidates(p), current) }
  }
  const args = argumentCandidates(program, p)
  // Nothing left to name (`tandem status <TAB>`): show what can still be said, the options.
  const candidates = args.length || current || p.literal ? args : optionCandidates(p)
  return { mode: 'words', candidates: matching(candidates, current) }
}

/**
 * The answer to the scripts: the mode on the first line, then one candidate per line, its
 * description after a tab.
 */
export const formatCompletion = (c: Completion): string =>
  [
    c.mode,
    ...c.candidates.map((x) => `${x.value}\t${x.description.replace(/[\t\n]+/g, ' ')}`),
  ].join('\n')

const bashScript = (
  name: string,
) => `# bash completion for ${name}: commands, options, and targets read from the config file.
# Load it in ~/.bashrc: source <(${name} completion bash)
_${name}_completion() {
  local cur=\${COMP_WORDS[COMP_CWORD]} out line mode=
  # bash splits --config=FILE at "=": the word being completed is what follows it.
  [[ $cur == = ]] && cur=
  # The program itself answers (so the answer follows its version): a mode line, then one
  # candidate per line with its description after a tab.
  out=$("\${COMP_WORDS[0]}" ${COMPLETE_COMMAND} "\${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null) || return 0
  COMPREPLY=()
  while IFS= read -r line; do
    if [[ -z $mode ]]; then
      mode=$line
    elif [[ -n $line ]]; then
      COMPREPLY+=("\${line%%$'\\t'*}")
    fi
  done <<<"$out"
  if [[ $mode == files ]]; then
    compopt -o filenames 2>/dev/null
    while IFS= read -r line; do COMPREPLY+=("$line"); done < <(compgen -f -- "$cur")
  fi
  return 0
}
complete -F _${name}_completion ${name}`

const zshScript = (name: string) => `#compdef ${name}
# zsh completion for ${name}: commands, options, and targets read from the config file.
# Load it in ~/.zshrc after compinit: source <(${name} completion zsh)
# or save it as _${name} in a directory of $fpath.
_${name}() {
  local -a lines candidates
  local line mode
  # The program itself answers (so the answer follows its version): a mode line, then one
  # candidate per line with its description after a tab. The words are unquoted first: zsh
  # keeps them as typed, and it quotes what it inserts (gateway#1 becomes gateway\\#1).
  lines=("\${(@f)$(\${(Q)words[1]} ${COMPLETE_COMMAND} "\${(@Q)words[2,CURRENT]}" 2>/dev/null)}")
  mode=\${lines[1]}
  if [[ $mode == files ]]; then
    # --config=FILE: complete the file name after the "=".
    [[ $PREFIX == -*=* ]] && compset -P '*='
    _files
    return
  fi
  for line in "\${(@)lines[2,-1]}"; do
    [[ -n $line ]] || continue
    # _describe takes "value:description"; a colon in the value is escaped.
    candidates+=("\${\${line%%$'\\t'*}//:/\\\\:}:\${line#*$'\\t'}")
  done
  (( \${#candidates} )) && _describe -t values ${name} candidates
}
if [[ \${zsh_eval_context[-1]} == loadautofunc ]]; then
  _${name} "$@"
else
  compdef _${name} ${name}
fi`

/** The completion script for `shell`; EUSAGE naming the value and the choices for another. */
export const completionScript = (shell: string, name = 'tandem'): string => {
  if (shell === 'bash') return bashScript(name)
  if (shell === 'zsh') return zshScript(name)
  throw new TandemError(
    'EUSAGE',
    `unknown shell ${JSON.stringify(shell)}: expected one of ${SHELLS.join(', ')}`,
  )
}
