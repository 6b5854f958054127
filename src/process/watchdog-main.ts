/**
 * The orphan guard, run as its own small process by the supervisor (see watchdog.ts).
 *
 * It reads lines on stdin: `+<pgid> <signal> <timeoutMs>` to watch a process group and
 * `-<pgid>` to forget it. When stdin ends without a final `bye` line, the supervisor is gone
 * (even by SIGKILL, since the kernel closes its end of the pipe): every watched group gets its
 * stop signal, then SIGKILL after its timeout, so no child serves on without supervision.
 *
 * With hot standby, `L <validMs> [<pgid>,...]` says which groups serve as active and for how
 * long the supervisor's lease still holds, measured from the line's arrival on this process's
 * own clock. A supervisor that is frozen (SIGSTOP, a stuck event loop) stops sending these; when
 * the validity runs out, those groups get SIGKILL at once: a child must not go on serving as
 * active after its supervisor has fenced itself, and a standby is about to take over.
 */
import { createInterface } from 'node:readline'

interface Watched {
  signal: NodeJS.Signals
  timeoutMs: number
}

const groups = new Map<number, Watched>()
let clean = false

const alive = (pgid: number): boolean => {
  try {
    process.kill(-pgid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

const kill = (pgid: number, signal: NodeJS.Signals) => {
  try {
    process.kill(-pgid, signal)
  } catch {
    // already gone
  }
}

// The supervisor's terminal or init system may signal us with it; we outlive it on purpose.
for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const) process.on(s, () => {})

/** The groups serving as active, and until when (performance.now()) the lease holds. */
let active: number[] = []
let leaseTimer: NodeJS.Timeout | undefined
const onLease = (validMs: number, pgids: number[]) => {
  clearTimeout(leaseTimer)
  active = pgids
  if (active.length === 0) return
  leaseTimer = setTimeout(() => {
    const serving = active.filter((g) => groups.has(g) && alive(g))
    if (serving.length === 0) return
    process.stderr.write(
      `tandem watchdog: the supervisor's lease ran out (frozen?); killing active group(s) ${serving.join(', ')}\n`,
    )
    for (const g of serving) kill(g, 'SIGKILL')
    active = []
  }, validMs)
}

const rl = createInterface({ input: process.stdin })
rl.on('line', (line) => {
  const words = line.trim().split(' ')
  if (words[0] === 'L') {
    const pgids = (words[2] ?? '').split(',').map(Number)
    return onLease(
      Number(words[1]),
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
  for (const [pgid, w] of groups) kill(pgid, w.signal)
  const deadline = Date.now() + Math.max(...[...groups.values()].map((w) => w.timeoutMs))
  const tick = setInterval(() => {
    const left = [...groups.keys()].filter(alive)
    if (left.length === 0) process.exit(0)
    if (Date.now() >= deadline) {
      left.forEach((pgid) => kill(pgid, 'SIGKILL'))
      process.exit(0)
    }
  }, 50)
  tick.unref?.()
  // keep the process alive until the interval decides
  setTimeout(() => {}, 0x7fffffff)
})
