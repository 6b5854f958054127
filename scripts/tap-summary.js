// tap reporter: passes raw TAP through unchanged and ends with one plain line
// `N passed, N failed` (plus `, N skipped` when any were), counted from tap's own results, so
// that CI and people read the same totals. Counted are the assertions at every depth; a subtest
// (or a whole test file) that failed without a failing assertion of its own (a crash, a timeout,
// a missing plan) counts as one failure.
// Used as `tap --reporter=./scripts/tap-summary.js` (tap loads a default-exported stream class).
import { Transform } from 'node:stream'
import { Parser } from 'tap-parser'

export default class TapSummary extends Transform {
  constructor() {
    super()
    this.counts = { pass: 0, fail: 0, skip: 0 }
    this.parser = new Parser()
    this.#watch(this.parser)
    this.parser.on('bailout', () => this.counts.fail++)
  }

  /** Follows one (sub)test's parser; returns its running count of failures. */
  #watch(parser) {
    const own = { fail: 0 }
    let lastChild
    parser.on('child', (child) => (lastChild = this.#watch(child)))
    parser.on('assert', (a) => {
      if (a.closingTestPoint) {
        const inner = lastChild?.fail ?? 0
        own.fail += inner
        if (!a.ok && !a.todo && !a.skip && inner === 0) {
          this.counts.fail++
          own.fail++
        }
        lastChild = undefined
      } else if (a.skip || a.todo) this.counts.skip++
      else if (a.ok) this.counts.pass++
      else {
        this.counts.fail++
        own.fail++
      }
    })
    return own
  }

  _transform(chunk, _enc, cb) {
    this.parser.write(chunk)
    cb(null, chunk)
  }

  _flush(cb) {
    this.parser.end()
    const { pass, fail, skip } = this.counts
    cb(null, `\n${pass} passed, ${fail} failed${skip ? `, ${skip} skipped` : ''}\n`)
  }
}
