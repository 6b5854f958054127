// Hot standby on slow, stale, failing and hung shared storage (issue 11): real supervisors, each
// reaching the shared directory through its own faultfs view, /leader on every node and the
// active-only ports sampled concurrently for the whole of each scenario: never two actives, never
// two active-only servers accepting at once. Ports 25500-25799 belong to this file.
import { readdirSync, readFileSync, existsSync, statSync } from 'node:fs'
import * as fs from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import {
  accepting,
  alive,
  cli,
  fixture,
  ROOT,
  sleep,
  status,
  tempDir,
  waitUntil,
  writeConfig,
  Supervisor,
  type LogRecord,
} from '../helpers/supervisor.js'
import {
  cluster,
  HA,
  leader,
  node,
  sampleAccepting,
  sampleLeaders,
  type Node,
} from '../helpers/ha-cluster.js'
import { mountFaultFs, needFaultFs, type FaultView } from '../helpers/faultfs.js'

/** A node of a cluster on its own faultfs view of the shared dir. */
interface Host extends Node {
  view: FaultView
  /** The hot standby server's port: it accepts on every node, answers 200 only on the active. */
  svc: number
}

/** A cluster (`tandem cluster init` in a backing dir) and a view of it per host name. */
const views = async (t: Test, names: string[]) => {
  const shared = await cluster(t)
  const v: Record<string, FaultView> = {}
  for (const n of names) v[n] = await mountFaultFs(t, shared, n)
  return { shared, v }
}

/**
 * What each node runs: `web` everywhere, `api` (a plain server) with a cold standby, and `svc`
 * (test/fixtures/ha-child.js, the child helper) with a hot standby: pre-started on standbys,
 * answering 200 only while activated.
 */
const components = (base: number) => ({
  web: fixture({ port: base + 1 }),
  api: fixture({ port: base + 2, runOn: 'active' }),
  svc: {
    command: [process.execPath, join(ROOT, 'test/fixtures/ha-child.js')],
    env: { PORT: '{port}' },
    port: base + 3,
    runOn: 'active',
    standby: 'hot',
    activate: { type: 'ipc' },
    stop: { signal: 'SIGTERM', timeoutMs: 2000 },
  },
})

const host = (t: Test, view: FaultView, name: string, base: number): Host => ({
  ...node(t, view.dir, name, base, HA, components(base)),
  view,
  svc: base + 3,
})

const promoted = (r: LogRecord) => r.event === 'promoted'
const fenced = (r: LogRecord) => r.event === 'fenced'

/** Starts `first` and waits until it is active with its api up. */
const startActive = async (n: Host) => {
  await n.sup.waitLog(`${n.name} promoted`, promoted)
  await waitUntil(`${n.name} on /leader answers 200`, async () => (await leader(n)) === 200)
  await waitUntil(`${n.name} api up`, () => accepting(n.api))
  await waitUntil(`${n.name} svc serving`, async () => (await get(n.svc)) === 200)
}

/** Waits until `n` runs as a standby: web ready and /leader 503. */
const startStandby = async (n: Host) => {
  await n.sup.waitLog(`${n.name} web ready`, (r) => r.event === 'ready' && r.component === 'web')
  await waitUntil(`${n.name} on /leader answers 503`, async () => (await leader(n)) === 503)
}

/** GET / on `port`: the status code, 0 when it does not answer. */
const get = async (port: number): Promise<number> => {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(10_000) })
    await res.arrayBuffer()
    return res.status
  } catch {
    return 0
  }
}

/**
 * GETs each hot standby port every 10 ms, independently, until stop(); resolves with the
 * overlaps: two servers answering 200 (serving as active) in overlapping requests.
 */
const sampleServing = (ports: number[]) => {
  let running = true
  const oks: { port: number; from: number; to: number }[] = []
  const loops = ports.map(async (port) => {
    while (running) {
      const from = performance.now()
      if ((await get(port)) === 200) oks.push({ port, from, to: performance.now() })
      await sleep(10)
    }
  })
  return {
    stop: async () => {
      running = false
      await Promise.all(loops)
      return oks
        .filter((x) => oks.some((y) => y.port > x.port && y.from <= x.to && x.from <= y.to))
        .map((x) => `${x.port} answered 200 at ${x.from.toFixed(0)} while another did`)
    },
  }
}

