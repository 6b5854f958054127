import type { StatusReply } from '../../src/status.js'

export type StatusInstance = StatusReply['instances'][number]

/** One instance as `GET /status` reports it: `gateway#1` on 7555, ready, pid 1001. */
export const statusInstance = (id: string, over: Partial<StatusInstance> = {}): StatusInstance => {
  const [component, index] = id.split('#') as [string, string]
  return {
    id,
    component,
    index: Number(index),
    port: 7554 + Number(index),
    user: 'tandem',
    pid: 1000 + Number(index),
    state: 'ready',
    restarts: 0,
    uptimeMs: 5000,
    lastExit: undefined,
    reason: undefined,
    stoppedByOperator: false,
    ...over,
  }
}
