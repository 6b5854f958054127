/**
 * Changes of what runs that take a while (operator restarts, rollouts) run one at a time, in
 * the order asked: a restart asked during a rollout waits for it, and the other way round, so
 * that they never interleave their stops. A change that fails does not stop the next one.
 */
export class ChangeQueue {
  #tail: Promise<unknown> = Promise.resolve()
  #waiting = 0

  /** Changes asked for and not finished (the one running included). */
  get pending(): number {
    return this.#waiting
  }

  run<T>(change: () => Promise<T>): Promise<T> {
    this.#waiting++
    const run = this.#tail.then(change, change).finally(() => this.#waiting--)
    this.#tail = run.catch(() => {})
    return run
  }
}
