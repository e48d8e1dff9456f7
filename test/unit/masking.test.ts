import { encodeNonAsciiHTML } from 'entities'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { judgeCall } from '../../src/syncer/delivery/attempt-policy.ts'
import { maskedAnswer } from '../../src/syncer/delivery/lane.ts'
import { fold, foldedPieces, personalDataMasker } from '../../src/syncer/delivery/masking.ts'

/** One text through the masker of one customer, as a lane masks an answer. */
const maskPersonalData = (text: string, customer: Record<string, unknown> | undefined): string => personalDataMasker(customer)(text)

/** What the lane stores of an end system's answer: masked first, then cut to an excerpt when judged. */
function storedMessage(body: string, customer: Record<string, unknown>, otherVersions: Record<string, unknown>[] = []): string {
  return judgeCall(maskedAnswer({ kind: 'response', status: 400, body }, personalDataMasker(customer, otherVersions)), 'crm', 'update', false).message
}

describe('masking personal data in end system messages', () => {
  const customer = {
    firstName: 'Ada',
    lastName: 'Lovelace',
    email: 'ada@example.com',
    mobileNumber: '+6591234567',
    identifiers: [{ type: 'PASSPORT', value: 'K1234567' }],
    addresses: [{ line1: '12 St James Square', postalCode: 'SW1Y 4JH' }]
  }

  it('masks the customer’s own values wherever they appear', () => {
    expect(maskPersonalData('Lovelace, Ada (K1234567) at 12 St James Square SW1Y 4JH, 6591234567', customer)).toBe('***, *** (***) at *** ***, ***')
  })

  it('masks anything shaped like an email or an international phone number, and keeps ids readable', () => {
    expect(maskPersonalData('contact bob@bank.example or +44 20 7946 0958 about 10000000009 / CB-0000001', undefined)).toBe(
      'contact ***@*** or *** about 10000000009 / CB-0000001'
    )
  })
  it('matches whole words in any case, short names too, and not inside other words', () => {
    const ng = { firstName: 'Wei', lastName: 'Ng', addresses: [{ city: 'Lisbon' }] }
    expect(maskPersonalData('NG WEI rejected; Ngong Road is in LISBON', ng)).toBe('*** *** rejected; Ngong Road is in ***')
  })

  it('drops what PostgreSQL text and JSON cannot hold', () => {
    expect(maskPersonalData('bad\u0000byte \ud800half', undefined)).toBe('badbyte \ufffdhalf')
  })

  it('masks names written without their accents, in capitals, decomposed or JSON-escaped', () => {
    const jose = { firstName: 'José', lastName: 'Müller' }
    for (const written of ['JOSE MULLER', 'jose muller', 'Jose\u0301 Mu\u0308ller', 'Jos\\u00e9 M\\u00fcller', 'José MÜLLER']) {
      expect(maskPersonalData(`rejected: ${written}.`, jose), written).toBe('rejected: *** ***.')
    }
    expect(maskPersonalData('{"name":"Müller\'s"}', jose)).toBe('{"name":"***\'s"}')
  })

  it('reads letters with a stroke as their base letter, and umlauts also as German writes them without', () => {
    const soren = { firstName: 'Søren', lastName: 'Kjærgaard', middleName: 'Łukasz', addresses: [{ city: 'Münster' }] }
    expect(maskPersonalData('SOREN KJAERGAARD, Lukasz; Soeren in MUENSTER and Munster', soren)).toBe('*** ***, ***; *** in *** and ***')
    expect(maskPersonalData('Herr Mueller / MULLER', { lastName: 'Müller' })).toBe('Herr *** / ***')
  })

  it('decodes HTML entities and percent-encoding before masking', () => {
    const jose = { firstName: 'José', lastName: 'Müller' }
    expect(maskPersonalData('<p>Jos&eacute; M&uuml;ller &amp; co</p>', jose)).toBe('<p>*** *** & co</p>')
    expect(maskPersonalData('&#74;os&#xE9; rejected', jose)).toBe('*** rejected')
    expect(maskPersonalData('GET /search?name=Jos%C3%A9+M%C3%BCller&x=%ZZ%E9', jose)).toBe('GET /search?name=***+***&x=%ZZ%E9')
  })

  it('masks the values of the customer’s other versions: the name before a rename, the old address', () => {
    const now = { firstName: 'Ada', lastName: 'King', addresses: [{ line1: '1 New Road', city: 'Oxford' }] }
    const before = { firstName: 'Ada', lastName: 'Byron', addresses: [{ line1: '12 St James Square', city: 'London' }] }
    const answer = 'record holds Ada Byron, 12 St James Square, London; expected Ada King, Oxford'
    expect(personalDataMasker(now, [before])(answer)).toBe('record holds *** ***, ***, ***; expected *** ***, ***')
    expect(personalDataMasker(undefined, [before])('Byron')).toBe('***')
  })

  it('folds case fully: ß is ss, and the long s and the Kelvin sign are s and k', () => {
    expect(maskPersonalData('HERR STRAUSS', { lastName: 'Strauß' })).toBe('HERR ***')
    expect(maskPersonalData('Herr Strauß', { lastName: 'Strauss' })).toBe('Herr ***')
    expect(maskPersonalData('Roſs \u212Aai', { firstName: 'Kai', lastName: 'Ross' })).toBe('*** ***')
  })

  it('masks names in scripts without spaces, and Korean names with a particle written on', () => {
    expect(maskPersonalData('王小明先生 / 김민수는', { fullName: '王小明', firstName: '민수', lastName: '김' })).toBe('***先生 / ***는')
  })

  it('masks the customer’s mobile number with any separators, with or without its country code', () => {
    for (const written of ['+65 9123 4567', '(65) 9123-4567', '+65-9123.4567', '0065 9123 4567', '6591234567', '91234567', '9123 4567']) {
      expect(maskPersonalData(`call ${written} now`, customer), written).toBe('call *** now')
    }
    // Another number, not international-looking, stays.
    expect(maskPersonalData('call 9123 4568 now', customer)).toBe('call 9123 4568 now')
  })

  it('masks the date of birth in common formats', () => {
    const born = { dateOfBirth: '1985-12-10' }
    for (const written of [
      '1985-12-10',
      '10/12/1985',
      '10.12.1985',
      '12/10/1985',
      '19851210',
      '10 Dec 1985',
      '10 December 1985',
      'December 10, 1985',
      'Dec 10th, 1985',
      '10-DEC-85',
      '10/12/85',
      '1985-12-10T00:00:00Z'
    ]) {
      expect(maskPersonalData(`born ${written}; ok`, born).replace('T00:00:00Z', ''), written).toBe('born ***; ok')
    }
    const january = { dateOfBirth: '2001-01-02' }
    expect(maskPersonalData('born 2/1/2001 or 1/2/01, ref 1201 and 2001', january)).toBe('born *** or ***, ref 1201 and 2001')
  })

  it('masks address fragments: the postal code without its space, the street’s own words, the city', () => {
    const home = { addresses: [{ line1: '12 St James Square', line2: 'Kingsbury Tower', city: 'Kuala Lumpur', postalCode: 'SW1Y 4JH' }] }
    expect(maskPersonalData('SW1Y4JH / sw1y-4jh / James St / KINGSBURY / kuala lumpur', home)).toBe('*** / *** / *** St / *** / ***')
    // Common words of an address say nothing on their own.
    expect(maskPersonalData('Square Tower Street', home)).toBe('Square Tower Street')
  })

  it('masks before the answer is cut: a value cut in two by the excerpt does not survive', () => {
    const body = `${'x'.repeat(495)} Lovelace, Ada`
    const message = storedMessage(body, customer)
    expect(message.endsWith('…')).toBe(true)
    expect(message).not.toMatch(/Lov/)
  })

  it('keeps what is not the customer’s readable', () => {
    expect(maskPersonalData('CB-0000001 10000000009 Adamant in Lisbon, Square', customer)).toBe('CB-0000001 10000000009 Adamant in Lisbon, Square')
  })
})

