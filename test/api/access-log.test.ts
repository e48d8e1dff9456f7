import { Writable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { httpProblems, Refusal } from '../../src/contracts/problems.ts'
import { createHttpServer } from '../../src/platform/http/server.ts'
import { createLogger } from '../../src/platform/logger.ts'

/** A server with one route that answers and one that refuses, logging JSON at `level` into the returned lines. */
async function serverLogging(level: string, logEveryRequest: boolean | undefined) {
  const lines: Record<string, any>[] = []
  const sink = new Writable({
    write: (chunk, _encoding, done) => {
      for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line))
      done()
    }
  })
  const app = await createHttpServer({
    logger: createLogger(level, 'test', 'json', sink),
    bodyLimitBytes: 1024,
    title: 't',
    description: 'd',
    readinessChecks: {},
    logEveryRequest
  })
  app.get('/fine', () => ({ ok: true }))
  app.get('/refused', () => {
    throw new Refusal(httpProblems.forbidden, 'no')
  })
  return { app, lines }
}

describe('the access log', () => {
  it('has one line per request, with the method, the URL, the status and the time taken, at info by default', async () => {
    const { app, lines } = await serverLogging('info', undefined)
    await app.inject({ method: 'GET', url: '/fine' })
    expect(lines).toEqual([
      expect.objectContaining({
        level: 30,
        msg: 'request completed',
        req: expect.objectContaining({ method: 'GET', url: '/fine' }),
        res: { statusCode: 200 }
      })
    ])
    expect(lines[0]!.responseTime).toEqual(expect.any(Number))
    await app.close()
  })

  it('for a person (the local stack), says only refusals and failures at info, the rest at debug', async () => {
    const { app, lines } = await serverLogging('info', false)
    await app.inject({ method: 'GET', url: '/fine' })
    await app.inject({ method: 'GET', url: '/refused' })
    await app.inject({ method: 'GET', url: '/nowhere' })
    expect(lines.filter((line) => line.msg === 'request completed').map((line) => [line.req.url, line.res.statusCode])).toEqual([
      ['/refused', 403],
      ['/nowhere', 404]
    ])
    await app.close()
    const debug = await serverLogging('debug', false)
    await debug.app.inject({ method: 'GET', url: '/fine' })
    expect(debug.lines).toEqual([expect.objectContaining({ level: 20, msg: 'request completed', res: { statusCode: 200 } })])
    await debug.app.close()
  })
})
