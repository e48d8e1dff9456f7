import { mkdirSync } from 'node:fs'
import AxeBuilder from '@axe-core/playwright'
import { type Browser, chromium, type Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { CifService } from '../../src/cif/service.ts'
import { type DatabaseHandle, openDatabase } from '../../src/platform/database/index.ts'
import type { Simulator } from '../../src/simulator/service.ts'
import type { Syncer } from '../../src/syncer/service.ts'
import type { TestDatabase } from '../support/database.ts'
import { call, connections, newPerson, startTestCifService } from './helpers.ts'
import { CORE_BANKING_TOKEN, deliveriesOf, eventually, operatorKey, startTestSimulator, startTestSyncer } from './syncer-helpers.ts'

// The operators' console in a real browser: Debian's Chromium driven by playwright-core, on the whole stack
// (CIF service, Kafka, syncer, simulated end systems). An operator signs in, sees a delivery fail while an end
// system is down, follows it to the customer's timeline and redrives it; every page passes axe-core's checks.
// With CONSOLE_SCREENSHOTS=<folder> (docs/console), each page is also photographed there for docs/console.md.

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const screenshots = process.env.CONSOLE_SCREENSHOTS

let database: DatabaseHandle<TestDatabase>
let cif: CifService
let simulator: Simulator
let syncer: Syncer
let browser: Browser
let page: Page
const browserErrors: string[] = []

beforeAll(async () => {
  database = openDatabase<TestDatabase>(connections().databaseUrl, { maxConnections: 2 })
  cif = await startTestCifService()
  simulator = await startTestSimulator()
  syncer = await startTestSyncer(simulator)
  // Earlier test files left customers on the topic: let the syncer deliver them before crm goes down, so that
  // the fault hits this file's customer.
  const warmUp = await call(cif.url, 'POST', '/v1/customers', { body: newPerson() })
  await eventually(
    () => deliveriesOf(database, warmUp.body.cifId),
    (rows) => rows.length === 3 && rows.every((r) => r.state === 'SUCCESS'),
    60_000
  )
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    // Playwright gives the browser a fresh profile of its own (a new --user-data-dir) on every launch. Without
    // the networking switches Chromium calls home, which on a closed network only floods it with retries.
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync'
    ]
  })
  page = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage()
  // Whatever the browser complains of (a script or style the Content-Security-Policy blocked, a failed load).
  page.on('console', (message) => {
    if (message.type() === 'error') browserErrors.push(message.text())
  })
  page.on('pageerror', (error) => browserErrors.push(error.message))
  if (screenshots) mkdirSync(screenshots, { recursive: true })
})
afterAll(async () => {
  await browser?.close()
  await syncer?.close()
  await simulator?.close()
  await cif?.close()
  await database?.close()
})

