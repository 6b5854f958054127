import { spawn } from 'node:child_process'
import {
  accessSync,
  closeSync,
  constants,
  mkdirSync,
  openSync,
  readFileSync,
  statSync,
} from 'node:fs'
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { InstanceSpec, Plan } from '../config/plan.js'
import { controlStateDir } from '../config/control-state-dir.js'
import { controlRequest } from '../control/client.js'
import { checkSocketPath } from '../control/socket-path.js'
import { errorMessage, hasCode } from '../errors.js'
import { PidRecords, terminateLeftovers, type PidRecord } from '../process/pid-records.js'
import { groupAlive, processAlive, signalGroup } from '../process/process-group.js'
import { processStartTime } from '../process/process-start-time.js'
import { systemClock, type Clock } from '../seams/clock.js'
import { isFailure, shouldRestart } from '../supervisor/restart-policy.js'
import type { StatusReply } from '../status.js'
import { ocfMetaData, type OcfParameter } from './ocf-meta-data.js'

/**
 * The OCF exit codes (resource-agents' ocf-returncodes). FAILED_PROMOTED is OCF 1.1's answer
 * for a node that is active but not healthy: it tells Pacemaker the role is still Promoted, so
 * that the recovery demotes before it stops (the active-only instances stop first).
 */
export const OCF = {
  SUCCESS: 0,
  ERR_GENERIC: 1,
  ERR_ARGS: 2,
  ERR_UNIMPLEMENTED: 3,
  ERR_INSTALLED: 5,
  ERR_CONFIGURED: 6,
  NOT_RUNNING: 7,
  RUNNING_PROMOTED: 8,
  FAILED_PROMOTED: 9,
} as const

/**
 * An action's time when Pacemaker gives none (a hand run): Pacemaker's own default operation
 * timeout.
 */
export const DEFAULT_ACTION_TIMEOUT_MS = 20_000

/**
 * What the agent keeps of an action's timeout for itself: a tenth, at least 2 s and at most half.
 * Pacemaker kills an agent that overruns and counts the action as failed (a stop that fails gets
 * the node fenced), so the agent gives up waiting first and still has time to answer: a stop
 * SIGKILLs the supervisor and waits for it and its instances to be reaped, a monitor says why.
 */
export const actionMarginMs = (timeoutMs: number): number =>
  Math.min(timeoutMs / 2, Math.max(2_000, timeoutMs / 10))

/** How often start, stop and promote look again at what they wait for. */
const POLL_MS = 100

/** The log lines a failed start prints from the unified log (and the supervisor's stderr). */
const TAIL_LINES = 10

export interface OcfIo {
  out: (text: string) => void
  err: (text: string) => void
}

/** Where this package's launcher is: the default of the `tandem` parameter. */
const DEFAULT_TANDEM = fileURLToPath(new URL('../../bin/tandem.js', import.meta.url))

const PARAMETERS = (node: string): OcfParameter[] => [
  {
    name: 'config',
    required: true,
    shortdesc: 'tandem config file',
    longdesc:
      'Absolute path of the tandem config file of this resource, the same on every node. Its ha.backend must be {"type": "external"}; its stateDir holds the control socket the agent talks to.',
  },
  {
    name: 'tandem',
    required: false,
    shortdesc: 'path of bin/tandem.js',
    longdesc:
      'The tandem launcher (bin/tandem.js of the installed package) that runs the supervisor and this agent.',
    default: DEFAULT_TANDEM,
  },
  {
    name: 'node',
    required: false,
    shortdesc: 'node binary',
    longdesc:
      'The Node.js binary that runs tandem (20.19 or later): an absolute path, or a name found on the PATH Pacemaker gives its agents.',
    default: node,
  },
]

/** The agent's inputs, from the OCF environment. */
interface OcfParams {
  config: string | undefined
  tandem: string
  node: string
  /** The action's timeout (OCF_RESKEY_CRM_meta_timeout, ms). */
  timeoutMs: number
  /** OCF_CHECK_LEVEL of a monitor: 0 asks the supervisor; 10 also wants every instance ready. */
  checkLevel: number
}

const paramsOf = (env: NodeJS.ProcessEnv): OcfParams => {
  const timeout = Number(env.OCF_RESKEY_CRM_meta_timeout)
  return {
    config: env.OCF_RESKEY_config || undefined,
    tandem: env.OCF_RESKEY_tandem || DEFAULT_TANDEM,
    // The node that runs this agent: the one the agent script found (ocf/tandem).
    node: env.OCF_RESKEY_node || process.execPath,
    timeoutMs: timeout > 0 ? timeout : DEFAULT_ACTION_TIMEOUT_MS,
    checkLevel: Number(env.OCF_CHECK_LEVEL) || 0,
  }
}

