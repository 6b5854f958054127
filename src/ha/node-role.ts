import type { EventEmitter } from 'node:events'
import type { LeaseEvents, Role } from './lease.js'

/**
 * What a node of a hot-standby cluster follows: whether it is active, in which epoch, and until
 * when. The Lease is one (it competes through a store: a shared dir, etcd); ExternalRole is the
 * other (a cluster manager such as Pacemaker promotes and demotes the node). HaNode, the
 * reconciler and `/leader` see only this.
 */
export interface NodeRole extends EventEmitter<LeaseEvents> {
  readonly role: Role
  /** The epoch held or, as a standby, the highest seen. */
  readonly epoch: number
  start(): void
  stop(): void
  /** Synchronous; checked right before anything visible. */
  isActive(): boolean
  /** How much longer this node may act as active (0 when it may not): the children's deadline. */
  validForMs(): number
  /** On a standby: the active's heartbeat as last seen, for status. */
  observed(): { epoch: number; quietMs: number } | undefined
  /** Stops being active, waits for `quiesce`, then lets another node take over. */
  release(quiesce?: () => Promise<void>): Promise<boolean>
}
