import { performance } from 'node:perf_hooks'

/** How long a child started active trusts its role before the supervisor's first lease message. */
const DEFAULT_FIRST_VALIDITY_MS = 1000

export type ChildRole = 'active' | 'standby'

/** What a child program of a tandem cluster knows of its role (see `tandemChild`). */
export interface TandemChild {
  readonly role: ChildRole
  /** The epoch it serves as active in (0 without ha, or as a standby that never was active). */
  readonly epoch: number
  /** Active, and the supervisor's last validity has not run out. Check it before acting. */
  isActive(): boolean
  /** Milliseconds of validity left (Infinity without an IPC channel: no supervisor to ask). */
  validForMs(): number
  /** Called when the node becomes active (hot standby promoted), with the epoch. */
  onActivate(fn: (epoch: number) => void): void
  /** Called when it must stop serving as active: its validity ran out, with why. */
  onDeactivate(fn: (why: string) => void): void
  /** Stops listening (lets the process exit). */
  close(): void
}

interface Message {
  type?: unknown
  epoch?: unknown
  validMs?: unknown
}

/**
 * The child side of tandem's hot standby, for programs run by tandem (`import { tandemChild }
 * from 'tandem/child'`). It reads TANDEM_ROLE and TANDEM_EPOCH, takes activation
 * (`tandem:activate`) and validity (`tandem:lease`: how long the supervisor's lease still holds)
 * from the IPC channel, and deactivates by itself when a validity runs out: a child of a frozen
 * or dead supervisor stops serving as active before a standby node takes over.
 *
 * Validity is measured on the child's own monotonic clock from the moment a message arrives,
 * never compared with a time from another process.
 */
export const tandemChild = (env: NodeJS.ProcessEnv = process.env): TandemChild => {
  let role: ChildRole = env.TANDEM_ROLE === 'standby' ? 'standby' : 'active'
  let epoch = Number(env.TANDEM_EPOCH ?? 0) || 0
  const ipc = typeof process.send === 'function'
  let deadline = ipc
    ? performance.now() + (Number(env.TANDEM_FIRST_VALIDITY_MS) || DEFAULT_FIRST_VALIDITY_MS)
    : Infinity
  const activated: ((epoch: number) => void)[] = []
  const deactivated: ((why: string) => void)[] = []
  let timer: NodeJS.Timeout | undefined

  const deactivate = (why: string) => {
    if (role !== 'active') return
    role = 'standby'
    clearTimeout(timer)
    for (const fn of deactivated) fn(why)
  }
  const arm = () => {
    clearTimeout(timer)
    if (role !== 'active' || deadline === Infinity) return
    timer = setTimeout(
      () => deactivate('the supervisor did not renew its lease in time'),
      Math.max(0, deadline - performance.now()),
    )
    timer.unref()
  }
  const onMessage = (m: Message) => {
    if (typeof m !== 'object' || m === null || typeof m.epoch !== 'number') return
    if (m.type === 'tandem:activate' || m.type === 'tandem:lease') {
      // Tells the supervisor this child deactivates by itself (its watchdog then spares it).
      process.send?.({ type: 'tandem:ack', epoch: m.epoch })
    }
    if (m.type === 'tandem:activate') {
      if (role === 'active' && epoch === m.epoch) return
      role = 'active'
      epoch = m.epoch
      // Valid for as long as the lease message that follows at once says.
      deadline = performance.now() + DEFAULT_FIRST_VALIDITY_MS
      arm()
      for (const fn of activated) fn(epoch)
    } else if (m.type === 'tandem:lease' && typeof m.validMs === 'number') {
      if (role !== 'active' || m.epoch !== epoch) return
      deadline = performance.now() + m.validMs
      arm()
    }
  }
  if (ipc) process.on('message', onMessage)
  arm()

  return {
    get role() {
      return role
    },
    get epoch() {
      return epoch
    },
    isActive() {
      if (role === 'active' && performance.now() >= deadline)
        deactivate('the supervisor did not renew its lease in time')
      return role === 'active'
    },
    validForMs() {
      return role === 'active' ? Math.max(0, deadline - performance.now()) : 0
    },
    onActivate(fn) {
      activated.push(fn)
    },
    onDeactivate(fn) {
      deactivated.push(fn)
    },
    close() {
      clearTimeout(timer)
      if (ipc) process.off('message', onMessage)
    },
  }
}
