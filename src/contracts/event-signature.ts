import { type KeyObject, sign, verify } from 'node:crypto'
import { canonicalJson } from './canonical-json.ts'

// Ties a customer event to the CIF service. Anyone who can produce to cif.customer.events could otherwise
// publish a well-formed event for a customer the CIF service never made, and the syncer would deliver it
// to every end system. The CIF service signs each event with an Ed25519 key of its own; the syncer
// delivers only events signed by a key it trusts.
//
// What is signed: the canonical JSON (canonical-json.ts: keys sorted at every depth, no whitespace) of
// the whole event as published, every attribute and `data`, `signaturekey` included, `signature` left out,
// as UTF-8 bytes. Canonical, so that the event read back from any store verifies, whatever order its
// keys come in.

/** The two CloudEvents extension attributes a signed event carries (names of lower-case letters and digits, as the spec asks). */
export interface EventSignature {
  /** The id of the key that signed the event, so that keys can rotate: the syncer trusts several at once. */
  signaturekey: string
  /** The Ed25519 signature, 64 bytes in base64url (unpadded). */
  signature: string
}

/** A key id: what SYNCER_EVENT_KEYS names each trusted key by, and what `signaturekey` carries. */
export const SIGNING_KEY_ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'
/** An Ed25519 signature is 64 bytes: 86 characters of base64url. */
export const SIGNATURE_PATTERN = '^[A-Za-z0-9_-]{85}[AQgw]$'
const signaturePattern = new RegExp(SIGNATURE_PATTERN)

/** The CIF service's signing key (Ed25519) and the id the syncer knows its public half by. */
export interface EventSigningKey {
  keyId: string
  privateKey: KeyObject
}

/** The public keys the syncer accepts events from, by key id (Ed25519). */
export type TrustedEventKeys = ReadonlyMap<string, KeyObject>

/** The bytes a signature covers: the event without `signature`, as canonical JSON. */
function signedBytes(unsigned: object): Buffer {
  return Buffer.from(canonicalJson(unsigned), 'utf8')
}

/** The event with `signaturekey` and `signature` added: signed as it will be published. */
export function signEvent<T extends object>(event: T, key: EventSigningKey): T & EventSignature {
  const { signature: _replaced, ...rest } = event as T & Partial<EventSignature>
  const unsigned = { ...rest, signaturekey: key.keyId }
  return { ...unsigned, signature: sign(null, signedBytes(unsigned), key.privateKey).toString('base64url') } as T & EventSignature
}

export type SignatureCheck = { signed: true; keyId: string } | { signed: false; reason: string }

/**
 * Whether a trusted key signed this event (as JSON.parse gave it) exactly as it is. The reason, when
 * not, is in words and never quotes the event, only the key id it names.
 */
export function checkEventSignature(event: unknown, trusted: TrustedEventKeys): SignatureCheck {
  const refused = (why: string): SignatureCheck => ({ signed: false, reason: `not signed by the CIF service: ${why}` })
  if (typeof event !== 'object' || event === null || Array.isArray(event)) return refused('it is not an event')
  const { signature, ...unsigned } = event as Record<string, unknown>
  const keyId = unsigned.signaturekey
  if (typeof signature !== 'string')
    return refused(keyId === undefined ? 'it carries no signature' : 'it names a signing key but carries no signature')
  if (typeof keyId !== 'string') return refused('it does not name the key that signed it (signaturekey)')
  const key = trusted.get(keyId)
  if (!key) return refused(`it names key ${JSON.stringify(keyId.slice(0, 64))}, which is not a trusted key of the CIF service`)
  // base64url decoding skips what it cannot read: only the one spelling of 64 bytes is a signature.
  if (!signaturePattern.test(signature)) return refused('its signature is not an Ed25519 signature in base64url')
  let valid: boolean
  try {
    valid = verify(null, signedBytes(unsigned), key, Buffer.from(signature, 'base64url'))
  } catch (error) {
    // A message nested too deep to write out, say: one hostile message must not stop the topic.
    return refused(`its signature cannot be checked (${error instanceof Error ? error.message.slice(0, 100) : 'unknown error'})`)
  }
  return valid
    ? { signed: true, keyId }
    : refused(`its signature does not match it under key ${JSON.stringify(keyId)} (changed after it was signed, or signed by another key)`)
}
