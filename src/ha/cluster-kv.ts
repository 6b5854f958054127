import type { SharedFs } from './shared-fs.js'

/**
 * The little key-value access that presence and cluster upgrade requests need, with paths as in
 * the shared dir (`nodes/a`, `requests/<id>.json`): the shared dir's I/O (SharedFs) is one, the
 * keys under an etcd prefix (etcdKv) the other. `root` names it in messages.
 */
export type ClusterKv = Pick<SharedFs, 'root' | 'read' | 'write' | 'mkdir' | 'readdir'>
