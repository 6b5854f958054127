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

/**
 * The kernel's ephemeral port range (Linux `ip_local_port_range`), from which outgoing
 * connections draw their local ports. A fixed server port inside it can be taken for a while by
 * any outgoing connection (and its TIME_WAIT after it closes). Undefined where it cannot be read.
 */
export const ephemeralPortRange = (): [number, number] | undefined => {
  try {
    const [lo, hi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
      .trim()
      .split(/\s+/)
      .map(Number)
    return lo !== undefined && hi !== undefined && lo > 0 && hi >= lo ? [lo, hi] : undefined
  } catch {
    return undefined
  }
}

const inRange = (port: number, range: [number, number] | undefined): range is [number, number] =>
  range !== undefined && port >= range[0] && port <= range[1]

/**
 * A warning for fixed ports inside the ephemeral range, or undefined: such a port is taken, now
 * and then, by an outgoing connection of any process on the host, and the instance cannot bind it
 * until that connection (and its TIME_WAIT, a minute) is gone.
 */
export const ephemeralPortWarning = (ports: readonly number[]): string | undefined => {
  const range = ephemeralPortRange()
  const inside = ports.filter((p) => inRange(p, range))
  if (!range || inside.length === 0) return undefined
  const many = inside.length > 1
  return `port${many ? 's' : ''} ${inside.join(', ')} lie${many ? '' : 's'} in the ephemeral port range ${range[0]}-${range[1]} (net.ipv4.ip_local_port_range): outgoing connections can hold ${many ? 'them' : 'it'} and make a start fail with the port in use; choose ports outside it, or reserve them with net.ipv4.ip_local_reserved_ports`
}

/**
 * Why `port` cannot be bound, for the log and status: the listener's pid where it can be found;
 * else, where the socket tables show no listener, a connection holding it as its local port,
 * which happens to ports in the ephemeral range.
 */
export const describePortHolder = (port: number): string => {
  const inodes = listeningInodes(port)
  const holder = inodes && portHolderOf(inodes)
  if (holder !== undefined) return `port ${port} is in use by pid ${holder}`
  if (!inodes || inodes.size > 0) return `port ${port} is in use by another process`
  const range = ephemeralPortRange()
  return inRange(port, range)
    ? `port ${port} is in use by a connection, not a listener: it lies in the ephemeral port range ${range[0]}-${range[1]} that outgoing connections take their local ports from`
    : `port ${port} is in use by a connection, not a listener`
}

/**
 * Socket inodes listening on `port` (Linux /proc/net/tcp and tcp6); undefined where neither
 * table can be read (not Linux).
 */
const listeningInodes = (port: number): Set<string> | undefined => {
  let inodes: Set<string> | undefined
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0')
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string
    try {
      text = readFileSync(table, 'utf8')
    } catch {
      continue
    }
    inodes ??= new Set()
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/)
      // f[1] local address:port, f[3] state (0A = LISTEN), f[9] inode
      if (f[1]?.endsWith(`:${hexPort}`) && f[3] === '0A' && f[9]) inodes.add(f[9])
    }
  }
  return inodes
}

/** The pid of a process that has one of these socket inodes open, if we may see it. */
const portHolderOf = (inodes: Set<string>): number | undefined => {
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
