// Writes config.schema.json from the zod schema (run after `npm run build`).
import { writeFileSync } from 'node:fs'
import { configJsonSchema } from '../dist/config/json-schema.js'
writeFileSync(new URL('../config.schema.json', import.meta.url), configJsonSchema() + '\n')
