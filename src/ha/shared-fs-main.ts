/**
 * The shared directory's I/O process, run by the supervisor (see shared-fs-process.ts) as
 * `node shared-fs-main.js <root>` with an IPC channel.
 *
 * A hung NFS call holds a libuv thread for ever; here it holds one of this process's, never the
 * supervisor's, whose log, control socket, health checks and shutdown go on. The supervisor
 * sends no more operations at once than it allows threads to be held (maxInFlight).
 *
 * Messages: `{id, op, args}` in; `{id, ok: true, value}` or `{id, ok: false, code, message}` out.
 */
import { localSharedFs, type SharedFsOp } from './shared-fs.js'

/** One operation asked for by the supervisor. */
export interface SharedFsRequest {
  id: number
  op: SharedFsOp
  args: unknown[]
}

/** The answer to one request, by its id. */
export type SharedFsReply =
  | { id: number; ok: true; value?: unknown }
  | { id: number; ok: false; code: string; message: string }

const OPS: readonly SharedFsOp[] = [
  'read',
  'write',
  'overwrite',
  'mkdir',
  'rename',
  'readdir',
  'stat',
]

const root = process.argv[2]
if (!root || !process.send) {
  process.stderr.write('tandem shared-dir I/O: run by the supervisor, with a root and IPC\n')
  process.exit(2)
}
const fs = localSharedFs(root)
let running = 0

/**
 * The supervisor is gone (closed the channel, or died: the kernel closed its end). Exit at once:
 * a normal exit joins libuv's thread pool and would wait for ever on a thread hung in the mount,
 * so with operations still running this process kills itself.
 */
const leave = () => {
  if (running === 0) process.exit(0)
  process.kill(process.pid, 'SIGKILL')
}
process.on('disconnect', leave)

// Ctrl-C or an init system's SIGTERM reach the supervisor's whole group; the supervisor may
// still need us to release its lease while it shuts down. We end when it closes the channel.
for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const) process.on(s, () => {})

const reply = (msg: SharedFsReply) => {
  // A closed channel means the supervisor is gone: 'disconnect' ends us.
  if (process.connected) process.send!(msg, undefined, undefined, () => {})
}

process.on('message', (raw: unknown) => {
  const req = raw as SharedFsRequest
  if (typeof req?.id !== 'number' || !OPS.includes(req.op) || !Array.isArray(req.args)) {
    process.stderr.write(
      `tandem shared-dir I/O: ignoring a malformed request ${JSON.stringify(raw)}\n`,
    )
    return
  }
  running++
  const call = (fs[req.op] as (...args: unknown[]) => Promise<unknown>).bind(fs)
  call(...req.args).then(
    (value) => {
      running--
      reply({ id: req.id, ok: true, value })
    },
    (err: Error & { code?: string }) => {
      running--
      // localSharedFs rejects only with SharedFsErrors: the fs code, the operation, the full path.
      reply({ id: req.id, ok: false, code: err.code ?? 'EIO', message: err.message })
    },
  )
})
