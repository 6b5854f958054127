#!/usr/bin/env node
// Thin launcher: the program lives in dist/cli/main.js (built by `npm run build`).
import { main } from '../dist/cli/main.js'
// Exit explicitly: a command is over when main resolves, whatever handle a library left open.
process.exit(await main(process.argv))