/**
 * /leader of every node, every cold active-only port (accepting) and every hot one (200),
 * sampled concurrently from now on; `check` stops the samplers and asserts that none saw two
 * at once.
 */
const watch = (nodes: Host[]) => {
  const leaders = sampleLeaders(nodes)
  const cold = sampleAccepting(nodes.map((n) => n.api))
  const hot = sampleServing(nodes.map((n) => n.svc))
  return async (t: Test) => {
    const { overlaps, asked } = await leaders.stop()
    t.same(overlaps, [], `no instant with two leaders in ${asked} /leader answers`)
    t.same(await cold.stop(), [], 'no instant with two cold active-only servers accepting')
    t.same(await hot.stop(), [], 'no instant with two hot active-only servers answering 200')
  }
}

/** The one node answering 200 on /leader (waits for there to be exactly one). */
const theActive = (nodes: Host[]): Promise<Host> =>
  waitUntil('exactly one node answering 200 on /leader', async () => {
    const codes = await Promise.all(nodes.map((n) => leader(n)))
    const up = nodes.filter((_, i) => codes[i] === 200)
    return up.length === 1 && up[0]
  })

/** Waits until `view` holds at least one operation (a hang in effect). */
const holding = (view: FaultView) =>
  waitUntil(`faultfs ${view.dir} holding an operation`, async () => (await view.stats()).held >= 1)

/** Epochs claimed in the backing dir, ascending. */
const claims = (shared: string) =>
  readdirSync(join(shared, 'claims'))
    .map(Number)
    .sort((x, y) => x - y)

/** The pids of `pid`'s children (from /proc), for checking that nothing of a node is left. */
const childrenOf = (pid: number): number[] =>
  readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        const stat = readFileSync(`/proc/${d}/stat`, 'utf8')
        return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid
      } catch {
        return false
      }
    })
    .map(Number)

const count = (n: Host, pred: (r: LogRecord) => boolean) => n.sup.count(pred)

// Five clusters one after another, each scenario short: well within the ~4 minutes a file may
// take (the suite's default timeout is 120 s).
t.setTimeout(240_000)