/** An action's answer: an OCF code and, unless it succeeded quietly, one short line why. */
interface Outcome {
  code: number
  message?: string
}

const fail = (code: number, message: string): Outcome => ({ code, message })

/** The supervisor recorded in a state dir (acquireStateLock), while that very process lives. */
const liveSupervisor = (stateDir: string): number | undefined => {
  let pid: number
  let startTime: string | undefined
  try {
    const [p, s] = readFileSync(resolve(stateDir, 'supervisor.pid'), 'utf8').trim().split(' ')
    pid = Number(p)
    startTime = s
  } catch {
    return undefined
  }
  if (!(pid > 0) || !processAlive(pid)) return undefined
  // Another process that reused the pid is not it.
  return startTime && processStartTime(pid) !== startTime ? undefined : pid
}

/** The instances a dead supervisor left running (the orphan watchdog ends them, soon). */
const leftovers = (stateDir: string): PidRecord[] =>
  new PidRecords(stateDir)
    .read()
    .filter((r) => processStartTime(r.pid) === r.startTime && groupAlive(r.pid))

type Reached = { status: StatusReply } | { down: true } | { problem: string }

/**
 * Asks the supervisor for its status, waiting at most `ms`: a supervisor that accepts the
 * connection but does not answer (frozen, or its event loop stuck) is a problem, not a stop.
 */
const askStatus = async (stateDir: string, ms: number, clock: Clock): Promise<Reached> => {
  let cancel = () => {}
  const late = new Promise<Reached>((r) => {
    cancel = clock.after(ms, () =>
      r({ problem: `its control socket did not answer within ${ms} ms` }),
    )
  })
  try {
    return await Promise.race([
      controlRequest(stateDir, 'GET', '/status').then(
        (s): Reached => ({ status: s as StatusReply }),
        (err: unknown): Reached =>
          hasCode(err, 'ENOSUPERVISOR') ? { down: true } : { problem: errorMessage(err) },
      ),
      late,
    ])
  } finally {
    cancel()
  }
}

/** A control request (promote, demote, shutdown) bounded by `ms`. */
const post = async (stateDir: string, path: string, ms: number, clock: Clock) => {
  let cancel = () => {}
  const late = new Promise<never>((_, reject) => {
    cancel = clock.after(ms, () =>
      reject(new Error(`the supervisor did not answer ${path} within ${ms} ms`)),
    )
  })
  try {
    return await Promise.race([controlRequest(stateDir, 'POST', path), late])
  } finally {
    cancel()
  }
}

/**
 * The instances that should be ready and are not, as `id state` (empty: all are). Which are
 * wanted follows the reconciler's rule (Reconciler.desired) from the config file's specs and
 * the node's role: not stopped by the operator, and active-only ones only on the active node
 * unless they stand by hot. A one-shot that ended cleanly is done, not missing. An instance the
 * file no longer names (changed since the start) is judged by its state alone.
 */
export const notReady = (s: StatusReply, specs: ReadonlyMap<string, InstanceSpec>): string[] =>
  s.instances
    .filter((i) => {
      if (i.state === 'ready' || i.stoppedByOperator) return false
      const spec = specs.get(i.id)
      if (!spec) return i.state !== 'stopped'
      if (spec.runOn === 'active' && spec.standby !== 'hot' && s.role !== 'active') return false
      const done =
        i.state === 'stopped' &&
        i.lastExit !== undefined &&
        !isFailure(i.lastExit) &&
        !shouldRestart(spec.restart, i.lastExit)
      return !done
    })
    .map((i) => `${i.id} ${i.state}`)

/** The specs of the config file's instances by id; none when it cannot be read now. */
const specsOf = async (config: string): Promise<Map<string, InstanceSpec>> => {
  try {
    const { loadConfig } = await import('../config/load-config.js')
    const { planInstances } = await import('../config/plan.js')
    return new Map(planInstances(loadConfig(config)).map((i) => [i.id, i]))
  } catch {
    return new Map()
  }
}

/**
 * validate-all: the config loads as `tandem validate` loads it and names the external backend;
 * node and tandem are there. A config file missing on this node is ERR_INSTALLED (Pacemaker
 * then avoids this node) rather than ERR_CONFIGURED (which stops the resource everywhere).
 */