// ---- Properties --------------------------------------------------------------------------------------

// A clean message is made of these words only. Every customer value below holds a letter they never use
// (b, k, q, v, w, x, z, or another script's), so a clean message cannot hold one by chance.
const cleanWords = [
  'error',
  'field',
  'rejected',
  'status',
  'code',
  'not',
  'permitted',
  'the',
  'is',
  'for',
  'no',
  'record',
  'ok',
  'accepted',
  'detail',
  'message',
  'retry',
  'later',
  'données',
  'ошибка',
  '错误',
  '오류',
  'CR-0000001',
  '10000000009',
  'ops@bank.example',
  '+44 20 7946 0958'
]
const cleanPunctuation = [' ', ', ', '{"', '":"', '","', '"}', '; ', '\n', ' (', ') ', ': ', ' - ']

const syllables = {
  latin: ['bá', 'kö', 'zé', 'vü', 'wy', 'xi', 'qa', 'ñak', 'bøl', 'živ', 'łuk', 'çeb', 'ßka', 'ÿvo', 'kå'],
  greek: ['ζω', 'ξέ', 'ψυ', 'φί', 'χά'],
  cyrillic: ['жа', 'щу', 'юл', 'ия', 'фё'],
  han: ['王', '李', '张', '明', '华', '伟'],
  hangul: ['김', '민', '수', '지', '영', '박']
}
const capitalised = (word: string) => word.charAt(0).toUpperCase() + word.slice(1)
const nameWord = fc
  .constantFrom(...(Object.keys(syllables) as (keyof typeof syllables)[]))
  .chain((script) => fc.array(fc.constantFrom(...syllables[script]), { minLength: 2, maxLength: 3 }))
  .map((parts) => capitalised(parts.join('')))