if (needFaultFs(t)) {
  t.test(
    "faults on the standby's view (late heartbeat replies, slow owner reads, stale attributes, a hung mount) never make it take over; slow heartbeat writes on the active",
    async (t) => {
      const { v } = await views(t, ['a', 'b'])
      const a = host(t, v.a!, 'a', 25500)
      await startActive(a)
      const b = host(t, v.b!, 'b', 25510)
      await startStandby(b)
      const check = watch([a, b])

      // 1. Late replies on ~30% of b's heartbeat reads while a renews: a reply 2.5 s late must
      // not count as 2.5 s of silence. Held ~8 s (the fault's duration, not a wait for a state).
      await b.view.add({
        id: 'late-hb',
        ops: ['read'],
        path: 'hb/*',
        lateReply: 2500,
        probability: 0.3,
      })
      await sleep(8000)
      await b.view.clear('late-hb')
      const late = (await b.view.stats()).faults['late-hb'] ?? 0
      t.ok(late > 0, `${late} heartbeat reads of b answered 2.5 s late`)
      t.equal(count(b, promoted), 0, 'b never promoted under late heartbeat replies')
      t.equal(count(a, fenced), 0, 'a never fenced')

      // 2. Slow owner reads on b: no effect on its decision. Held ~4 s.
      await b.view.add({ id: 'slow-owner', path: 'claims/*/owner', delay: 2500 })
      await sleep(4000)
      await b.view.clear('slow-owner')
      t.comment(`owner reads of b delayed: ${(await b.view.stats()).faults['slow-owner'] ?? 0}`)
      t.equal(count(b, promoted), 0, 'b never promoted under slow owner reads')

      // 4. Stale attributes of hb/* on b (close-to-open: the data is fresh on each open). ~4 s.
      await b.view.add({ id: 'stale-attr', ops: ['getattr'], path: 'hb/*', staleAttr: 60_000 })
      await sleep(4000)
      const stale = (await b.view.stats()).faults['stale-attr'] ?? 0
      await b.view.clear('stale-attr')
      t.ok(stale > 0, `${stale} getattrs of hb/* on b answered stale`)
      t.equal(count(b, promoted), 0, 'b never promoted under stale heartbeat attributes')

      // 7. A hung mount on the standby: the active stays active, the standby answers, and goes
      // on as a standby once the mount comes back. Held ~4 s, past takeoverMs.
      await b.view.add({ id: 'hang', hang: true })
      await holding(b.view)
      await sleep(4000)
      const sb = await status(b.config)
      t.equal(sb.role, 'standby', "b's control socket answers while its mount hangs")
      t.equal(await leader(b), 503, "b's /leader answers 503 while its mount hangs")
      t.equal(await leader(a), 200, 'a still active')
      await b.view.release()
      await waitUntil('b watching epoch 1 again with a fresh heartbeat', async () => {
        const s = (await status(b.config)) as unknown as {
          cluster: { heartbeat?: { epoch: number; quietMs: number } }
        }
        const hb = s.cluster.heartbeat
        return hb !== undefined && hb.epoch === 1 && hb.quietMs < HA.takeoverMs / 2
      })
      t.equal(count(b, promoted), 0, 'b never promoted around its hung mount')
      t.equal(count(a, fenced), 0, 'a never fenced while b hung')
      t.equal(await leader(a), 200, 'a still active after b came back')

      // 5a. Slow heartbeat writes on the active: 300 or 650 ms on about half of them, ~6 s.
      // Whether a fences is not asserted; if it does, it says storage was why.
      await a.view.add({
        id: 'slow-w1',
        ops: ['write'],
        path: 'hb/*',
        delay: 300,
        probability: 0.5,
      })
      await a.view.add({
        id: 'slow-w2',
        ops: ['write'],
        path: 'hb/*',
        delay: 350,
        probability: 0.3,
      })
      await sleep(6000)
      await a.view.release()
      const f = a.sup.records.filter(fenced)
      t.comment(`a fenced ${f.length} time(s) under slow heartbeat writes`)
      for (const r of f)
        t.match(r.msg, /fenced: storage/, 'a fence under slow writes names storage')
      await theActive([a, b])
      await check(t)
    },
  )

  t.test(
    "a switchover while the standby's owner reads are slow hands over to the standby",
    async (t) => {
      const { v } = await views(t, ['a', 'b'])
      const a = host(t, v.a!, 'a', 25520)
      await startActive(a)
      const b = host(t, v.b!, 'b', 25530)
      // 2, where the owner counts: a `released` is believed only from the epoch's owner, and b
      // reads it slowly (2.5 s, longer than takeoverMs). Owner reads must not delay a decision:
      // b reads it in the background from its first sight of the epoch.
      await b.view.add({ id: 'slow-owner', ops: ['read'], path: 'claims/*/owner', delay: 2500 })
      await startStandby(b)
      const check = watch([a, b])
      await waitUntil('b to have read the owner, slowly', async () => {
        const s = await b.view.stats()
        return (s.faults['slow-owner'] ?? 0) > 0 && s.held === 0
      })
      const r = await cli(['switchover', '-c', a.config])
      t.equal(r.code, 0, r.err)
      t.comment(r.out.trim().replace(/\n/g, '; '))
      t.match(r.out, /node b is active \(epoch 2\)/, 'b took over')
      await waitUntil('a or b promoted for epoch 2', () =>
        [a, b].some((n) => n.sup.records.some((x) => promoted(x) && x.epoch === 2)),
      )
      for (const n of [a, b])
        for (const x of n.sup.records.filter(promoted)) t.comment(`${n.name}: ${x.msg}`)
      t.match(b.sup.records.find(promoted), { epoch: 2, msg: /released by a/ }, 'b promoted')
      t.equal(count(a, promoted), 1, 'a did not take the role back')
      t.equal((await theActive([a, b])).name, b.name, 'b is the active node')
      t.ok(((await b.view.stats()).faults['slow-owner'] ?? 0) > 0, 'b read the owner slowly')
      await b.view.release()
      await check(t)
    },
  )

  t.test(
    "the active's heartbeat writes fail (EIO, then ENOSPC on the new active), then its mount hangs: each time it fences and the other takes over; a hung node answers and exits on SIGTERM",
    async (t) => {
      const { shared, v } = await views(t, ['a', 'b'])
      const a = host(t, v.a!, 'a', 25540)
      await startActive(a)
      const b = host(t, v.b!, 'b', 25550)
      await startStandby(b)
      const check = watch([a, b])
      const promotions = (n: Host) => n.sup.records.filter(promoted)

      // 5b. EIO on a's heartbeat writes: a fences within its own bound, b takes over.
      await a.view.add({ id: 'eio', ops: ['write'], path: 'hb/*', fail: 'EIO' })
      const f1 = await a.sup.waitLog('a fenced', fenced)
      t.match(f1.msg, /no longer active in epoch 1: fenced: storage/, 'a fenced for storage')
      t.ok(
        a.sup.records.some((r) => r.event === 'ha' && /renewing hb\/1 failed: .*EIO/.test(r.msg)),
        'a logs the EIO',
      )
      t.match(await b.sup.waitLog('b promoted', promoted), { epoch: 2 })
      t.equal((await theActive([a, b])).name, b.name, 'b is the active node')
      await a.view.clear('eio')

      // 8. ENOSPC on the new active's heartbeat writes: the same, and the message names ENOSPC.
      await b.view.add({ id: 'enospc', ops: ['write'], path: 'hb/*', fail: 'ENOSPC' })
      const f2 = await b.sup.waitLog('b fenced', fenced)
      t.match(f2.msg, /no longer active in epoch 2: fenced: storage/, 'b fenced for storage')
      t.comment(`b: ${f2.msg}`)
      t.ok(
        b.sup.records.some(
          (r) => r.event === 'ha' && /renewing hb\/2 failed: .*ENOSPC/.test(r.msg),
        ),
        'b logs the ENOSPC',
      )
      await waitUntil('a promoted for epoch 3', () => promotions(a).some((r) => r.epoch === 3))
      t.equal((await theActive([a, b])).name, a.name, 'a is the active node again')
      await b.view.clear('enospc')

      // 6. A hung mount on the active (a): it fences, b takes over; a's log, control socket and
      // /health go on; SIGTERM ends it before its mount comes back.
      const hungAt = a.sup.records.length
      await a.view.add({ id: 'hang', hang: true })
      const f3 = await a.sup.waitLog('a fenced in epoch 3', (r) => fenced(r) && r.epoch === 3)
      t.match(f3.msg, /fenced: storage/, 'a fenced for storage')
      t.comment(`a: ${f3.msg}`)
      await waitUntil('b promoted for epoch 4', () => promotions(b).some((r) => r.epoch === 4))
      t.equal((await theActive([a, b])).name, b.name, 'b is the active node')
      t.ok((await a.view.stats()).held >= 1, "a's mount still hangs")
      await a.sup.waitLog(
        "a's api stopped after its fence",
        (r) => r.event === 'stopped' && r.component === 'api' && a.sup.records.indexOf(r) > hungAt,
      )
      t.equal((await status(a.config)).role, 'standby', "a's control socket answers while hung")
      const health = await fetch(`http://127.0.0.1:${a.http}/health`, {
        signal: AbortSignal.timeout(10_000),
      })
      t.equal(health.status, 200, "a's /health answers while hung")
      const kids = childrenOf(a.sup.pid)
      const recorded = [...new Set(a.sup.records.flatMap((r) => (r.childPid ? [r.childPid] : [])))]
      a.sup.proc.kill('SIGTERM')
      await waitUntil(
        'a to exit on SIGTERM with its mount hung',
        () => a.sup.proc.exitCode !== null || a.sup.proc.signalCode !== null,
        30_000,
      )
      t.ok((await a.view.stats()).held >= 1, 'a exited before its mount came back')
      t.same(await a.sup.exited, { code: 0, signal: null }, 'a exited 0')
      for (const pid of recorded) t.notOk(alive(pid), `a's child ${pid} is gone`)
      const left = kids.filter((p) => alive(p))
      t.comment(
        `a's direct children before SIGTERM: ${kids.join(' ')}; still there while hung: ${left.join(' ') || 'none'}`,
      )
      await a.view.release()
      await waitUntil('nothing of a left once the mount is back', () =>
        kids.every((p) => !alive(p)),
      )
      t.equal(await leader(b), 200, 'b still active')
      t.same(claims(shared), [1, 2, 3, 4], 'epochs 1-4 claimed, none skipped')
      await check(t)
    },
  )

  t.test(
    'a paused active with a negative lookup cache is fenced on resume; a lost rename reply on the claiming node still makes it active in the next epoch',
    async (t) => {
      const { shared, v } = await views(t, ['a', 'b'])
      const a = host(t, v.a!, 'a', 25580)
      await startActive(a)
      const b = host(t, v.b!, 'b', 25590)
      await startStandby(b)
      const check = watch([a, b])

      // 3. a's view caches "no such file" for claims/*; it has looked up claims/2 before b made
      // it (done here for it: a negative entry as an NFS client keeps one).
      await a.view.add({
        id: 'neg',
        ops: ['getattr'],
        path: 'claims/*',
        negativeLookup: 120_000,
      })
      await t.rejects(fs.stat(join(a.view.dir, 'claims/2')), { code: 'ENOENT' })
      a.sup.proc.kill('SIGSTOP')
      t.teardown(() => a.sup.proc.kill('SIGCONT'))
      await b.sup.waitLog('b promoted', promoted)
      await waitUntil('b api up', () => accepting(b.api))
      t.ok(existsSync(join(shared, 'claims/2/owner')), 'claims/2 made by b')
      await t.rejects(
        fs.stat(join(a.view.dir, 'claims/2')),
        { code: 'ENOENT' },
        "a's view still says claims/2 does not exist",
      )
      a.sup.proc.kill('SIGCONT')
      const f = await a.sup.waitLog('a fenced', fenced)
      t.match(f.msg, /no longer active in epoch 1: fenced/)
      t.comment(`a: ${f.msg}`)
      await waitUntil('a sees epoch 2 through the epoch file', async () => {
        const s = (await status(a.config)) as unknown as {
          role: string
          cluster: { heartbeat?: { epoch: number } }
        }
        return s.role === 'standby' && s.cluster.heartbeat?.epoch === 2
      })
      t.equal(await leader(a), 503, 'a answers 503')
      t.equal(await leader(b), 200, 'b answers 200')
      t.equal(count(a, promoted), 1, 'a never promoted again')
      await a.view.clear('neg')

      // 9. The claim's rename on a is done but answered EEXIST (a lost reply): a reads its own
      // owner and is active in epoch 3, with no epoch skipped and no claim without an owner.
      await a.view.add({
        id: 'lost-rename',
        ops: ['rename'],
        path: 'tmp/*',
        fail: 'EEXIST',
        after: true,
        count: 1,
      })
      const before = a.sup.records.length
      b.sup.proc.kill('SIGKILL')
      const p = await a.sup.waitLog('a promoted again', (r) => promoted(r) && r.epoch !== 1)
      t.equal(p.epoch, 3, 'a active in epoch 3 = 2 + 1')
      t.match(p.msg, /heartbeat of epoch 2 unchanged for \d+ ms/)
      t.equal((await a.view.stats()).faults['lost-rename'], 1, 'the rename reply was lost')
      await waitUntil('a answers 200', async () => (await leader(a)) === 200)
      await waitUntil('a api up', () => accepting(a.api))
      const problems = a.sup.records
        .slice(before)
        .filter((r) => r.event === 'ha')
        .map((r) => r.msg)
      t.same(problems, [], 'no claim problem logged by a')
      t.same(claims(shared), [1, 2, 3], 'epochs 1-3 claimed, none skipped')
      for (const n of claims(shared))
        t.ok(statSync(join(shared, 'claims', String(n), 'owner')).isFile(), `claims/${n}/owner`)
      t.equal(readFileSync(join(shared, 'epoch'), 'utf8').trim(), '3', 'epoch file says 3')
      await check(t)
    },
  )

  t.test(
    'three nodes, the active killed with faults on one standby: exactly one new active; a standby that cannot read config.json does not promote until it can',
    async (t) => {
      const { v } = await views(t, ['a', 'b', 'c'])
      const a = host(t, v.a!, 'a', 25620)
      await startActive(a)
      const b = host(t, v.b!, 'b', 25630)
      const c = host(t, v.c!, 'c', 25640)
      await startStandby(b)
      await startStandby(c)
      const check = watch([a, b, c])

      // 10. Late heartbeat replies and slow owner reads on c; a killed with -9.
      await c.view.add({
        id: 'late-hb',
        ops: ['read'],
        path: 'hb/*',
        lateReply: 2500,
        probability: 0.3,
      })
      await c.view.add({ id: 'slow-owner', path: 'claims/*/owner', delay: 2500 })
      a.sup.proc.kill('SIGKILL')
      const next = await theActive([b, c])
      const standby = next === b ? c : b
      await waitUntil(`${standby.name} watching epoch 2`, async () => {
        const s = (await status(standby.config)) as unknown as {
          cluster: { heartbeat?: { epoch: number } }
        }
        return s.cluster.heartbeat?.epoch === 2
      })
      await c.view.release()
      t.equal(count(next, promoted), 1, `${next.name} promoted once`)
      t.match(next.sup.records.find(promoted), { epoch: 2 })
      t.equal(count(standby, promoted), 0, `${standby.name} never promoted`)
      t.equal(await leader(standby), 503)

      // 11b. The remaining standby's view loses config.json while the active dies.
      await standby.view.add({ id: 'no-config', path: 'config.json', fail: 'ENOENT' })
      next.sup.proc.kill('SIGKILL')
      const refused = await standby.sup.waitLog(`${standby.name} not claiming`, (r) =>
        /not claiming epoch 3: .*config\.json is missing/.test(r.msg),
      )
      t.comment(`${standby.name}: ${refused.msg}`)
      // Held ~1.5 s more (several polls) with config.json unreadable.
      await sleep(1500)
      t.equal(count(standby, promoted), 0, `${standby.name} does not promote without config.json`)
      t.equal(await leader(standby), 503)
      await standby.view.clear('no-config')
      const p = await standby.sup.waitLog(`${standby.name} promoted`, promoted)
      t.equal(p.epoch, 3)
      await waitUntil(`${standby.name} api up`, () => accepting(standby.api))
      await check(t)
    },
  )

  t.test(
    'a node whose shared dir is an empty directory (not mounted) refuses to start',
    async (t) => {
      const empty = tempDir(t)
      const dir = tempDir(t)
      const config = writeConfig(
        dir,
        {
          web: fixture({ port: 25661 }),
          api: fixture({ port: 25662, runOn: 'active' }),
        },
        { node: 'x', ha: { ...HA, sharedDir: empty }, control: { http: { port: 25660 } } },
      )
      const sup = new Supervisor(config)
      t.teardown(() => sup.kill())
      await waitUntil(
        'x to exit',
        () => sup.proc.exitCode !== null || sup.proc.signalCode !== null,
        30_000,
      )
      await sup.ended
      const { code } = await sup.exited
      t.not(code, 0, 'non-zero exit')
      const said = [...sup.stderr, ...sup.records.map((r) => r.msg)].join('\n')
      t.match(said, /config\.json/, 'names config.json')
      t.match(said, /not mounted/, 'says the storage may not be mounted')
      t.equal(
        sup.count((r) => r.event === 'spawned'),
        0,
        'no child spawned',
      )
      t.notOk(await accepting(25661), 'web not started')
      t.notOk(await accepting(25662), 'api not started')
      t.same(readdirSync(empty), [], 'nothing created in the empty dir')
      t.comment(said.split('\n')[0] ?? '')
    },
  )
}