const validate = async (p: OcfParams): Promise<Outcome & { plan?: Plan }> => {
  if (!p.config) {
    return fail(
      OCF.ERR_ARGS,
      'parameter config (OCF_RESKEY_config) is not set: expected the path of the tandem config file',
    )
  }
  try {
    accessSync(p.node, constants.X_OK)
  } catch {
    // A bare name is looked up on PATH by the agent script, which ran this with it.
    if (p.node.includes('/'))
      return fail(OCF.ERR_INSTALLED, `parameter node: ${p.node} is not an executable file`)
  }
  try {
    if (!statSync(p.tandem).isFile()) throw new Error('not a file')
    accessSync(p.tandem, constants.R_OK)
  } catch {
    return fail(
      OCF.ERR_INSTALLED,
      `parameter tandem: ${p.tandem} is not a readable file (expected tandem's bin/tandem.js)`,
    )
  }
  let plan: Plan
  try {
    const { loadConfig } = await import('../config/load-config.js')
    plan = loadConfig(p.config)
    checkSocketPath(plan)
  } catch (err) {
    const cause = (err as { cause?: unknown }).cause
    if (hasCode(cause, 'ENOENT'))
      return fail(OCF.ERR_INSTALLED, `config file ${resolve(p.config)} does not exist on this node`)
    return fail(hasCode(err, 'ECONFIG') ? OCF.ERR_CONFIGURED : OCF.ERR_GENERIC, errorMessage(err))
  }
  const backend = plan.ha?.backend.type
  if (backend !== 'external') {
    return fail(
      OCF.ERR_CONFIGURED,
      `${plan.configFile}: ha.backend.type must be "external" under Pacemaker (Pacemaker decides the active node), got ${backend ? JSON.stringify(backend) : 'no "ha" section'}`,
    )
  }
  return { code: OCF.SUCCESS, plan }
}

/** The last lines of a file from byte `from` on; JSON log records shown by their message. */
const tail = (file: string, from: number): string[] => {
  try {
    const text = readFileSync(file).subarray(from).toString('utf8')
    return text
      .split('\n')
      .filter((l) => l.trim() !== '')
      .slice(-TAIL_LINES)
      .map((l) => {
        try {
          const r = JSON.parse(l) as { msg?: unknown }
          return typeof r.msg === 'string' ? r.msg : l
        } catch {
          return l
        }
      })
  } catch {
    return []
  }
}

const sizeOf = (file: string): number => {
  try {
    return statSync(file).size
  } catch {
    return 0
  }
}

/** The environment of the supervisor: the agent's own, without Pacemaker's OCF variables. */
const supervisorEnv = (env: NodeJS.ProcessEnv): NodeJS.ProcessEnv =>
  Object.fromEntries(Object.entries(env).filter(([k]) => !/^(__)?OCF_/.test(k)))

/**
 * Waits until the supervisor answers and every wanted instance is ready: what Pacemaker takes a
 * successful start or promote to mean (it runs the role's monitors right after).
 */
const untilReady = async (
  stateDir: string,
  specs: ReadonlyMap<string, InstanceSpec>,
  deadline: number,
  clock: Clock,
  gone: () => string | undefined,
): Promise<Outcome> => {
  let last: Reached | undefined
  for (;;) {
    const why = gone()
    if (why) return fail(OCF.ERR_GENERIC, why)
    const left = deadline - clock.monotonic()
    last = await askStatus(stateDir, Math.max(left, POLL_MS), clock)
    if ('status' in last && notReady(last.status, specs).length === 0) return { code: OCF.SUCCESS }
    if (clock.monotonic() >= deadline) break
    await clock.sleep(POLL_MS)
  }
  if ('status' in last)
    return fail(OCF.ERR_GENERIC, `not ready in time: ${notReady(last.status, specs).join(', ')}`)
  return fail(
    OCF.ERR_GENERIC,
    'down' in last ? 'the supervisor did not open its control socket in time' : last.problem,
  )
}

