// The events a supervisor publishes, as every part sees them: the names (what hooks subscribe
// to, what `tandem events` shows) and the shape of one event. A file of its own at the top of
// src/, like status.ts: config (hooks), logging and ha name events without depending on the
// supervisor that publishes them.

/**
 * The names of the events a supervisor publishes: what hooks subscribe to (`hooks[].on`), what
 * `tandem events` and the status page show. An unknown name in a config is an error.
 */
export const EVENT_NAMES = [
  // An instance's life.
  'spawned',
  'ready',
  'exited',
  'restarting',
  'failed',
  'crashLoop',
  'unhealthy',
  'memory',
  'stopped',
  // Rollouts (upgrade, reload, cluster upgrade).
  'rollout.started',
  'rollout.replaced',
  'rollout.rolledBack',
  'rollout.done',
  'reload',
  // High availability.
  'promoted',
  'fenced',
  'released',
  'switchover',
  // The supervisor itself.
  'log.unwritable',
  'log.recovered',
  'config.rejected',
] as const

export type EventName = (typeof EVENT_NAMES)[number]

export const isEventName = (s: string): s is EventName =>
  (EVENT_NAMES as readonly string[]).includes(s)

/** What a publisher says; the stream adds the sequence number, time and node. */
export interface EventInput {
  event: EventName
  /** One line for a person: what the log says of it. */
  message: string
  /** The instance's fields, for instance events. */
  id?: string
  component?: string
  instance?: number
  port?: number
  childPid?: number
  /** Anything else the event carries (an exit, a reason, an epoch): plain JSON values. */
  [field: string]: unknown
}

/** One published event, as the log, `tandem events`, hooks and the status page get it. */
export interface TandemEvent extends EventInput {
  /** 1, 2, 3, ... for the life of this supervisor: gaps mean nothing was lost to a reader that
   * saw them all; a reader that resumes with `since` gets what it missed while it is in the ring. */
  seq: number
  /** ISO 8601, wall clock. */
  time: string
  /** `node` of the config. */
  node: string
}