const name = fc.oneof(
  nameWord,
  fc.tuple(nameWord, nameWord, fc.constantFrom(' ', '-')).map(([a, b, joiner]) => `${a}${joiner}${b}`)
)
const nsn = fc.tuple(fc.constantFrom('8', '9'), fc.stringMatching(/^\d{7,8}$/)).map(([first, rest]) => first + rest)
const countryCode = fc.constantFrom('65', '44', '1', '852', '61', '49', '971')
const birthDate = fc.record({ y: fc.integer({ min: 1930, max: 2005 }), m: fc.integer({ min: 1, max: 12 }), d: fc.integer({ min: 1, max: 28 }) })
const pad = (n: number) => String(n).padStart(2, '0')

const customerArbitrary = fc
  .record({
    firstName: name,
    lastName: name,
    date: birthDate,
    countryCode,
    nsn,
    street: nameWord,
    houseNumber: fc.integer({ min: 1, max: 999 }),
    streetKind: fc.constantFrom('Street', 'Road', 'Avenue', 'Lane'),
    city: nameWord,
    postalCode: fc.tuple(
      fc.constantFrom('KV', 'ZX', 'BQ', 'W'),
      fc.integer({ min: 1, max: 99 }),
      fc.integer({ min: 1, max: 9 }),
      fc.constantFrom('BX', 'KZ', 'QW')
    ),
    passport: fc.stringMatching(/^\d{7}$/),
    emailLocal: nameWord.map((word) =>
      word
        .normalize('NFD')
        .replace(/[^a-z]/gi, '')
        .toLowerCase()
    )
  })
  .map((c) => ({
    parts: c,
    customer: {
      firstName: c.firstName,
      lastName: c.lastName,
      dateOfBirth: `${c.date.y}-${pad(c.date.m)}-${pad(c.date.d)}`,
      mobileNumber: `+${c.countryCode}${c.nsn}`,
      email: `${c.emailLocal || 'zed'}.qx@example.com`,
      identifiers: [{ type: 'PASSPORT', value: `K${c.passport}`, issuingCountry: 'SG' }],
      addresses: [
        {
          type: 'HOME',
          line1: `${c.houseNumber} ${c.street} ${c.streetKind}`,
          city: c.city,
          postalCode: `${c.postalCode[0]}${c.postalCode[1]} ${c.postalCode[2]}${c.postalCode[3]}`,
          country: 'SG'
        }
      ]
    }
  }))
