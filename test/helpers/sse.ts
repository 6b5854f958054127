import { request, type IncomingMessage } from 'node:http'

/** One Server-Sent Events message as a client parses it. */
export interface SseMessage {
  event: string
  id?: string
  retry?: number
  data: unknown
}

/**
 * A Server-Sent Events client on its own connection: `messages` fills as they arrive (data
 * parsed as JSON). `close()` ends the connection.
 */
export const sseClient = (
  port: number,
  path = '/events',
  headers: Record<string, string> = {},
): Promise<{ res: IncomingMessage; messages: SseMessage[]; close: () => void }> =>
  new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers, agent: false }, (res) => {
      const messages: SseMessage[] = []
      let buf = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => {
        buf += chunk
        let end
        while ((end = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, end)
          buf = buf.slice(end + 2)
          const m: SseMessage = { event: 'message', data: undefined }
          for (const line of block.split('\n')) {
            const i = line.indexOf(': ')
            const [k, v] = i < 0 ? [line, ''] : [line.slice(0, i), line.slice(i + 2)]
            if (k === 'event') m.event = v
            else if (k === 'id') m.id = v
            else if (k === 'data') m.data = JSON.parse(v)
            else if (k === 'retry') m.retry = Number(v)
          }
          messages.push(m)
        }
      })
      res.on('error', () => {})
      resolve({ res, messages, close: () => req.destroy() })
    })
    req.on('error', reject)
    req.end()
  })

/** Page actions that do nothing: for tests of the page's stream, not of its actions. */
export const noActions = () => ({
  restart: async () => ({}),
  stop: async () => ({}),
  start: async () => ({}),
  switchover: async () => ({}),
})
