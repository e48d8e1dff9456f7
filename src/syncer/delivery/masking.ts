import { decodeHTMLStrict } from 'entities'
import { personalData } from '../../contracts/customer.ts'

/**
 * Masks a customer's personal data in text that leaves the syncer's hands (an end system's answer may
 * echo the payload): the values of the customer's personal-data fields (contracts/customer.ts) in the
 * shapes an end system writes them in, then anything shaped like an email or an international phone
 * number. CIF IDs and record ids stay readable.
 *
 * The customer's values are looked for in a folded form of the text: letters and digits only, without
 * accents, in one case, with separators (spaces, hyphens, dots, slashes, parentheses…) left out but
 * remembered as word starts. "JOSE MULLER", "Jose\u0301 Müller" and "José Müller" fold alike, and so do
 * "+65 9123-4567" and "6591234567". A value is masked only as whole words: "Li" inside "Lisbon" is not.
 * Letters that do not decompose are read as their base letters (ø as o, ł as l, æ as ae), and names with
 * umlauts are also looked for as German writes them without (Müller as Mueller). HTML entities and
 * percent-encoding are decoded first: "M&uuml;ller" and "M%C3%BCller" are Müller.
 */
export type Masker = (text: string) => string

/**
 * The masker for one customer: what to look for is worked out here, once per attempt, so that masking
 * each text is only a search (it runs on every attempt, successes included). `otherVersions`: the
 * personal data of the customer's other versions, since an end system may answer with what it held
 * before (the name before a marriage, the last address).
 */
export function personalDataMasker(customer: Record<string, unknown> | undefined, otherVersions: readonly Record<string, unknown>[] = []): Masker {
  const versions = customer ? [customer, ...otherVersions] : otherVersions
  const needles = versions.length ? needlesOf(versions) : undefined
  return (text) => {
    let masked = decoded(storableText(text))
    // The customer's own values first: the shapes below would take their "+" or "@" and leave the rest.
    if (needles && (needles.plain.length || needles.groups.length)) masked = maskNeedles(masked, needles)
    if (masked.includes('@')) masked = masked.replace(EMAIL, '***@***')
    return masked.includes('+') ? masked.replace(INTERNATIONAL_NUMBER, '***') : masked
  }
}

/** One folded form of a personal value; `words`: found only when written in exactly so many ("1/2/85"). */
interface Needle {
  folded: string
  words?: number
  /** A phone number: its "+" and parentheses go with it. */
  phone?: boolean
}

/**
 * Needles that all contain `guard`: when the text does not, none of them needs looking for. `later` makes
 * them the first time the guard is found (the many forms of a date of birth are seldom needed).
 */
interface NeedleGroup {
  guard: string
  needles?: Needle[]
  later?: () => Needle[]
}

// PostgreSQL text cannot hold NUL, and JSON cannot hold half a surrogate pair: an answer with either must
// still be storable.
function storableText(text: string): string {
  const withoutNul = text.includes('\u0000') ? text.replaceAll('\u0000', '') : text
  return withoutNul.isWellFormed() ? withoutNul : withoutNul.toWellFormed()
}