/** axe-core on the page as it is: no serious or critical violation of WCAG 2.1 A/AA or best practice. */
async function accessible(name: string): Promise<void> {
  const results = await new AxeBuilder({ page }).withTags(['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']).analyze()
  const serious = results.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
  expect(
    serious.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join('; ')})`),
    `${name}: serious accessibility violations`
  ).toEqual([])
  if (screenshots) await page.screenshot({ path: `${screenshots}/${name}.png`, fullPage: true })
}

const failedInCrm = async (): Promise<number> => Number(await page.locator('tr[data-end-system="crm"] td[data-state="FAILED"]').textContent())

describe('the console in Chromium', () => {
  it('refuses a wrong operator key, and signs in with the right one', async () => {
    await page.goto(`${syncer.url}/console/`)
    await expect.poll(() => page.url()).toContain('/console/sign-in')
    await accessible('sign-in')
    await page.getByLabel('Operator key').fill('not-the-operator-key')
    await page.getByRole('button', { name: 'Sign in' }).click()
    await expect.poll(() => page.locator('#sign-in-refused').textContent()).toContain('The API key is not known.')
    await page.getByLabel('Operator key').fill(operatorKey)
    // By keyboard: Enter in the field submits the form.
    await page.getByLabel('Operator key').press('Enter')
    await page.waitForURL('**/console/overview')
    expect(await page.locator('header').textContent()).toContain('test-operator')
    expect((await page.context().cookies()).find((c) => c.name === 'cif_console_session')).toMatchObject({ httpOnly: true, sameSite: 'Strict' })
  })

  let cifId: string
  let crmDelivery: string

  it('shows a failed delivery appear on the overview, live, while crm is down', async () => {
    await accessible('overview')
    const before = await failedInCrm()
    await simulator.systems.get('crm')!.setFault({ mode: 'down' })
    const created = await call(cif.url, 'POST', '/v1/customers', { body: newPerson() })
    expect(created.status).toBe(201)
    cifId = created.body.cifId
    // No reload: the page's own polling brings the count in.
    await expect.poll(failedInCrm, { timeout: 30_000, interval: 500 }).toBe(before + 1)
  })

  it('lists it on the deliveries page and opens the customer timeline', async () => {
    await page.getByRole('link', { name: 'Deliveries' }).click()
    await page.getByLabel('State').selectOption('FAILED')
    await page.getByLabel('End system').selectOption('crm')
    await page.getByLabel('CIF ID').fill(cifId)
    await page.getByRole('button', { name: 'Filter' }).click()
    await page.waitForURL(/state=FAILED/)
    const row = page.locator('#deliveries tbody tr')
    await expect.poll(() => row.count()).toBe(1)
    crmDelivery = (await row.getAttribute('data-delivery-id'))!
    await accessible('deliveries')

    await row.getByRole('link', { name: cifId }).click()
    await page.waitForURL(`**/console/customers/${cifId}`)
    const crm = page.locator('section[data-end-system="crm"]')
    expect(await crm.locator(`[data-delivery-state="${crmDelivery}"]`).textContent()).toBe('FAILED')
    expect(await crm.locator('table.attempts').textContent()).toContain('crm refused the connection (is it down?)')
    expect(await page.locator('#versions').textContent()).toContain('cif.customer.created')
    expect(await page.locator('section[data-end-system="core-banking"]').textContent()).toContain('SUCCESS')
    await accessible('customer-timeline')
  })

  it('refuses a redrive posted without the form token (CSRF), even with the session cookie', async () => {
    const forged = await page.request.post(`${syncer.url}/console/deliveries/${crmDelivery}/redrive`, {
      form: { reason: 'no token' },
      maxRedirects: 0
    })
    expect(forged.status()).toBe(403)
  })

  it('redrives it once crm is back, and the timeline shows it succeed', async () => {
    await simulator.systems.get('crm')!.setFault({ mode: 'none' })
    await page.getByRole('link', { name: `delivery ${crmDelivery}` }).click()
    await page.waitForURL(`**/console/deliveries/${crmDelivery}`)
    await accessible('delivery')
    await page.getByLabel('Reason', { exact: true }).first().fill('crm is back')
    await page.getByRole('button', { name: 'Redrive' }).click()
    await page.waitForURL(`**/console/customers/${cifId}`)
    await expect.poll(() => page.locator(`[data-delivery-state="${crmDelivery}"]`).textContent(), { timeout: 30_000, interval: 500 }).toBe('SUCCESS')
    expect(await page.locator('section[data-end-system="crm"] table.attempts').last().textContent()).toContain('crm accepted the create')
  })

  it('records the redrive in the action log, and shows the end systems without their secrets', async () => {
    await page.getByRole('link', { name: 'Actions' }).click()
    await page.waitForURL('**/console/actions')
    const log = await page.locator('#action-log').textContent()
    expect(log).toContain('REDRIVE')
    expect(log).toContain('crm is back')
    await accessible('actions')

    await page.getByRole('link', { name: 'End systems' }).click()
    await page.waitForURL('**/console/end-systems')
    expect(await page.locator('main').textContent()).not.toContain(CORE_BANKING_TOKEN)
    await accessible('end-systems')
  })

  it('ran every page under the syncer’s Content-Security-Policy without the browser blocking or failing anything', () => {
    // The refused sign-in's 401 is the one answer the browser reports as a failed load.
    expect(browserErrors.filter((text) => !/status of 401/.test(text))).toEqual([])
  })
})
