/**
 * The orphan guard, run as its own small process by the supervisor (see watchdog.ts).
 *
 * It reads lines on stdin: `+<pgid> <signal> <timeoutMs>` to watch a process group and
 * `-<pgid>` to forget it. When stdin ends without a final `bye` line, the supervisor is gone
 * (even by SIGKILL, since the kernel closes its end of the pipe): every watched group gets its
 * stop signal, then SIGKILL after its timeout, so no child serves on without supervision.
 *
 * With hot standby, `L <deadline> <marginMs> [<pgid>,...]` lists the groups serving as active
 * and the supervisor's deadline: an absolute time on the host's monotonic clock (the
 * supervisor's own fence time), sent after each good renew. Each listed group (among the
 * watched) still alive at `deadline + marginMs` gets SIGKILL, unless a newer L line came first,
 * whether its child promised to deactivate by itself or not: a child must not go on serving as
 * active after its supervisor has fenced itself (frozen by SIGSTOP, a stuck event loop, or a
 * child that ignores its deadline), and a standby is about to take over. The deadline being
 * absolute, a line delivered late cannot extend it: one already past kills at once. An empty
 * list (`L 0 0`) clears.
 */
import { createInterface } from 'node:readline'
import { hostMonotonic, systemClock } from '../seams/clock.js'
import { groupAlive as alive, signalGroup, terminateGroup } from './process-group.js'

interface Watched {
  signal: NodeJS.Signals
  timeoutMs: number
}

const groups = new Map<number, Watched>()
let clean = false

// The supervisor's terminal or init system may signal us with it; we outlive it on purpose.
for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const) process.on(s, () => {})

/** The groups serving as active, and when (hostMonotonic()) they get SIGKILL. */
let active: number[] = []
let killAt = Infinity
let leaseTimer: NodeJS.Timeout | undefined
const fence = () => {
  // Node's timers count whole milliseconds on their own: one may fire a little early.
  const left = killAt - hostMonotonic()
  if (left > 0) {
    leaseTimer = setTimeout(fence, Math.min(left, 0x7fffffff))
    return
  }
  const serving = active.filter((g) => groups.has(g) && alive(g))
  active = []
  if (serving.length === 0) return
  process.stderr.write(
    `tandem watchdog: the supervisor's deadline plus margin passed ${Math.round(-left)} ms ago (frozen, or a child kept serving); killing active group(s) ${serving.join(', ')}\n`,
  )
  for (const g of serving) signalGroup(g, 'SIGKILL')
}
const onLease = (deadline: number, marginMs: number, pgids: number[]) => {
  clearTimeout(leaseTimer)
  active = pgids
  if (active.length === 0) return
  killAt = deadline + marginMs
  fence()
}

const rl = createInterface({ input: process.stdin })
rl.on('line', (line) => {
  const words = line.trim().split(' ')
  if (words[0] === 'L') {
    const pgids = (words[3] ?? '').split(',').map(Number)
    return onLease(
      Number(words[1]) || 0,
      Number(words[2]) || 0,
      pgids.filter((g) => g > 0),
    )
  }
  const [head = '', signal = 'SIGTERM', timeout = '10000'] = words
  const pgid = Number(head.slice(1))
  if (head === 'bye') clean = true
  else if (head.startsWith('+') && pgid > 0) {
    groups.set(pgid, { signal: signal as NodeJS.Signals, timeoutMs: Number(timeout) })
  } else if (head.startsWith('-')) groups.delete(pgid)
})
rl.on('close', () => {
  if (clean || groups.size === 0) process.exit(0)
  process.stderr.write(
    `tandem watchdog: supervisor gone; stopping ${groups.size} process group(s)\n`,
  )
  void Promise.all(
    [...groups].map(([pgid, w]) =>
      terminateGroup(pgid, { signal: w.signal, timeoutMs: w.timeoutMs, clock: systemClock }),
    ),
  ).finally(() => process.exit(0))
})
