import { z } from 'zod'
import { configSchema } from './schema.js'

/** The JSON Schema (draft 2020-12) of the config file, as written to `config.schema.json`. */
export const configJsonSchema = (): string =>
  JSON.stringify(
    { title: 'tandem configuration', ...z.toJSONSchema(configSchema, { io: 'input' }) },
    null,
    2,
  )
