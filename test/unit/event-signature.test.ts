import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { Customer } from '../../src/contracts/customer.ts'
import { type CustomerEvent, customerEvent, customerEventTypes } from '../../src/contracts/customer-events.ts'
import { checkEventSignature, signEvent, type TrustedEventKeys } from '../../src/contracts/event-signature.ts'
import { devSigningKey, devTrustedKeys, newEventKeyPair } from '../support/event-keys.ts'

const customer: Customer = {
  cifId: '10000000009',
  version: 2,
  legalForm: 'PERSON',
  firstName: 'Ada',
  middleName: 'King',
  lastName: 'Lovelace',
  dateOfBirth: '1985-12-10',
  mobileNumber: '+6591234567',
  email: 'ada@example.com',
  identifiers: [
    { type: 'NATIONAL_ID', value: 'S1234567D', issuingCountry: 'SG' },
    { type: 'PASSPORT', value: 'K1234567', issuingCountry: 'GB' }
  ],
  addresses: [{ type: 'HOME', line1: '12 St James’s Square', city: 'London', postalCode: 'SW1Y 4JH', country: 'GB' }],
  branchCode: 'LDN01',
  externalId: 'bp-42',
  sourceSystem: 'branch-portal',
  createdAt: '2026-11-25T10:00:00.000Z',
  updatedAt: '2026-11-26T09:30:00.000Z'
}

const signed = (key = devSigningKey): CustomerEvent => customerEvent(customerEventTypes.updated, customer, 'branch-portal', key, ['email'])
/** The event as the syncer gets it: JSON off the topic. */
const wire = (event: unknown): unknown => JSON.parse(JSON.stringify(event))

/** Every path to a value (leaf, array or object) inside `value`, `data` itself included. */
function pathsIn(value: unknown, path: (string | number)[] = []): (string | number)[][] {
  if (value === null || typeof value !== 'object') return [path]
  const children = Array.isArray(value) ? value.map((_, i) => i) : Object.keys(value)
  return [path, ...children.flatMap((child) => pathsIn((value as Record<string | number, unknown>)[child], [...path, child]))]
}

/** A copy of `event` with the value at `path` replaced by another of the same kind. */
function changedAt(event: unknown, path: (string | number)[]): unknown {
  const copy = structuredClone(event) as Record<string | number, unknown>
  const parent = path.slice(0, -1).reduce<Record<string | number, unknown>>((at, step) => at[step] as Record<string | number, unknown>, copy)
  const last = path.at(-1)!
  const value = parent[last]
  parent[last] =
    typeof value === 'string'
      ? `${value}x`
      : typeof value === 'number'
        ? value + 1
        : typeof value === 'boolean'
          ? !value
          : Array.isArray(value)
            ? [...value, value[0] ?? null]
            : value === null
              ? 0
              : { ...value, added: 'by someone' }
  return copy
}