type GeneratedCustomer = typeof customerArbitrary extends fc.Arbitrary<infer T> ? T : never

const withoutAccents = (text: string) => text.normalize('NFD').replace(/\p{M}/gu, '')
const jsonEscaped = (text: string) => text.replace(/[^\x20-\x7e]/g, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`)
// How German and the Nordic languages write without their letters, and what is left in ASCII.
const DIGRAPHS: Record<string, string> = { ä: 'ae', ö: 'oe', ü: 'ue', å: 'aa', ø: 'oe', æ: 'ae', ł: 'l', ß: 'ss' }
const BASE: Record<string, string> = { ø: 'o', æ: 'ae', ł: 'l' }
const transliterated = (text: string) => withoutAccents(text.toLowerCase().replace(/[äöüåøæłß]/g, (c) => DIGRAPHS[c]!))
const inAscii = (text: string) => withoutAccents(text.toLowerCase().replace(/[øæł]/g, (c) => BASE[c]!))
const nameShapes = (value: string) => [
  value,
  transliterated(value),
  inAscii(value).toUpperCase(),
  encodeNonAsciiHTML(value),
  encodeURIComponent(value),
  value.toUpperCase(),
  value.toLowerCase(),
  withoutAccents(value),
  withoutAccents(value).toUpperCase(),
  value.normalize('NFD'),
  jsonEscaped(value),
  jsonEscaped(value.toUpperCase()),
  `${value}'s`
]
const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December']

/** Every shape of a customer's personal data that an end system may write, as [shape, what it stands for]. */
function shapesOf({ parts: c, customer }: GeneratedCustomer): [string, string][] {
  const { y, m, d } = c.date
  const month = MONTHS[m - 1]!
  const yy = String(y).slice(2)
  const [a, b] = [c.nsn.slice(0, 4), c.nsn.slice(4)]
  const address = customer.addresses[0]!
  const shapes: [string, string][] = [
    ...[c.firstName, c.lastName, c.street, c.city].flatMap((value) => nameShapes(value).map((shape): [string, string] => [shape, value])),
    ...[
      `+${c.countryCode} ${a} ${b}`,
      `(${c.countryCode}) ${a}-${b}`,
      `00${c.countryCode}.${a}.${b}`,
      `${c.countryCode}${c.nsn}`,
      c.nsn,
      `0${c.nsn}`,
      `${a} ${b}`
    ].map((shape): [string, string] => [shape, c.nsn]),
    ...[
      `${y}-${pad(m)}-${pad(d)}`,
      `${pad(d)}/${pad(m)}/${y}`,
      `${pad(m)}/${pad(d)}/${y}`,
      `${pad(d)}.${pad(m)}.${y}`,
      `${y}${pad(m)}${pad(d)}`,
      `${d} ${month.slice(0, 3)} ${y}`,
      `${d} ${month.toUpperCase()} ${y}`,
      `${month} ${d}, ${y}`,
      `${pad(d)}-${month.slice(0, 3)}-${yy}`,
      `${pad(d)}/${pad(m)}/${yy}`,
      `${d}/${m}/${yy}`,
      `${y}-${pad(m)}-${pad(d)}T00:00:00Z`
    ].map((shape): [string, string] => [shape, customer.dateOfBirth]),
    ...[address.line1, address.line1.toUpperCase(), `${c.houseNumber}, ${c.street} ${c.streetKind.toLowerCase()}`].map((shape): [string, string] => [
      shape,
      address.line1
    ]),
    ...[address.postalCode, address.postalCode.replace(' ', ''), address.postalCode.toLowerCase().replace(' ', '-')].map(
      (shape): [string, string] => [shape, address.postalCode]
    ),
    ...[`K${c.passport}`, `k ${c.passport}`].map((shape): [string, string] => [shape, `K${c.passport}`]),
    [customer.email, customer.email],
    [customer.email.split('@')[0]!, customer.email]
  ]
  return shapes
}

