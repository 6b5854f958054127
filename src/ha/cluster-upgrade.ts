import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { errorMessage } from '../errors.js'
import type { Cancel, Clock } from '../seams/clock.js'
import type { ClusterKv } from './cluster-kv.js'

/** `tandem upgrade --cluster`: what every node is asked to do. */
export interface UpgradeRequest {
  id: string
  /** The node whose CLI wrote it. */
  by: string
  all: boolean
  components: string[]
  at: string
}

/** One node's answer to a request: `requests/<id>.<node>.result.json`. */
export interface UpgradeResult {
  id: string
  node: string
  ok: boolean
  message: string
  replaced: string[]
}

const REQUEST = /^(\d+-[0-9a-f]+)\.json$/
const resultPath = (id: string, node: string) => join('requests', `${id}.${node}.result.json`)

/**
 * Writes a request every node picks up (`requests/<id>.json` in the shared dir or under the etcd
 * prefix); returns it. Never rewritten, never removed by tandem.
 */
export const writeUpgradeRequest = async (
  kv: ClusterKv,
  by: string,
  options: { all: boolean; components: string[] },
): Promise<UpgradeRequest> => {
  const request: UpgradeRequest = {
    id: `${Date.now()}-${randomBytes(4).toString('hex')}`,
    by,
    ...options,
    at: new Date().toISOString(),
  }
  await kv.mkdir('requests', { recursive: true })
  await kv.write(join('requests', `${request.id}.json`), JSON.stringify(request) + '\n', {
    exclusive: true,
  })
  return request
}

/** The results written so far for request `id`, by node. */
export const readUpgradeResults = async (
  kv: ClusterKv,
  id: string,
  nodes: readonly string[],
): Promise<Map<string, UpgradeResult>> => {
  const found = new Map<string, UpgradeResult>()
  for (const node of nodes) {
    try {
      const raw = await kv.read(resultPath(id, node))
      if (raw !== undefined) found.set(node, JSON.parse(raw) as UpgradeResult)
    } catch {
      // not yet (or being written)
    }
  }
  return found
}

/** How often a node lists `requests/` for new cluster upgrade requests. */
export const REQUEST_POLL_MS = 250

/**
 * Each node's side of `tandem upgrade --cluster`: lists `requests/` every REQUEST_POLL_MS
 * (other hosts' writes raise no local file events) for requests made after this node started,
 * runs `upgrade` for each (one at a time, in the order they are found), and writes its result.
 * The instances are serialized across nodes by the roll locks the upgrade takes. Every access
 * goes through `fs`, the supervisor's shared-dir I/O process: polling the shared dir from this
 * process (chokidar's stat polling did) would hold one of its threads per watched file for as
 * long as a hung mount hangs.
 */
export const watchUpgradeRequests = (
  fs: ClusterKv,
  clock: Clock,
  node: string,
  upgrade: (r: UpgradeRequest) => Promise<{ replaced: string[] }>,
  onError: (message: string) => void,
): { close(): Promise<void> } => {
  const seen = new Set<string>()
  let first = true
  let closed = false
  let cancel: Cancel = () => {}
  let lastError = ''
  const report = (m: string) => {
    if (m !== lastError) onError(m)
    lastError = m
  }
  const handle = async (name: string, id: string) => {
    const raw = await fs.read(join('requests', name))
    let request: UpgradeRequest
    try {
      request = JSON.parse(raw ?? '') as UpgradeRequest
    } catch {
      return false // being written: read again at the next turn
    }
    seen.add(id)
    let result: UpgradeResult
    try {
      const r = await upgrade(request)
      result = {
        id: request.id,
        node,
        ok: true,
        message: `${r.replaced.length} replaced`,
        replaced: r.replaced,
      }
    } catch (err) {
      result = { id: request.id, node, ok: false, message: errorMessage(err), replaced: [] }
    }
    try {
      await fs.write(resultPath(request.id, node), JSON.stringify(result) + '\n')
    } catch (err) {
      onError(`cannot write the result of cluster upgrade ${request.id}: ${errorMessage(err)}`)
    }
    return true
  }
  const turn = async () => {
    try {
      await fs.mkdir('requests', { recursive: true })
      const names = (await fs.readdir('requests')).sort()
      for (const name of names) {
        const id = REQUEST.exec(name)?.[1]
        if (id === undefined || seen.has(id) || closed) continue
        // Requests made before this node started are not its business.
        if (first) seen.add(id)
        else await handle(name, id)
      }
      first = false
      lastError = ''
    } catch (err) {
      if (closed) return // the shared dir's access closed under it: not news
      report(`reading ${join(fs.root, 'requests')}: ${errorMessage(err)}`)
    }
  }
  const loop = () => {
    void turn().finally(() => {
      if (!closed) cancel = clock.after(REQUEST_POLL_MS, loop)
    })
  }
  loop()
  return {
    close: () => {
      closed = true
      cancel()
      return Promise.resolve()
    },
  }
}