describe('signing customer events', () => {
  it('signs every event the CIF service builds, naming the key, and the signature verifies as published', () => {
    const event = signed()
    expect(event.signaturekey).toBe(devSigningKey.keyId)
    expect(event.signature).toMatch(/^[A-Za-z0-9_-]{86}$/)
    expect(checkEventSignature(wire(event), devTrustedKeys)).toEqual({ signed: true, keyId: devSigningKey.keyId })
  })

  it('verifies whatever order the keys come back in (a jsonb column, another client)', () => {
    const event = wire(signed()) as Record<string, unknown>
    fc.assert(
      fc.property(fc.compareFunc(), (compare) => {
        const reorder = (value: unknown): unknown =>
          Array.isArray(value)
            ? value.map(reorder)
            : value !== null && typeof value === 'object'
              ? Object.fromEntries(
                  Object.keys(value)
                    .sort(compare)
                    .map((key) => [key, reorder((value as Record<string, unknown>)[key])])
                )
              : value
        expect(checkEventSignature(reorder(event), devTrustedKeys)).toMatchObject({ signed: true })
      })
    )
  })

  it('refuses an event with any field of its data changed, added to or taken away', () => {
    const event = wire(signed()) as { data: Record<string, unknown> }
    const paths = pathsIn(event.data).map((path) => ['data', ...path])
    expect(paths.length).toBeGreaterThan(25)
    for (const path of paths) {
      expect(checkEventSignature(changedAt(event, path), devTrustedKeys), path.join('/')).toEqual({
        signed: false,
        reason: `not signed by the CIF service: its signature does not match it under key "${devSigningKey.keyId}" (changed after it was signed, or signed by another key)`
      })
    }
    for (const field of Object.keys(event.data)) {
      const { [field]: _gone, ...rest } = event.data
      expect(checkEventSignature({ ...event, data: rest }, devTrustedKeys), `without ${field}`).toMatchObject({ signed: false })
    }
  })

  it('refuses an event with any attribute of its envelope changed', () => {
    const event = wire(signed()) as Record<string, unknown>
    for (const attribute of Object.keys(event).filter((a) => a !== 'data' && a !== 'signature' && a !== 'signaturekey')) {
      expect(checkEventSignature(changedAt(event, [attribute]), devTrustedKeys), attribute).toMatchObject({ signed: false })
    }
    expect(checkEventSignature({ ...event, extra: 'attribute' }, devTrustedKeys)).toMatchObject({ signed: false })
  })

  it('refuses the signature of another event', () => {
    const event = signed()
    const other = customerEvent(customerEventTypes.updated, { ...customer, email: 'someone@example.com' }, 'branch-portal', devSigningKey, ['email'])
    expect(checkEventSignature(wire({ ...event, signature: other.signature }), devTrustedKeys)).toMatchObject({
      signed: false,
      reason: expect.stringMatching(/^not signed by the CIF service: its signature does not match it/)
    })
    // Even the same change signed again: the event id and its signature go together.
    const again = signed()
    expect(checkEventSignature(wire({ ...event, signature: again.signature }), devTrustedKeys)).toMatchObject({ signed: false })
  })

  it('refuses an event signed with a key the syncer does not know', () => {
    const stranger = newEventKeyPair('stranger-1')
    expect(checkEventSignature(wire(signed(stranger.signingKey)), devTrustedKeys)).toEqual({
      signed: false,
      reason: 'not signed by the CIF service: it names key "stranger-1", which is not a trusted key of the CIF service'
    })
    // Signed with another key under the trusted key's id: the id alone proves nothing.
    const impostor = signed({ keyId: devSigningKey.keyId, privateKey: stranger.signingKey.privateKey })
    expect(checkEventSignature(wire(impostor), devTrustedKeys)).toMatchObject({
      signed: false,
      reason: expect.stringMatching(/does not match it under key "local-development"/)
    })
  })

  it('refuses an event without a signature, or with one that is not an Ed25519 signature', () => {
    const { signature, signaturekey, ...unsigned } = signed()
    expect(checkEventSignature(wire(unsigned), devTrustedKeys)).toEqual({
      signed: false,
      reason: 'not signed by the CIF service: it carries no signature'
    })
    expect(checkEventSignature(wire({ ...unsigned, signaturekey }), devTrustedKeys)).toMatchObject({
      reason: 'not signed by the CIF service: it names a signing key but carries no signature'
    })
    expect(checkEventSignature(wire({ ...unsigned, signature }), devTrustedKeys)).toMatchObject({
      reason: 'not signed by the CIF service: it does not name the key that signed it (signaturekey)'
    })
    for (const notOne of ['', 'x', `${signature}A`, `${signature.slice(0, 85)}B`, Buffer.from(signature, 'base64url').toString('base64')]) {
      expect(checkEventSignature(wire({ ...unsigned, signaturekey, signature: notOne }), devTrustedKeys), notOne).toEqual({
        signed: false,
        reason: 'not signed by the CIF service: its signature is not an Ed25519 signature in base64url'
      })
    }
    expect(checkEventSignature('a string', devTrustedKeys)).toMatchObject({ signed: false })
    expect(checkEventSignature([signed()], devTrustedKeys)).toMatchObject({ signed: false })
  })

  it('says why without quoting the event', () => {
    const event = wire(signed()) as { data: Record<string, unknown> }
    const check = checkEventSignature(changedAt(event, ['data', 'lastName']), devTrustedKeys)
    expect(check.signed).toBe(false)
    expect(JSON.stringify(check)).not.toMatch(/Lovelace|ada@example|S1234567D/)
  })

  it('does not stop at a message nested too deep to check: it is refused, with the reason', () => {
    let deep: unknown = 'bottom'
    for (let i = 0; i < 100_000; i++) deep = [deep]
    const event = { ...(wire(signed()) as object), data: deep }
    expect(checkEventSignature(event, devTrustedKeys)).toMatchObject({
      signed: false,
      reason: expect.stringMatching(/^not signed by the CIF service: its signature cannot be checked/)
    })
  })

  it('signs over a signature already there, so that a re-signed event carries one signature only', () => {
    const stranger = newEventKeyPair('stranger-2')
    const resigned = signEvent(signed(stranger.signingKey), devSigningKey)
    expect(resigned.signaturekey).toBe(devSigningKey.keyId)
    expect(checkEventSignature(wire(resigned), devTrustedKeys)).toMatchObject({ signed: true })
  })
})

describe('key rotation', () => {
  const old = newEventKeyPair('cif-2026-01')
  const next = newEventKeyPair('cif-2026-07')
  const both: TrustedEventKeys = new Map([
    [old.signingKey.keyId, old.publicKey],
    [next.signingKey.keyId, next.publicKey]
  ])

  it('accepts events signed with either trusted key, each under its own id', () => {
    expect(checkEventSignature(wire(signed(old.signingKey)), both)).toEqual({ signed: true, keyId: 'cif-2026-01' })
    expect(checkEventSignature(wire(signed(next.signingKey)), both)).toEqual({ signed: true, keyId: 'cif-2026-07' })
  })

  it('refuses an event of one trusted key relabelled as the other’s', () => {
    const relabelled = { ...(wire(signed(old.signingKey)) as object), signaturekey: next.signingKey.keyId }
    expect(checkEventSignature(relabelled, both)).toMatchObject({ signed: false })
  })

  it('refuses the old key’s events once it is dropped', () => {
    const newOnly: TrustedEventKeys = new Map([[next.signingKey.keyId, next.publicKey]])
    expect(checkEventSignature(wire(signed(old.signingKey)), newOnly)).toMatchObject({
      signed: false,
      reason: expect.stringMatching(/names key "cif-2026-01", which is not a trusted key/)
    })
    expect(checkEventSignature(wire(signed(next.signingKey)), newOnly)).toMatchObject({ signed: true })
  })
})
