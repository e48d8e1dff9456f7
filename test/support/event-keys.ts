import { generateKeyPairSync, type KeyObject } from 'node:crypto'
import type { EventSigningKey, TrustedEventKeys } from '../../src/contracts/event-signature.ts'
import { loadConfig, requireEventSigningKey, requireTrustedEventKeys } from '../../src/platform/config.ts'

const development = loadConfig({})
/** The development key the CIF service signs with when CIF_EVENT_SIGNING_KEY is unset, as every test service does. */
export const devSigningKey: EventSigningKey = requireEventSigningKey(development)
/** What the syncer trusts when SYNCER_EVENT_KEYS is unset: the development key only. */
export const devTrustedKeys: TrustedEventKeys = requireTrustedEventKeys(development)

/** A key pair of its own, under `keyId`: a key nobody trusts until a test says so. */
export function newEventKeyPair(keyId: string): { signingKey: EventSigningKey; publicKey: KeyObject; spkiBase64: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  return { signingKey: { keyId, privateKey }, publicKey, spkiBase64: publicKey.export({ type: 'spki', format: 'der' }).toString('base64') }
}
