import { watch } from 'chokidar'
import { randomBytes } from 'node:crypto'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { basename, join } from 'node:path'
import type { HaSpec } from '../config/plan.js'
import { errorMessage } from '../errors.js'

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

export const requestsDir = (ha: HaSpec) => join(ha.sharedDir, 'requests')

const REQUEST = /^(\d+-[0-9a-f]+)\.json$/
const resultFile = (ha: HaSpec, id: string, node: string) =>
  join(requestsDir(ha), `${id}.${node}.result.json`)

/** Writes a request every node picks up; returns it. Never rewritten, never removed by tandem. */
export const writeUpgradeRequest = async (
  ha: HaSpec,
  by: string,
  options: { all: boolean; components: string[] },
): Promise<UpgradeRequest> => {
  const request: UpgradeRequest = {
    id: `${Date.now()}-${randomBytes(4).toString('hex')}`,
    by,
    ...options,
    at: new Date().toISOString(),
  }
  await mkdir(requestsDir(ha), { recursive: true })
  await writeFile(join(requestsDir(ha), `${request.id}.json`), JSON.stringify(request) + '\n', {
    flag: 'wx',
  })
  return request
}

/** The results written so far for request `id`, by node. */
export const readUpgradeResults = async (
  ha: HaSpec,
  id: string,
  nodes: readonly string[],
): Promise<Map<string, UpgradeResult>> => {
  const found = new Map<string, UpgradeResult>()
  for (const node of nodes) {
    try {
      found.set(node, JSON.parse(await readFile(resultFile(ha, id, node), 'utf8')) as UpgradeResult)
    } catch {
      // not yet (or being written)
    }
  }
  return found
}

/**
 * Each node's side of `tandem upgrade --cluster`: watches `requests/` (chokidar, polling: other
 * hosts' writes raise no local file events) for requests made after this node started, runs
 * `upgrade` for each (one at a time, in the order they arrive), and writes its result. The
 * instances are serialized across nodes by the roll locks the upgrade takes.
 */
export const watchUpgradeRequests = (
  ha: HaSpec,
  node: string,
  upgrade: (r: UpgradeRequest) => Promise<{ replaced: string[] }>,
  onError: (message: string) => void,
): { close(): Promise<void> } => {
  let queue = Promise.resolve()
  const seen = new Set<string>()
  const handle = async (file: string) => {
    const m = REQUEST.exec(basename(file))
    if (!m || seen.has(m[1]!)) return
    seen.add(m[1]!)
    let request: UpgradeRequest
    try {
      request = JSON.parse(await readFile(file, 'utf8')) as UpgradeRequest
    } catch (err) {
      return onError(`cluster upgrade request ${file} cannot be read: ${errorMessage(err)}`)
    }
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
      await writeFile(resultFile(ha, request.id, node), JSON.stringify(result) + '\n')
    } catch (err) {
      onError(`cannot write the result of cluster upgrade ${request.id}: ${errorMessage(err)}`)
    }
  }
  const dir = requestsDir(ha)
  let watcher: ReturnType<typeof watch> | undefined
  void mkdir(dir, { recursive: true })
    .then(() => {
      watcher = watch(dir, {
        ignoreInitial: true,
        usePolling: true,
        interval: 250,
        depth: 0,
        awaitWriteFinish: { stabilityThreshold: 100, pollInterval: 50 },
      })
      watcher.on('add', (file) => {
        queue = queue.then(() => handle(file))
      })
      watcher.on('error', (err) => onError(`watching ${dir}: ${errorMessage(err)}`))
    })
    .catch((err: unknown) => onError(`cannot create ${dir}: ${errorMessage(err)}`))
  return {
    close: async () => {
      await watcher?.close()
    },
  }
}
