import type { CgroupSpec } from './cgroup.js'

/** A resource limit value: a number, or no limit (RLIM_INFINITY). */
export type RlimitValue = number | 'unlimited'

/** The account a child runs as, resolved when the config was loaded. */
export interface ChildAccount {
  /** The user's name, or its uid when the host has no passwd entry for it. */
  user: string
  uid: number
  gid: number
  home: string
  shell: string
  /** Give it the user's supplementary groups (initgroups(3)); false: none (no passwd entry). */
  initGroups: boolean
}

/**
 * How a child is executed, beyond argv, cwd and env: as which account, with which umask and
 * resource limits, in which cgroup. Everything is applied by small exec'ing programs between the
 * fork and the child's own program, so it holds from the program's first instruction on.
 */
export interface ExecSpec {
  /** Absent: the supervisor's own user. */
  account?: ChildAccount
  /** Octal, as in the config ("027"); absent: the supervisor's. */
  umask?: string
  /** [soft, hard] by prlimit(1) resource name (nofile, nproc, core, memlock, as, cpu). */
  limits: Record<string, [RlimitValue, RlimitValue]>
  /** Its own cgroup v2 cgroup (only where the host delegates a subtree; checked at load). */
  cgroup?: CgroupSpec
}

/** util-linux prlimit, which execs a program with resource limits set. */
export const PRLIMIT = '/usr/bin/prlimit'
/** util-linux setpriv, which execs a program with other ids, groups, or a parent-death signal. */
export const SETPRIV = '/usr/bin/setpriv'
export const SH = '/bin/sh'

/**
 * The shell step, for what no util-linux program does: join a cgroup (the process writes its
 * own pid into cgroup.procs), set the umask and LISTEN_PID (systemd's socket activation wants
 * the pid of the program itself, known only after the fork; every later step execs, so the pid
 * stays), then exec the rest. Its arguments are data ($1 umask or "", $2 cgroup.procs path or
 * "", $3 "1" for LISTEN_PID or ""), never code: the script is this constant.
 */
export const SH_STEP =
  'if [ -n "$1" ]; then umask "$1" || exit 126; fi; ' +
  'if [ -n "$2" ]; then echo $$ > "$2" || exit 126; fi; ' +
  'if [ -n "$3" ]; then LISTEN_PID=$$; export LISTEN_PID; fi; ' +
  'shift 3; exec "$@"'

/** What runs between the fork and the program, besides the account, umask and limits. */
export interface ChainOptions {
  /** Linux parent-death signal (setpriv --pdeathsig). */
  parentDeathSignal?: string | undefined
  /** The cgroup.procs file to join. */
  cgroupProcs?: string | undefined
  /** Set LISTEN_PID to the program's own pid (a socket passed systemd's way). */
  listenPid?: boolean
}

/**
 * The argv that runs `file args` as `exec` says, outermost program first: the shell step (as
 * root, so it may write cgroup.procs; and LISTEN_PID), prlimit (still privileged, so it may set a hard limit
 * above the target user's), then setpriv (ids, groups, and the parent-death signal last, as a
 * change of ids would clear it), then the program. Steps with nothing to do are left out.
 */
export const execChain = (
  exec: ExecSpec | undefined,
  { parentDeathSignal, cgroupProcs, listenPid = false }: ChainOptions,
  file: string,
  args: string[],
): string[] => {
  const argv: string[] = []
  if (exec?.umask !== undefined || cgroupProcs !== undefined || listenPid) {
    argv.push(
      SH,
      '-c',
      SH_STEP,
      'tandem-exec',
      exec?.umask ?? '',
      cgroupProcs ?? '',
      listenPid ? '1' : '',
    )
  }
  const limits = Object.entries(exec?.limits ?? {})
  if (limits.length) {
    argv.push(PRLIMIT, ...limits.map(([name, [soft, hard]]) => `--${name}=${soft}:${hard}`), '--')
  }
  const account = exec?.account
  if (account || parentDeathSignal) {
    argv.push(SETPRIV)
    if (account) {
      argv.push(
        `--reuid=${account.uid}`,
        `--regid=${account.gid}`,
        account.initGroups ? '--init-groups' : '--clear-groups',
      )
    }
    if (parentDeathSignal) argv.push('--pdeathsig', parentDeathSignal.replace(/^SIG/, ''))
    argv.push('--')
  }
  argv.push(file, ...args)
  return argv
}

/** HOME, USER, LOGNAME and SHELL of the account, as login(1) and systemd's User= set them. */
export const accountEnv = (account: ChildAccount | undefined): Record<string, string> =>
  account
    ? { HOME: account.home, USER: account.user, LOGNAME: account.user, SHELL: account.shell }
    : {}

/**
 * The account, umask and limits of an instance for a command run on its behalf (an activation
 * hook): the same privileges as the instance, outside its cgroup (the hook is not the server).
 */
export const hookExec = (exec: ExecSpec): ExecSpec => ({
  ...(exec.account ? { account: exec.account } : {}),
  ...(exec.umask !== undefined ? { umask: exec.umask } : {}),
  limits: exec.limits,
})