const start = async (p: OcfParams, clock: Clock): Promise<Outcome> => {
  const v = await validate(p)
  if (!v.plan) return v
  const plan = v.plan
  const deadline = clock.monotonic() + p.timeoutMs - actionMarginMs(p.timeoutMs)
  const specs = await specsOf(plan.configFile)
  const running = await askStatus(plan.stateDir, deadline - clock.monotonic(), clock)
  if (!('down' in running) || liveSupervisor(plan.stateDir) !== undefined) {
    // Started already (or starting): started means answering with every wanted instance ready.
    return untilReady(plan.stateDir, specs, deadline, clock, () => undefined)
  }
  mkdirSync(plan.stateDir, { recursive: true, mode: 0o700 })
  // The supervisor's stdout (the unified log, also in its file) goes nowhere; its stderr, where
  // it says why it could not start before its log was open, to a file a failed start shows.
  const errFile = resolve(plan.stateDir, 'supervisor.stderr')
  const logFile = resolve(plan.logs.dir, 'tandem.log')
  const logFrom = sizeOf(logFile)
  const errFd = openSync(errFile, 'w', 0o600)
  let exit: string | undefined
  try {
    const child = spawn(p.node, [p.tandem, 'start', '-c', plan.configFile], {
      // Its own session: Pacemaker's end of this agent must not reach it.
      detached: true,
      stdio: ['ignore', 'ignore', errFd],
      cwd: dirname(plan.configFile),
      env: supervisorEnv(process.env),
    })
    child.once('error', (err) => (exit = `could not run ${p.node}: ${err.message}`))
    child.once(
      'exit',
      (code, signal) => (exit = `the supervisor exited (${signal ?? `code ${code}`}) during start`),
    )
    child.unref()
  } finally {
    closeSync(errFd)
  }
  const r = await untilReady(plan.stateDir, specs, deadline, clock, () => exit)
  if (r.code !== OCF.SUCCESS && exit) {
    const lines = [...tail(logFile, logFrom), ...tail(errFile, 0)]
    return fail(r.code, [r.message, ...lines.map((l) => `  ${l}`)].join('\n'))
  }
  return r
}

/**
 * stop: `tandem shutdown`, then wait for the supervisor to exit; SIGKILL of its process group
 * when the time is nearly up, and of any instance it left behind (its orphan watchdog would end
 * them, but Pacemaker must not start this resource elsewhere while they serve).
 */
const stop = async (p: OcfParams, stateDir: string, clock: Clock): Promise<Outcome> => {
  const deadline = clock.monotonic() + p.timeoutMs - actionMarginMs(p.timeoutMs)
  const pid = liveSupervisor(stateDir)
  const asked = await post(
    stateDir,
    '/shutdown',
    Math.max(deadline - clock.monotonic(), POLL_MS),
    clock,
  ).then(
    () => undefined,
    (err: unknown) => (hasCode(err, 'ENOSUPERVISOR') ? undefined : errorMessage(err)),
  )
  const running = () =>
    (pid !== undefined && processAlive(pid)) || liveSupervisor(stateDir) !== undefined
  while (running() && clock.monotonic() < deadline) await clock.sleep(POLL_MS)
  let killed: string | undefined
  const last =
    liveSupervisor(stateDir) ?? (pid !== undefined && processAlive(pid) ? pid : undefined)
  if (last !== undefined) {
    killed = `the supervisor (pid ${last}) did not stop in time${asked ? ` (${asked})` : ''}: killed`
    // A supervisor started by this agent leads its own group; one started otherwise may not.
    if (!signalGroup(last, 'SIGKILL')) process.kill(last, 'SIGKILL')
    const reaped = clock.monotonic() + actionMarginMs(p.timeoutMs) / 2
    while (processAlive(last) && clock.monotonic() < reaped) await clock.sleep(20)
    if (processAlive(last))
      return fail(OCF.ERR_GENERIC, `the supervisor (pid ${last}) survived SIGKILL`)
  }
  const left = leftovers(stateDir)
  if (left.length) {
    // Whatever time is left, less a second for the agent to answer.
    const ms = Math.max(0, deadline + actionMarginMs(p.timeoutMs) / 2 - clock.monotonic() - 1_000)
    await terminateLeftovers(
      left.map((r) => ({ ...r, stopTimeoutMs: Math.min(r.stopTimeoutMs, ms) })),
      clock,
    )
    const still = leftovers(stateDir)
    if (still.length)
      return fail(
        OCF.ERR_GENERIC,
        `instances still running: ${still.map((r) => `${r.id} (pid ${r.pid})`).join(', ')}`,
      )
  }
  return killed ? fail(OCF.SUCCESS, killed) : { code: OCF.SUCCESS }
}

/**
 * monitor: NOT_RUNNING only when no supervisor answers, none runs and none of its instances
 * is left; its role otherwise (Unpromoted 0, Promoted 8), and at OCF_CHECK_LEVEL 10 whether
 * every wanted instance is ready.
 */
