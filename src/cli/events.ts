import { controlStream } from '../control/client.js'
import { TandemError } from '../errors.js'
import type { TandemEvent } from '../supervisor/event-stream.js'

export interface EventsOptions {
  json?: boolean
  follow?: boolean
  since?: string
}

/**
 * `12  2026-12-05T04:50:01.123Z  exited  web#0  exited: signal SIGKILL after 1234 ms`: seq,
 * time, event, instance (`-` for the node's own events) and the message, without the instance
 * it starts with.
 */
export const formatEvent = (e: TandemEvent): string => {
  const id = e.id ?? '-'
  const message =
    e.id && e.message.startsWith(`${e.id} `) ? e.message.slice(e.id.length + 1) : e.message
  return `${String(e.seq).padStart(5)}  ${e.time}  ${e.event.padEnd(18)}  ${id.padEnd(12)}  ${message}`
}

/** The control request's path: `/events?since=..&follow=true&targets=a,b`. */
export const eventsPath = (targets: readonly string[], o: EventsOptions): string => {
  const q = new URLSearchParams()
  if (targets.length) q.set('targets', targets.join(','))
  if (o.since !== undefined) {
    if (!/^\d+$/.test(o.since))
      throw new TandemError(
        'EUSAGE',
        `--since expects a sequence number (the seq of the last event seen), got ${JSON.stringify(o.since)}`,
      )
    q.set('since', o.since)
  }
  if (o.follow) q.set('follow', 'true')
  const text = q.toString()
  return `/events${text ? `?${text}` : ''}`
}

/**
 * `tandem events`: the events the running supervisor keeps (after --since), then with -f the
 * live ones until Ctrl-C; one line each, or one JSON object a line with --json. Events asked
 * for with --since that the ring no longer keeps: a line on stderr says which. Cut off for
 * reading too slowly (ESLOW): the notice on stderr, exit 1. The supervisor stopping while
 * following: a line on stderr says so, exit 0 (every event it published was shown).
 */
export const runEvents = async (
  stateDir: string,
  targets: readonly string[],
  o: EventsOptions,
  io: { out(text: string): void; err(text: string): void },
): Promise<void> => {
  const result = (await controlStream(
    stateDir,
    eventsPath(targets, o),
    undefined,
    (raw) => {
      const gap = (raw as { gap?: { message: string } }).gap
      if (gap) return io.err(`tandem events: ${gap.message}`)
      const e = raw as TandemEvent
      io.out(o.json ? JSON.stringify(e) : formatEvent(e))
    },
    'GET',
  )) as { lastSeq?: number; stopped?: boolean } | undefined
  if (result?.stopped)
    io.err(`tandem events: the supervisor stopped (the last event seen: ${result.lastSeq ?? 0})`)
}
