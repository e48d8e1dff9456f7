import { personalData } from '../../contracts/customer.ts'

/**
 * Masks a customer's personal data in text that leaves the syncer's hands (an end system's error message
 * may echo the payload): the values of the customer's personal-data fields (contracts/customer.ts), then
 * anything shaped like an email or an international phone number. CIF IDs and record ids stay readable.
 */
export function maskPersonalData(text: string, customer: Record<string, unknown> | undefined): string {
  const values = new Set<string>()
  const add = (value: unknown): void => {
    if (typeof value === 'string' && value.trim().length >= 2) values.add(value.trim())
  }
  if (customer) {
    if (typeof customer.mobileNumber === 'string') add(customer.mobileNumber.replace(/^\+/, ''))
    for (const field of personalData.fields) {
      const value = customer[field]
      if (!Array.isArray(value)) add(value)
      else for (const item of value as Record<string, unknown>[]) for (const key of personalData.itemFields[field] ?? []) add(item?.[key])
    }
  }
  // PostgreSQL text cannot hold NUL, and JSON cannot hold half a surrogate pair: an answer with either
  // must still be storable.
  let masked = text.replaceAll('\u0000', '').toWellFormed()
  if (values.size) {
    // Whole words, any case: "TAN" in an echo is the customer "Tan"; "Li" inside "Lisbon" is not. One
    // pattern for all of them (longest first), since this runs on every attempt.
    const alternatives = [...values]
      .sort((a, b) => b.length - a.length)
      .map(escapeRegExp)
      .join('|')
    masked = masked.replace(new RegExp(`(?<![\\p{L}\\p{N}])(?:${alternatives})(?![\\p{L}\\p{N}])`, 'giu'), '***')
  }
  return masked.replace(/[\w.+-]+@[\w-]+(\.[\w-]+)+/g, '***@***').replace(/\+\d[\d ()-]{5,}\d/g, '***')
}

function escapeRegExp(value: string): string {
  return value.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}
