import { request } from 'node:http'
import { connect } from 'node:net'
import type { InstanceSpec } from '../config/plan.js'
import { TandemError } from '../errors.js'
import type { ChildHandle } from '../process/spawn-child.js'
import { abortReason, type Clock } from '../seams/clock.js'

/** One probe attempt answers no longer than this, so a black-holed connect cannot stall a start. */
export const PROBE_ATTEMPT_MS = 1_000

const tcpOnce = (host: string, port: number, timeoutMs = PROBE_ATTEMPT_MS): Promise<void> =>
  new Promise((resolve, reject) => {
    const socket = connect({ host, port, timeout: timeoutMs })
    socket.once('connect', () => {
      socket.destroy()
      resolve()
    })
    socket.once('timeout', () => {
      socket.destroy()
      reject(new Error(`connect to ${host}:${port} timed out`))
    })
    socket.once('error', reject)
  })

const httpOnce = (
  host: string,
  port: number,
  path: string,
  timeoutMs = PROBE_ATTEMPT_MS,
): Promise<void> =>
  new Promise((resolve, reject) => {
    // `timeout` is socket inactivity; the timer bounds the whole exchange.
    const timer = setTimeout(
      () => req.destroy(new Error(`GET ${path} timed out after ${timeoutMs} ms`)),
      timeoutMs,
    )
    const req = request(
      { host, port, path, method: 'GET', timeout: timeoutMs, agent: false },
      (res) => {
        res.resume()
        clearTimeout(timer)
        const status = res.statusCode ?? 0
        if (status >= 200 && status < 300) resolve()
        else reject(new Error(`GET ${path} answered ${status}`))
      },
    )
    req.once('timeout', () => req.destroy(new Error(`GET ${path} timed out`)))
    req.once('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    req.end()
  })

/** One liveness probe of a running instance: resolves when it answers in time, else rejects. */
export const probeOnce = (
  health: { type: 'tcp' } | { type: 'http'; path: string },
  host: string,
  port: number,
  timeoutMs: number,
): Promise<void> =>
  health.type === 'tcp'
    ? tcpOnce(host, port, timeoutMs)
    : httpOnce(host, port, health.path, timeoutMs)

const isReadyMessage = (m: unknown): boolean =>
  m === 'ready' ||
  (typeof m === 'object' && m !== null && (m as { type?: unknown }).type === 'ready')

/**
 * Resolves when the instance is serving, as its readiness config defines it. Rejects with
 * ENOTREADY (naming the probe and its last error) after timeoutMs, or with the signal's reason
 * when the start is abandoned (the process exited, or a stop was asked for).
 */
export const waitReady = async (
  spec: InstanceSpec,
  child: ChildHandle,
  clock: Clock,
  signal: AbortSignal,
): Promise<void> => {
  const r = spec.readiness
  if (r.type === 'none') return
  const deadline = clock.monotonic() + r.timeoutMs
  const notReady = (last: string) =>
    new TandemError(
      'ENOTREADY',
      `${spec.id} was not ready within ${r.timeoutMs} ms (${r.type} readiness: ${last})`,
    )
  if (r.type === 'ipc') {
    let undo = () => {}
    let cancelTimer = () => {}
    try {
      await new Promise<void>((resolve, reject) => {
        undo = child.onMessage((m) => isReadyMessage(m) && resolve())
        cancelTimer = clock.after(r.timeoutMs, () => reject(notReady('no "ready" message')))
        signal.addEventListener('abort', () => reject(abortReason(signal)), { once: true })
      })
    } finally {
      undo()
      cancelTimer()
    }
    return
  }
  const port = spec.port!
  let last = 'no attempt yet'
  for (;;) {
    signal.throwIfAborted()
    try {
      await (r.type === 'tcp' ? tcpOnce(spec.host, port) : httpOnce(spec.host, port, r.path))
      signal.throwIfAborted()
      return
    } catch (err) {
      signal.throwIfAborted()
      last = (err as Error).message
    }
    if (clock.monotonic() >= deadline) throw notReady(last)
    await clock.sleep(r.intervalMs, signal)
  }
}
