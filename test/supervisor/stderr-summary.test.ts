// The one-line stderr summary `tandem upgrade` shows when a new instance does not come up.
import t from 'tap'
import { stderrSummary } from '../../src/supervisor/rollout.js'

t.test('the last lines, without blanks and stack frames', async (t) => {
  t.equal(stderrSummary(['a', '', 'b', '    at f (x.js:1:1)', 'c']), 'a | b | c')
  t.equal(stderrSummary(['1', '2', '3', '4', '5', '6', '7']), '3 | 4 | 5 | 6 | 7')
})

t.test(
  "the first error line is kept when a crash's stack pushed it out of the last lines",
  async (t) => {
    const node = [
      'node:internal/modules/cjs/loader:1228',
      '  throw err;',
      '  ^',
      '',
      "Error: Cannot find module '/srv/app/server.js'",
      '    at Module._resolveFilename (node:internal/modules/cjs/loader:1225:15)',
      '    at Module._load (node:internal/modules/cjs/loader:1051:27)',
      '  {',
      "  code: 'MODULE_NOT_FOUND',",
      '  requireStack: []',
      '}',
      '',
      'Node.js v20.20.2',
    ]
    t.equal(
      stderrSummary(node),
      "Error: Cannot find module '/srv/app/server.js' | ... | code: 'MODULE_NOT_FOUND', | requireStack: [] | } | Node.js v20.20.2",
    )
    t.equal(stderrSummary(['fatal: bad', 'x', 'y'], 2), 'fatal: bad | ... | y')
    t.equal(
      stderrSummary(['Error: one', 'Error: two', 'z'], 2),
      'Error: two | z',
      'an error among the last',
    )
  },
)
