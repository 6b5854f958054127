/**
 * Keeps a long-running thread's memory level. V8 runs a full (mark-compact) collection only when
 * its old generation reaches a limit that its heuristics keep raising while the program
 * allocates; between those collections a supervisor that logs and restarts promotes what
 * survives its young generation into more and more old-generation pages, and a full collection
 * that comes late frees the objects but keeps the pages, partly used, committed. So a busy
 * supervisor's RSS rose for about 20 minutes before it levelled (bench:footprint's soak: +15
 * MB; the same soak with a full collection before each sample stayed level from the first
 * minute). HeapTrim looks at the thread's heap once a minute and runs a full collection itself
 * when what is in use (objects in the heap, live or not yet collected, and the external memory
 * of Buffers) has grown by more than `growthBytes` since the last collection it saw: the heap
 * then never needs more pages than its live objects and that margin. An idle thread allocates
 * next to nothing, so it hardly ever collects; a busy one at most once per interval, a few
 * milliseconds each.
 *
 * The collector is V8's `gc` function, made reachable the way Jest's leak detector does it:
 * `--expose-gc` set at run time and `gc` taken from a new context. The flag is left set (it is
 * process-wide: resetting it in one thread could hide `gc` from another thread taking it at the
 * same moment; it only puts a `gc` function in contexts created later, and tandem creates none).
 * Each thread (the main one, the log thread) has its own heap and runs its own HeapTrim.
 */
import { getHeapStatistics, setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

export interface HeapTrimOptions {
  /** How often the heap is looked at. */
  everyMs?: number
  /** Growth since the last full collection that brings on the next one. */
  growthBytes?: number
  /** What is in use now: heap objects plus external memory (tests pass their own). */
  inUse?: () => number
  /** Runs a full collection (tests pass their own); null: none can be run here. */
  collect?: (() => void) | null
}

export const HEAP_TRIM_EVERY_MS = 60_000
export const HEAP_TRIM_GROWTH_BYTES = 4 * 1024 * 1024

/**
 * What this thread's heap has in use (objects, live or garbage not yet collected) plus its
 * external memory (Buffers, ArrayBuffers). Not what V8 has committed: a collection frees objects
 * but keeps their pages, so a trigger on committed memory would let it ratchet up.
 */
export const inUseBytes = (): number => {
  const s = getHeapStatistics() as ReturnType<typeof getHeapStatistics> & {
    external_memory?: number
  }
  return s.used_heap_size + (s.external_memory ?? 0)
}

let collector: (() => void) | null | undefined

/** V8's full collection for this thread, or null where it cannot be reached. */
export const fullCollection = (): (() => void) | null => {
  if (collector !== undefined) return collector
  const exposed = (globalThis as { gc?: () => void }).gc
  if (typeof exposed === 'function') return (collector = () => exposed())
  try {
    setFlagsFromString('--expose-gc')
    const gc = runInNewContext('gc') as unknown
    collector = typeof gc === 'function' ? () => (gc as () => void)() : null
  } catch {
    collector = null
  }
  return collector
}

export class HeapTrim {
  readonly #everyMs: number
  readonly #growth: number
  readonly #inUse: () => number
  readonly #collect: (() => void) | null
  #floor: number
  #timer: NodeJS.Timeout | undefined
  #collections = 0

  constructor(options: HeapTrimOptions = {}) {
    this.#everyMs = options.everyMs ?? HEAP_TRIM_EVERY_MS
    this.#growth = options.growthBytes ?? HEAP_TRIM_GROWTH_BYTES
    this.#inUse = options.inUse ?? inUseBytes
    this.#collect = options.collect === undefined ? fullCollection() : options.collect
    this.#floor = this.#inUse()
  }

  /** Whether its timer runs (never where no collection can be run). */
  get started(): boolean {
    return this.#timer !== undefined
  }

  /** Full collections run so far. */
  get collections(): number {
    return this.#collections
  }

  /** Looks at the heap every `everyMs`, on a timer that never keeps the thread alive. */
  start(): this {
    if (this.#timer || !this.#collect) return this
    this.#timer = setInterval(() => this.check(), this.#everyMs)
    this.#timer.unref()
    return this
  }

  stop(): void {
    clearInterval(this.#timer)
    this.#timer = undefined
  }

  /**
   * One look: a full collection when what is in use has grown by more than `growthBytes` over
   * the lowest it has been since the last one. Returns whether it collected.
   */
  check(): boolean {
    if (!this.#collect) return false
    const inUse = this.#inUse()
    if (inUse < this.#floor) this.#floor = inUse
    if (inUse - this.#floor <= this.#growth) return false
    this.#collect()
    this.#collections++
    this.#floor = this.#inUse()
    return true
  }
}
