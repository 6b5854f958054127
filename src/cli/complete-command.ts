/**
 * The hidden command the completion scripts call back with the words being typed (see
 * completion.ts). Apart from it so that the CLI recognizes it without loading completion.ts,
 * which loads the config schema.
 */
export const COMPLETE_COMMAND = '__complete'