/** The checker's own folding, independent of the one under test: escapes read, accents dropped, one case. */
function checkerTokens(text: string): string[] {
  return text
    .replace(/\\u([0-9a-fA-F]{4})/g, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)))
    .normalize('NFKD')
    .replace(/\p{M}/gu, '')
    .toLowerCase()
    .replaceAll('ß', 'ss')
    .split(/[^\p{L}\p{N}]+/u)
    .filter(Boolean)
}
const compact = (shape: string) => checkerTokens(shape).join('')

/** Whether consecutive words of `message` spell out `shape` (any case, accents, separators). */
function survives(message: string, shape: string): boolean {
  const wanted = compact(shape)
  const tokens = checkerTokens(message)
  for (let i = 0; i < tokens.length; i++) {
    let spelled = ''
    for (let j = i; j < tokens.length && spelled.length < wanted.length; j++) {
      spelled += tokens[j]
      if (spelled === wanted) return true
    }
  }
  return message.includes(shape)
}

const SHAPES_AS_TODAY = (text: string) => text.replace(/[\w.+-]+@[\w-]+(\.[\w-]+)+/g, '***@***').replace(/\+\d[\d ()-]{5,}\d/g, '***')

describe('masking personal data: properties', () => {
  it('leaves none of the customer’s values, in any shape, in the stored message', () => {
    fc.assert(
      fc.property(
        customerArbitrary,
        fc.array(fc.tuple(fc.nat(), fc.constantFrom(...cleanWords), fc.constantFrom(...cleanPunctuation)), { minLength: 1, maxLength: 25 }),
        (generated, segments) => {
          const shapes = shapesOf(generated)
          const embedded = segments.map(([pick]) => shapes[pick % shapes.length]!)
          const body = segments.map(([_, word, punctuation], k) => `${word}${punctuation}${embedded[k]![0]}${punctuation}`).join('')
          const stored = storedMessage(body, generated.customer)
          for (const [shape, value] of embedded) {
            expect(survives(stored, shape), `${shape} in ${stored}`).toBe(false)
            expect(survives(stored, value), `${value} (as ${shape}) in ${stored}`).toBe(false)
          }
        }
      ),
      { numRuns: 300 }
    )
  })

  it('leaves none of the values of the customer’s other versions in the stored message', () => {
    fc.assert(
      fc.property(
        customerArbitrary,
        fc.array(customerArbitrary, { minLength: 1, maxLength: 3 }),
        fc.array(fc.tuple(fc.nat(), fc.nat(), fc.constantFrom(...cleanWords)), { minLength: 1, maxLength: 12 }),
        (current, others, segments) => {
          const embedded = segments.map(([version, pick]) => {
            const shapes = shapesOf(others[version % others.length]!)
            return shapes[pick % shapes.length]!
          })
          const body = segments.map(([, , word], k) => `${word} ${embedded[k]![0]}`).join('; ')
          const stored = storedMessage(
            body,
            current.customer,
            others.map((other) => other.customer)
          )
          for (const [shape] of embedded) expect(survives(stored, shape), `${shape} in ${stored}`).toBe(false)
        }
      ),
      { numRuns: 200 }
    )
  })

  it('leaves no piece of a value that the 500-character excerpt cuts in two', () => {
    fc.assert(
      fc.property(customerArbitrary, fc.nat(), fc.nat(), (generated, pick, cut) => {
        const shapes = shapesOf(generated)
        const [shape] = shapes[pick % shapes.length]!
        // The shape starts so that the cut at 500 falls inside it, after at least three of its characters.
        const inside = 3 + (cut % Math.max(1, shape.length - 3))
        const body = `${'o'.repeat(500 - inside - 1)} ${shape} and more after it`
        const stored = storedMessage(body, generated.customer)
        expect(survives(stored, shape)).toBe(false)
        const tail = checkerTokens(stored.replace(/…$/, ''))
        const wanted = compact(shape)
        let spelled = ''
        for (let k = tail.length - 1; k >= 0 && spelled.length < wanted.length; k--) {
          spelled = tail[k] + spelled
          expect(spelled.length >= 3 && wanted.startsWith(spelled), `${spelled}… of ${shape} in ${stored}`).toBe(false)
        }
      }),
      { numRuns: 300 }
    )
  })

  it('masks only the head of a long answer, and quotes what masking all of it would', () => {
    fc.assert(
      fc.property(
        customerArbitrary,
        fc.array(fc.tuple(fc.nat(), fc.constantFrom(...cleanWords), fc.constantFrom(...cleanPunctuation), fc.nat({ max: 3 })), {
          minLength: 1,
          maxLength: 30
        }),
        fc.nat({ max: 600 }),
        (generated, segments, offset) => {
          const shapes = shapesOf(generated)
          // Mostly the customer's values (the masked head shrinks), or mostly other words, past 8,000 characters.
          const segment = segments
            .map(([pick, word, punctuation, weight]) => `${weight ? shapes[pick % shapes.length]![0] : word}${punctuation}`)
            .join('')
          const body = 'o'.repeat(offset) + segment.repeat(Math.ceil(9000 / segment.length))
          const all = judgeCall({ kind: 'response', status: 400, body: personalDataMasker(generated.customer)(body) }, 'crm', 'update', false)
          expect(storedMessage(body, generated.customer)).toBe(all.message)
        }
      ),
      { numRuns: 100 }
    )
  })

  it('leaves a message without the customer’s data as it was, but for emails and international numbers', () => {
    fc.assert(
      fc.property(
        customerArbitrary,
        fc.array(fc.tuple(fc.constantFrom(...cleanWords), fc.constantFrom(...cleanPunctuation), fc.boolean()), { maxLength: 40 }),
        (generated, segments) => {
          const message = segments.map(([word, punctuation, upper]) => (upper ? word.toUpperCase() : word) + punctuation).join('')
          expect(maskPersonalData(message, generated.customer)).toBe(SHAPES_AS_TODAY(message))
        }
      ),
      { numRuns: 300 }
    )
  })

  it('masks a text in ASCII the same way whether or not the quick look is taken', () => {
    // A character above ASCII (on its own, after a stop) sends the text the long way round.
    fc.assert(
      fc.property(
        customerArbitrary,
        fc.array(fc.tuple(fc.nat(), fc.constantFrom(...cleanWords.filter((word) => /^[ -~]*$/.test(word)))), { maxLength: 10 }),
        (generated, segments) => {
          const shapes = shapesOf(generated).filter(([shape]) => /^[ -~]*$/.test(shape))
          const text = segments.map(([pick, word]) => `${word} ${shapes[pick % shapes.length]![0]} `).join('; ')
          const mask = personalDataMasker(generated.customer)
          expect(mask(`${text}; ✓`)).toBe(`${mask(text)}; ✓`)
        }
      ),
      { numRuns: 200 }
    )
  })

  it('folds a customer’s value as it folds a text', () => {
    const ascii = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((code) => String.fromCharCode(code)), maxLength: 40 })
    fc.assert(
      fc.property(
        fc.oneof(ascii, fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((code) => String.fromCharCode(code)), maxLength: 40 })),
        (value) => {
          const pieces = fold(value).chars.split(' ')
          expect(foldedPieces(value)).toEqual(pieces.filter((piece) => piece.length >= 2))
        }
      )
    )
  })
})
