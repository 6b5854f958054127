import { readdirSync, readFileSync, readlinkSync } from 'node:fs'
import { createServer } from 'node:net'

/**
 * Whether a TCP port can be bound right now. Probes the wildcard address (dual stack), which
 * conflicts with a listener on any local address, so that a child binding 0.0.0.0, :: or
 * 127.0.0.1 will not fail with EADDRINUSE because of a process we already know about.
 */
export const portFree = async (port: number): Promise<boolean> => {
  const dualStack = await tryListen(port, '::')
  // A host without IPv6 cannot bind '::' at all: probe IPv4's wildcard instead.
  return dualStack === 'unsupported'
    ? (await tryListen(port, '0.0.0.0')) !== 'in-use'
    : dualStack !== 'in-use'
}

/**
 * 'free' when the port could be bound; 'in-use' on EADDRINUSE; 'unsupported' when the address
 * family is missing. Anything else (EACCES on a privileged port) cannot be probed from here and
 * counts as free: the child may have the rights we lack, and its own error will tell.
 */
const tryListen = (port: number, host: string): Promise<'free' | 'in-use' | 'unsupported'> =>
  new Promise((resolve) => {
    const server = createServer()
    server.once('error', (err: NodeJS.ErrnoException) =>
      resolve(
        err.code === 'EADDRINUSE'
          ? 'in-use'
          : err.code === 'EAFNOSUPPORT' || err.code === 'EADDRNOTAVAIL'
            ? 'unsupported'
            : 'free',
      ),
    )
    server.listen({ port, host, ipv6Only: false, exclusive: true }, () =>
      server.close(() => resolve('free')),
    )
  })

/** Socket inodes listening on `port` (Linux /proc/net/tcp and tcp6). */
const listeningInodes = (port: number): Set<string> => {
  const inodes = new Set<string>()
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0')
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string
    try {
      text = readFileSync(table, 'utf8')
    } catch {
      continue
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/)
      // f[1] local address:port, f[3] state (0A = LISTEN), f[9] inode
      if (f[1]?.endsWith(`:${hexPort}`) && f[3] === '0A' && f[9]) inodes.add(f[9])
    }
  }
  return inodes
}

/**
 * The pid of the process listening on `port`, where the OS lets us find it (Linux /proc, and
 * only processes we may inspect); undefined otherwise.
 */
export const portHolder = (port: number): number | undefined => {
  const inodes = listeningInodes(port)
  if (inodes.size === 0) return undefined
  let pids: string[]
  try {
    pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d))
  } catch {
    return undefined
  }
  for (const pid of pids) {
    let fds: string[]
    try {
      fds = readdirSync(`/proc/${pid}/fd`)
    } catch {
      continue
    }
    for (const fd of fds) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))
        if (m && inodes.has(m[1]!)) return Number(pid)
      } catch {
        // the fd closed while we looked
      }
    }
  }
  return undefined
}