const ENCODED = /&(?:#\d+|#x[0-9a-f]+|[a-z][a-z0-9]*);|%[0-9a-f]{2}/i
const PERCENT_ENCODED = /(?:%[0-9a-f]{2})+/gi

/**
 * The text with its HTML entities and percent-encoded bytes decoded (an HTML error page, a URL quoted
 * back): the customer's values are then found in it, and what is stored reads as the end system meant it.
 */
function decoded(text: string): string {
  if (!ENCODED.test(text)) return text
  const html = text.includes('&') ? decodeHTMLStrict(text) : text
  return html.replace(PERCENT_ENCODED, (bytes) => {
    try {
      return decodeURIComponent(bytes)
    } catch {
      return bytes
    }
  })
}

// The lookbehind starts a match only where an address starts: without it, a long run of word characters
// with no "@" costs time in the square of its length (answers are up to 64 KiB). A local part may be
// masked already ("***@elsewhere.example", the customer's name at another address).
const EMAIL = /(?<![\w.+*-])[\w.+*-]+@[\w-]+(?:\.[\w-]+)+/g
const INTERNATIONAL_NUMBER = /\+\d[\d ()-]{5,}\d/g

// ---- What to look for -------------------------------------------------------------------------------

/**
 * Words of an address line too common to say whose address it is: they stay readable on their own (the
 * whole line is masked all the same). One list, kept short; words under four letters are never masked
 * on their own anyway.
 */
const COMMON_ADDRESS_WORDS = new Set([
  'street',
  'road',
  'avenue',
  'lane',
  'drive',
  'court',
  'place',
  'square',
  'close',
  'crescent',
  'terrace',
  'boulevard',
  'highway',
  'floor',
  'level',
  'unit',
  'suite',
  'block',
  'building',
  'tower',
  'house',
  'flat',
  'apartment',
  'estate',
  'park',
  'garden',
  'gardens',
  'centre',
  'center',
  'north',
  'south',
  'east',
  'west',
  'jalan',
  'strasse'
])

const ADDRESS_LINES = new Set(['line1', 'line2', 'line3'])
const NAMES = new Set(['firstName', 'middleName', 'lastName'])
const MONTHS = ['january', 'february', 'march', 'april', 'may', 'june', 'july', 'august', 'september', 'october', 'november', 'december']

/** What to look for: values' folded forms (each its own guard), and groups of forms behind one guard. */
interface Needles {
  plain: string[]
  groups: NeedleGroup[]
}

function needlesOf(versions: readonly Record<string, unknown>[]): Needles {
  const plain: string[] = []
  const groups: NeedleGroup[] = []
  for (const customer of versions) addNeedles(customer, plain, groups)
  // Versions mostly share their values (a city in two addresses too): each is looked for once.
  return { plain: [...new Set(plain)], groups }
}

function addNeedles(customer: Record<string, unknown>, plain: string[], groups: NeedleGroup[]): void {
  for (const field of personalData.fields) {
    const value = customer[field]
    if (Array.isArray(value)) {
      for (const item of value as Record<string, unknown>[]) {
        for (const key of personalData.itemFields[field] ?? []) {
          const itemValue = item?.[key]
          if (typeof itemValue !== 'string') continue
          // "SW1Y 4JH" is also written "SW1Y4JH" (folding takes care of that); a street line's own words
          // ("James" of "12 St James Square") say where the customer lives on their own.
          addForms(itemValue, plain, field === 'addresses' && ADDRESS_LINES.has(key) ? 4 : 0, COMMON_ADDRESS_WORDS)
        }
      }
      continue
    }
    if (typeof value !== 'string') continue
    if (field === 'mobileNumber' && value.startsWith('+')) {
      const phone = phoneNeedles(value)
      if (phone) groups.push(phone)
      else addForms(value, plain)
    } else if (field === 'dateOfBirth') {
      const date = dateNeedles(value)
      if (date) groups.push(...date)
      else addForms(value, plain)
    } else if (field === 'email') {
      addForms(value, plain)
      // Its local part ("jose.muller") also stands on its own, when long enough to say whose it is.
      const at = value.lastIndexOf('@')
      if (at >= 4) addForms(value.slice(0, at), plain)
    } else {
      // "Mary Jane" is also just "Mary" in an answer.
      addForms(value, plain, NAMES.has(field) ? 3 : 0)
    }
  }
}

// E.164 country codes are prefix-free: these are the one- and two-digit ones, every other is three digits.
const COUNTRY_CODE = /^(?:[17]|2[07]|3[0-469]|4[013-9]|5[1-8]|6[0-6]|8[1246]|9[0-58]|\d{3})/

/**
 * A mobile number in E.164 ("+6591234567") as it is also written: with "00" or "011" for the "+", or
 * without the country code ("91234567", "091234567") when what is left is long enough to be a number of
 * its own (7 digits). Separators need nothing here: folding drops them.
 */
function phoneNeedles(e164: string): NeedleGroup | undefined {
  const digits = e164.replace(/\D/g, '')
  if (digits.length < 7) return undefined
  const national = digits.slice(COUNTRY_CODE.exec(digits)![0].length)
  const forms = [digits, `00${digits}`, `011${digits}`]
  if (national.length >= 7) forms.push(national, `0${national}`)
  return { guard: national.length >= 7 ? national : digits, needles: forms.map((folded) => ({ folded, phone: true })) }
}

/**
 * A date of birth (YYYY-MM-DD) in the formats an end system may answer with, folded: 1985-12-10 is also
 * 19851210, 10/12/1985, 12/10/1985, 10.12.85, 10 Dec 1985, 10th of December 1985 and December 10, 1985.
 * Every form holds the two-digit year, and those with the month's name its first three letters: the
 * cheap tests of whether to look at all.
 */
function dateNeedles(iso: string): NeedleGroup[] | undefined {
  const parts = /^(\d{4})-(\d{2})-(\d{2})$/.exec(iso.trim())
  if (!parts) return undefined
  const [, year, mm, dd] = parts as unknown as [string, string, string, string]
  const month = MONTHS[Number(mm) - 1]
  const day = Number(dd)
  if (!month || day < 1 || day > 31) return undefined
  return [
    { guard: year.slice(2), later: () => numericDates(year, mm, dd) },
    { guard: month.slice(0, 3), later: () => namedDates(year, dd, month) }
  ]
}

function numericDates(year: string, mm: string, dd: string): Needle[] {
  const day = Number(dd)
  const yy = year.slice(2)
  const needles = new Map<string, Needle>()
  // Unpadded numbers are so short once folded ("1/2/85" is "1285") that they count only as three words.
  const add = (folded: string, padded: boolean): void => {
    if (padded) needles.set(folded, { folded })
    else if (!needles.has(folded)) needles.set(folded, { folded, words: 3 })
  }
  for (const d of new Set([dd, String(day)])) {
    for (const m of new Set([mm, String(Number(mm))])) {
      const padded = d.length === 2 && m.length === 2
      // Year first (ISO, YYYYMMDD), day first (most of the world), month first (the United States).
      add(year + m + d, padded)
      add(d + m + year, padded)
      add(m + d + year, padded)
      add(d + m + yy, padded)
      add(m + d + yy, padded)
      add(yy + m + d, padded)
    }
  }
  return [...needles.values()]
}

function namedDates(year: string, dd: string, month: string): Needle[] {
  const day = Number(dd)
  const suffix = day % 10 === 1 && day !== 11 ? 'st' : day % 10 === 2 && day !== 12 ? 'nd' : day % 10 === 3 && day !== 13 ? 'rd' : 'th'
  const forms = new Set<string>()
  for (const name of new Set([month, month.slice(0, 3), ...(month === 'september' ? ['sept'] : [])])) {
    for (const d of new Set([dd, String(day), `${day}${suffix}`])) {
      // 10 Dec 1985, 10th of December 85, December 10th, 1985; and 1985-Dec-10.
      for (const y of [year, year.slice(2)]) {
        forms.add(d + name + y)
        forms.add(`${d}of${name}${y}`)
        forms.add(name + d + y)
      }
      forms.add(year + name + d)
    }
  }
  return [...forms].map((folded) => ({ folded }))
}

// ---- Folding -----------------------------------------------------------------------------------------

/**
 * A text folded for comparison: its letters and digits, without accents and in one case; separators
 * (light) are left out, and a stop that no value runs through (a quote, a brace, an equals sign: one
 * field of a JSON echo and the next) is a single space.
 */
interface Folded {
  chars: string
  /** For each of `chars`: where in the text the character it came from starts and ends. */
  from: Int32Array
  to: Int32Array
  /** For each of `chars`: 1 where a word starts (after a separator or a stop, or between digits and letters). */
  wordStart: Uint8Array
}

// What each ASCII character folds to: itself in lower case, ' ' for a separator, '\n' for a stop. The
// separators are what may stand between the parts of one value: "O'Brien", "+65 (9123) 4567",
// "10/12/1985", "December 10, 1985", "12, St. James Square #05-01", "crm:778812", "ada@example.com".
const SEPARATORS = " \t\n\r\f\v-./()+',_#&:@"
const ASCII_FOLD = Array.from({ length: 128 }, (_, code) => {
  const char = String.fromCharCode(code)
  if (/[A-Za-z0-9]/.test(char)) return char.toLowerCase()
  return SEPARATORS.includes(char) ? ' ' : '\n'
})

const IGNORED = /[\p{M}\p{Cf}]/u
const LETTER_OR_DIGIT = /[\p{L}\p{N}]/u
const SEPARATOR = /[\p{Zs}\p{Pd}\u2018\u2019\u00b7\u2044]/u
// Scripts written without spaces between words: each character is a word of its own, so that a name is
// found before the word that follows it ("王小明先生").
const UNSPACED = /[\p{sc=Han}\p{sc=Hiragana}\p{sc=Katakana}\p{sc=Thai}\p{sc=Lao}\p{sc=Khmer}\p{sc=Myanmar}]/u
const FOLDS = new Map<number, string>()
// Letters with a stroke or a ligature have no decomposition, but are written without it in ASCII.
const BASE_LETTERS: Record<string, string> = { ø: 'o', ł: 'l', đ: 'd', ð: 'd', ħ: 'h', ŧ: 't', æ: 'ae', œ: 'oe', þ: 'th' }

/** What a code point above ASCII folds to: compatibility decomposition, marks dropped, case folded (ß is ss). */
function foldCodePoint(codePoint: number): string {
  const cached = FOLDS.get(codePoint)
  if (cached !== undefined) return cached
  const char = String.fromCodePoint(codePoint)
  let folded = ''
  for (const part of char.normalize('NFKD')) {
    const code = part.charCodeAt(0)
    if (code < 0x80) folded += ASCII_FOLD[code]
    else if (IGNORED.test(part)) continue
    // Lower, upper, lower: "ẞ" → "ß" → "SS" → "ss", "ς" → "σ", "ı" → "i", as full case folding does.
    else if (LETTER_OR_DIGIT.test(part)) {
      const lower = part.toLowerCase().toUpperCase().toLowerCase().normalize('NFKD').replace(/\p{M}/gu, '')
      folded += BASE_LETTERS[lower] ?? lower
    } else folded += SEPARATOR.test(part) ? ' ' : '\n'
  }
  // Hangul: a syllable (or its leading consonant, when the text is decomposed) starts a word, since
  // Korean writes particles onto the name ("김민수는").
  if ((codePoint >= 0xac00 && codePoint <= 0xd7a3) || (codePoint >= 0x1100 && codePoint <= 0x115f) || (codePoint >= 0xa960 && codePoint <= 0xa97f)) {
    folded = ` ${folded}`
  } else if (UNSPACED.test(char)) folded = ` ${folded} `
  if (FOLDS.size >= 10_000) FOLDS.clear()
  FOLDS.set(codePoint, folded)
  return folded
}

const JSON_WHITESPACE_ESCAPES = 'nrtbf/'
const HEX4 = /^[0-9a-fA-F]{4}$/

// What kind of character each ASCII code is, for the fast path of fold().
const LETTER = 0
const DIGIT = 1
const SEPARATING = 2
const STOP = 3
const OTHER = 4
const ASCII_KIND = Uint8Array.from({ length: 128 }, (_, code) => {
  if (code === 0x5c) return OTHER
  const folded = ASCII_FOLD[code]!
  return folded === ' ' ? SEPARATING : folded === '\n' ? STOP : /\d/.test(folded) ? DIGIT : LETTER
})

let foldedUpTo = 0

/**
 * What the character at `at` (a code point, or a JSON escape) folds to; `foldedUpTo` is then where the
 * next one starts.
 */
function foldedAt(text: string, at: number): string {
  const code = text.charCodeAt(at)
  foldedUpTo = at + 1
  if (code < 0x80 && code !== 0x5c) return ASCII_FOLD[code]!
  if (code === 0x5c) {
    // An echoed JSON body writes "José" as "Jos\u00e9" (many encoders escape all but ASCII): read escapes
    // as what they stand for.
    const escaped = text[at + 1]
    if (escaped === 'u' && HEX4.test(text.slice(at + 2, at + 6))) {
      let codePoint = Number.parseInt(text.slice(at + 2, at + 6), 16)
      foldedUpTo = at + 6
      if (codePoint >= 0xd800 && codePoint <= 0xdbff && text.startsWith('\\u', at + 6) && HEX4.test(text.slice(at + 8, at + 12))) {
        const low = Number.parseInt(text.slice(at + 8, at + 12), 16)
        if (low >= 0xdc00 && low <= 0xdfff) {
          codePoint = 0x10000 + ((codePoint - 0xd800) << 10) + (low - 0xdc00)
          foldedUpTo = at + 12
        }
      }
      return codePoint < 0x80 ? ASCII_FOLD[codePoint]! : foldCodePoint(codePoint)
    }
    if (escaped === undefined) return '\n'
    foldedUpTo = at + 2
    return JSON_WHITESPACE_ESCAPES.includes(escaped) ? ' ' : '\n'
  }
  const codePoint = text.codePointAt(at)!
  if (codePoint > 0xffff) foldedUpTo = at + 2
  return foldCodePoint(codePoint)
}

/** A value folded for looking it up: `chars` of fold() alone, without the arrays a text needs. */
function foldedChars(value: string): string {
  let chars = ''
  let stopped = true
  for (let at = 0; at < value.length; at = foldedUpTo) {
    const folded = foldedAt(value, at)
    for (let k = 0; k < folded.length; k++) {
      const char = folded[k]!
      if (char === '\n') {
        if (!stopped) chars += ' '
        stopped = true
      } else if (char !== ' ') {
        chars += char
        stopped = false
      }
    }
  }
  return chars
}

const UTF16 = new TextDecoder('utf-16le')
// One set of buffers for every fold: allocating typed arrays costs more than filling them, and folding
// runs to completion (nothing else folds meanwhile), so a fold's arrays are good until the next fold.
let buffers = { codes: new Uint16Array(1024), from: new Int32Array(1024), to: new Int32Array(1024), wordStart: new Uint8Array(1024) }

/**
 * Folds `text`: this runs on whole answers (up to 64 KiB) whenever one may hold the customer's data.
 * Compatibility decomposition can make the folded text longer than the text ("ß" is "ss"): when it
 * outgrows the buffers, they grow and folding starts again. The arrays returned are good until the next
 * call.
 */
export function fold(text: string): Folded {
  if (buffers.codes.length < text.length + 64) growBuffers(text.length + 64)
  const { codes, from, to, wordStart } = buffers
  const capacity = codes.length
  let length = 0
  let separated = true
  let stopped = true
  let lastWasDigit = false
  for (let at = 0; at < text.length; ) {
    const code = text.charCodeAt(at)
    const kind = code < 0x80 ? ASCII_KIND[code]! : OTHER
    // Most text is plain ASCII: one character in, at most one out.
    if (kind === LETTER || kind === DIGIT) {
      const digit = kind === DIGIT
      codes[length] = digit ? code : code | 0x20
      from[length] = at
      to[length] = at + 1
      wordStart[length] = separated || digit !== lastWasDigit ? 1 : 0
      length++
      separated = false
      stopped = false
      lastWasDigit = digit
      at++
      continue
    }
    const folded = kind === SEPARATING ? ' ' : kind === STOP ? '\n' : foldedAt(text, at)
    const next = kind === SEPARATING || kind === STOP ? at + 1 : foldedUpTo
    // Room for what this character folds to, and for the rest of the text.
    if (length + folded.length + text.length - next >= capacity) {
      growBuffers(capacity * 2)
      return fold(text)
    }
    for (let k = 0; k < folded.length; k++) {
      const char = folded.charCodeAt(k)
      if (char === 0x20) separated = true
      else if (char === 0x0a) {
        separated = true
        if (stopped) continue
        codes[length] = 0x20
        from[length] = at
        to[length] = at
        wordStart[length] = 0
        length++
        stopped = true
      } else {
        const digit = char >= 0x30 && char <= 0x39
        codes[length] = char
        from[length] = at
        to[length] = next
        wordStart[length] = separated || digit !== lastWasDigit ? 1 : 0
        length++
        separated = false
        stopped = false
        lastWasDigit = digit
      }
    }
    at = next
  }
  return { chars: UTF16.decode(codes.subarray(0, length)), from, to, wordStart }
}

function growBuffers(capacity: number): void {
  buffers = { codes: new Uint16Array(capacity), from: new Int32Array(capacity), to: new Int32Array(capacity), wordStart: new Uint8Array(capacity) }
}

/**
 * Adds the folded forms of a customer's value to look for: its pieces (what stands between its stops,
 * separators left out), and when `wordLetters` is given, its words of at least that many letters, less
 * `common` ones. A word of a syllabic script counts from two characters.
 */
function addForms(value: string, into: string[], wordLetters = 0, common?: Set<string>): void {
  addFormsOf(value, into, wordLetters, common)
  const composed = value.normalize('NFC')
  if (UMLAUT.test(composed))
    addFormsOf(
      composed.replace(UMLAUTS, (letter) => DIGRAPHS[letter.toLowerCase()]!),
      into,
      wordLetters,
      common
    )
}

// How German and the Nordic languages write these letters without them: Müller is also Mueller.
const DIGRAPHS: Record<string, string> = { ä: 'ae', ö: 'oe', ü: 'ue', å: 'aa', ø: 'oe' }
const UMLAUT = /[äöüåøÄÖÜÅØ]/
const UMLAUTS = new RegExp(UMLAUT.source, 'g')

function addFormsOf(value: string, into: string[], wordLetters: number, common: Set<string> | undefined): void {
  // The customer's values are folded on every attempt: those in ASCII (most) take a short way, to the
  // same result as fold(), taking runs of letters and digits whole rather than a character at a time.
  const before = into.length
  let piece = ''
  let run = -1
  for (let k = 0; k <= value.length; k++) {
    // After the last character, a stop (a quote) ends the last piece.
    const code = k < value.length ? value.charCodeAt(k) : 0x22
    const kind = code < 0x80 ? ASCII_KIND[code]! : OTHER
    if (kind === LETTER || kind === DIGIT) {
      if (run < 0) run = k
      continue
    }
    if (kind === OTHER) {
      into.length = before
      addFormsTheLongWay(value, into, wordLetters, common)
      return
    }
    if (run >= 0) {
      const word = value.slice(run, k)
      piece += word
      if (wordLetters && word.length >= wordLetters) {
        const folded = word.toLowerCase()
        if (!common?.has(folded)) into.push(folded)
      }
      run = -1
    }
    if (kind === STOP) {
      if (piece.length >= 2) into.push(piece.toLowerCase())
      piece = ''
    }
  }
}

// Scripts in which a character is a syllable or a word of its own: two of them say as much as four letters.
const SYLLABIC = /[\p{sc=Han}\p{sc=Hiragana}\p{sc=Katakana}\p{sc=Hangul}\p{sc=Thai}\p{sc=Lao}\p{sc=Khmer}\p{sc=Myanmar}]/u
const WORD_BREAKS = /[^\p{L}\p{N}\p{M}\p{Cf}]+/u

function addFormsTheLongWay(value: string, into: string[], wordLetters: number, common: Set<string> | undefined): void {
  for (const piece of foldedChars(value).split(' ')) if (piece.length >= 2) into.push(piece)
  if (!wordLetters) return
  for (const raw of value.split(WORD_BREAKS)) {
    const word = foldedChars(raw)
    if ((SYLLABIC.test(raw) ? [...raw].length >= 2 : word.length >= wordLetters) && !common?.has(word)) into.push(word)
  }
}

/** A value's folded pieces, of two characters or more (for the tests: the short way must fold as fold() does). */
export function foldedPieces(value: string): string[] {
  const pieces: string[] = []
  addFormsOf(value, pieces, 0, undefined)
  return pieces
}

// ---- Searching ---------------------------------------------------------------------------------------

const NON_ASCII = /[\u0080-\uffff]/
// Everything but letters and digits, and JSON escapes other than \u (those are folded as what they stand for).
const QUICK_DROP = /(?:\\[^u]|[^a-z0-9\\])+/g

/**
 * The cheap look first: for a text in ASCII without \u escapes, lower case with every non-alphanumeric
 * dropped holds every folded match as a substring, so a needle absent from it cannot be in the text.
 */
function quickFold(text: string): string | undefined {
  if (NON_ASCII.test(text) || text.includes('\\u')) return undefined
  return text.toLowerCase().replace(QUICK_DROP, '')
}

function maskNeedles(text: string, { plain, groups }: Needles): string {
  // Text above ASCII is folded at once: then only the groups' guards are worth a look first.
  const quick = quickFold(text)
  let folded = quick === undefined ? fold(text) : undefined
  const haystack = quick ?? folded!.chars
  const candidates: Needle[] = []
  for (const needle of plain) if (quick === undefined || quick.includes(needle)) candidates.push({ folded: needle })
  for (const group of groups) {
    if (!haystack.includes(group.guard)) continue
    group.needles ??= group.later?.() ?? []
    for (const needle of group.needles) if (quick === undefined || quick.includes(needle.folded)) candidates.push(needle)
  }
  if (!candidates.length) return text

  folded ??= fold(text)
  const { chars, from, to, wordStart } = folded
  const spans: [number, number][] = []
  for (const needle of candidates) {
    for (let at = chars.indexOf(needle.folded); at >= 0; at = chars.indexOf(needle.folded, at + 1)) {
      const end = at + needle.folded.length
      // Whole words only.
      if (!wordStart[at] || (end < chars.length && chars[end] !== ' ' && !wordStart[end])) continue
      if (needle.words !== undefined && countWords(wordStart, at, end) !== needle.words) continue
      let start = from[at]!
      let stop = pastIgnored(text, to[end - 1]!)
      if (needle.phone) {
        while (start > 0 && (text[start - 1] === '+' || text[start - 1] === '(')) start--
        if (text[stop] === ')' && count(text, '(', start, stop) > count(text, ')', start, stop)) stop++
      }
      spans.push([start, stop])
    }
  }
  if (!spans.length) return text

  spans.sort((a, b) => a[0] - b[0])
  let masked = ''
  let kept = 0
  let [start, stop] = spans[0]!
  for (const [nextStart, nextStop] of spans) {
    if (nextStart <= stop) stop = Math.max(stop, nextStop)
    else {
      masked += `${text.slice(kept, start)}***`
      kept = stop
      start = nextStart
      stop = nextStop
    }
  }
  return `${masked}${text.slice(kept, start)}***${text.slice(stop)}`
}

function countWords(wordStart: Uint8Array, from: number, to: number): number {
  let words = 0
  for (let k = from; k < to; k++) if (wordStart[k]) words++
  return words
}

function count(text: string, char: string, from: number, to: number): number {
  let found = 0
  for (let k = from; k < to; k++) if (text[k] === char) found++
  return found
}

/** A match takes the accents and invisible characters that follow it ("Jose\u0301"). */
function pastIgnored(text: string, at: number): number {
  let end = at
  while (end < text.length) {
    const codePoint = text.codePointAt(end)!
    if (codePoint < 0x80 || foldCodePoint(codePoint) !== '') break
    end += codePoint > 0xffff ? 2 : 1
  }
  return end
}