const monitor = async (p: OcfParams, stateDir: string, clock: Clock): Promise<Outcome> => {
  const ms = p.timeoutMs - actionMarginMs(p.timeoutMs)
  const r = await askStatus(stateDir, ms, clock)
  if ('down' in r) {
    const pid = liveSupervisor(stateDir)
    if (pid !== undefined)
      return fail(
        OCF.ERR_GENERIC,
        `supervisor pid ${pid} runs but its control socket does not answer`,
      )
    const left = leftovers(stateDir)
    if (left.length)
      return fail(
        OCF.ERR_GENERIC,
        `the supervisor is gone but its instances still run: ${left.map((l) => `${l.id} (pid ${l.pid})`).join(', ')}`,
      )
    return { code: OCF.NOT_RUNNING }
  }
  if ('problem' in r) {
    const pid = liveSupervisor(stateDir)
    return fail(
      OCF.ERR_GENERIC,
      `supervisor${pid !== undefined ? ` pid ${pid}` : ''}: ${r.problem}`,
    )
  }
  const s = r.status
  // A supervisor that decides its role by itself (standalone, or a lease) must not be counted
  // as one Pacemaker promotes: ERR_CONFIGURED stops the resource rather than trusting its role.
  const backend = s.cluster?.backend.type
  if (backend !== 'external') {
    return fail(
      OCF.ERR_CONFIGURED,
      `the supervisor of ${s.config} runs ${backend ? `with ha.backend ${JSON.stringify(backend)}` : 'standalone'}, not under Pacemaker: its ha.backend must be {"type": "external"}`,
    )
  }
  const promoted = s.role === 'active'
  if (p.checkLevel >= 10) {
    const missing = notReady(s, await specsOf(s.config))
    if (missing.length)
      return fail(
        promoted ? OCF.FAILED_PROMOTED : OCF.ERR_GENERIC,
        `${promoted ? 'active' : 'standby'}, not ready: ${missing.join(', ')}`,
      )
  }
  return { code: promoted ? OCF.RUNNING_PROMOTED : OCF.SUCCESS }
}

/** promote / demote: the supervisor's own control request; promote then waits for readiness. */
const changeRole = async (
  p: OcfParams,
  stateDir: string,
  to: 'promote' | 'demote',
  clock: Clock,
): Promise<Outcome> => {
  const deadline = clock.monotonic() + p.timeoutMs - actionMarginMs(p.timeoutMs)
  try {
    await post(stateDir, `/${to}`, deadline - clock.monotonic(), clock)
  } catch (err) {
    return hasCode(err, 'ENOSUPERVISOR')
      ? fail(OCF.NOT_RUNNING, 'no supervisor is running')
      : fail(OCF.ERR_GENERIC, errorMessage(err))
  }
  if (to === 'demote') return { code: OCF.SUCCESS }
  const specs = await specsOf(p.config!)
  return untilReady(stateDir, specs, deadline, clock, () => undefined)
}

/**
 * `tandem ocf <action>`: the OCF resource agent (docs/pacemaker.md), its parameters from the
 * environment (OCF_RESKEY_config, _tandem, _node, _CRM_meta_timeout, OCF_CHECK_LEVEL).
 * Resolves with the OCF exit code; says why on stderr in one short line (the config's errors
 * in several), never a secret.
 */
export const runOcf = async (
  action: string,
  env: NodeJS.ProcessEnv,
  version: string,
  io: OcfIo,
  clock: Clock = systemClock,
): Promise<number> => {
  const p = paramsOf(env)
  const run = async (): Promise<Outcome> => {
    switch (action) {
      case 'meta-data':
        io.out(ocfMetaData(version, PARAMETERS(env.OCF_RESKEY_node || 'node')))
        return { code: OCF.SUCCESS }
      case 'validate-all':
        return validate(p)
      case 'start':
        return start(p, clock)
      case 'stop':
      case 'monitor':
      case 'promote':
      case 'demote': {
        if (!p.config) return validate(p)
        // Only the state dir: a stop or monitor must work while the file is being edited.
        let stateDir: string
        try {
          stateDir = await controlStateDir(p.config)
        } catch (err) {
          return fail(OCF.ERR_CONFIGURED, errorMessage(err))
        }
        if (action === 'stop') return stop(p, stateDir, clock)
        if (action === 'monitor') return monitor(p, stateDir, clock)
        return changeRole(p, stateDir, action, clock)
      }
      default:
        return fail(OCF.ERR_UNIMPLEMENTED, `action ${JSON.stringify(action)} is not implemented`)
    }
  }
  let outcome: Outcome
  try {
    outcome = await run()
  } catch (err) {
    outcome = fail(OCF.ERR_GENERIC, errorMessage(err))
  }
  if (outcome.message) io.err(`tandem ocf ${action}: ${outcome.message}`)
  return outcome.code
}
