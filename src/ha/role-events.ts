import type { EventEmitter } from 'node:events'
import type { EventInput } from '../events.js'
import type { LeaseEvents } from './lease.js'

/**
 * Publishes a node's role changes: `promoted` when it becomes active (a claim won, a takeover,
 * a promotion by the cluster manager), `released` when it hands the role over (switchover,
 * shutdown, a demotion), `fenced` when it lost the role (its lease lapsed, a higher epoch
 * appeared). Returns the undo.
 */
export const publishRoleEvents = (
  role: EventEmitter<LeaseEvents>,
  cluster: string,
  publish: (e: EventInput) => void,
): (() => void) => {
  const active = ({ epoch, why }: { epoch: number; why: string }) =>
    publish({
      event: 'promoted',
      message: `active for epoch ${epoch} (${why})`,
      cluster,
      epoch,
      why,
    })
  const standby = ({ epoch, why }: { epoch: number; why: string }) =>
    publish({
      event: why.startsWith('released') ? 'released' : 'fenced',
      message: `no longer active in epoch ${epoch}: ${why}`,
      cluster,
      epoch,
      why,
    })
  role.on('active', active)
  role.on('standby', standby)
  return () => {
    role.off('active', active)
    role.off('standby', standby)
  }
}
