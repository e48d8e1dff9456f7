import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { customerRecordErrors, customerRuleErrors, isMixedScript, normalizeIdentifierValue, reviewFlagsOf } from '../../src/cif/customer-rules.ts'
import type { CustomerInput } from '../../src/contracts/customer.ts'

const today = '2026-11-25'
const person: CustomerInput = { legalForm: 'PERSON', firstName: 'Zoë', lastName: "O'Brien-Núñez", dateOfBirth: '1990-01-31' }

describe('customer rules', () => {
  it('accepts a complete person and a complete entity', () => {
    expect(customerRecordErrors(person, today)).toEqual([])
    expect(
      customerRecordErrors({ legalForm: 'ENTITY', fullName: 'Analytical Engines & Co. (Pte) Ltd', registrationNumber: '201912345K' }, today)
    ).toEqual([])
  })

  it('accepts names in any script', () => {
    for (const name of ['李', 'Владимир', 'محمد', 'Jean-Luc', 'St. John', 'Nguyễn']) {
      expect(customerRecordErrors({ ...person, firstName: name }, today)).toEqual([])
    }
  })

  it('names each field a PERSON lacks or must not have', () => {
    expect(customerRuleErrors({ legalForm: 'PERSON', fullName: 'X Ltd' }, today)).toEqual([
      { pointer: '/firstName', detail: 'is required for a PERSON' },
      { pointer: '/lastName', detail: 'is required for a PERSON' },
      { pointer: '/dateOfBirth', detail: 'is required for a PERSON' },
      { pointer: '/fullName', detail: 'is not allowed for a PERSON' }
    ])
  })

  it('names each field an ENTITY lacks or must not have', () => {
    expect(customerRuleErrors({ legalForm: 'ENTITY', firstName: 'Ada', middleName: 'K' }, today)).toEqual([
      { pointer: '/fullName', detail: 'is required for a ENTITY' },
      { pointer: '/firstName', detail: 'is not allowed for a ENTITY' },
      { pointer: '/middleName', detail: 'is not allowed for a ENTITY' }
    ])
  })

  it('wants a birth date in the past: yesterday yes, today no', () => {
    expect(customerRuleErrors({ ...person, dateOfBirth: '2026-11-24' }, today)).toEqual([])
    expect(customerRuleErrors({ ...person, dateOfBirth: today }, today)).toHaveLength(1)
    expect(customerRuleErrors({ ...person, dateOfBirth: '1899-12-31' }, today)).toHaveLength(1)
  })

  it('refuses a leap day that does not exist', () => {
    expect(customerRecordErrors({ ...person, dateOfBirth: '2000-02-29' }, today)).toEqual([])
    expect(customerRecordErrors({ ...person, dateOfBirth: '1900-02-29' }, today)[0]?.pointer).toBe('/dateOfBirth')
  })

  it('treats one document written two ways as given twice', () => {
    expect(normalizeIdentifierValue(' ab-12 3./x ')).toBe('AB123X')
    const errors = customerRuleErrors(
      {
        ...person,
        identifiers: [
          { type: 'PASSPORT', value: 'K-123', issuingCountry: 'SG' },
          { type: 'PASSPORT', value: 'k123', issuingCountry: 'MY' },
          { type: 'PASSPORT', value: 'k 123', issuingCountry: 'SG' }
        ]
      },
      today
    )
    expect(errors).toEqual([{ pointer: '/identifiers/2', detail: 'repeats an identifier given earlier in the list' }])
  })

  it('compares identifiers written in full-width, mathematical, compatibility or other-script digit forms as their ASCII form', () => {
    for (const [written, compared] of [
      ['ＳＧ１２３４５６７Ａ', 'SG1234567A'],
      ['ｓｇ－１２３．４５６／７ａ', 'SG1234567A'],
      ['S١٢٣٤٥٦٧A', 'S1234567A'], // Arabic-Indic
      ['S۱۲۳۴۵۶۷A', 'S1234567A'], // Extended Arabic-Indic
      ['S𝟏𝟐𝟑𝟒𝟓𝟔𝟕A', 'S1234567A'], // mathematical bold
      ['S𝟷𝟸𝟹𝟺𝟻𝟼𝟽A', 'S1234567A'], // mathematical monospace
      ['S१२३४५६७A', 'S1234567A'], // Devanagari
      ['S๑๒๓๔๕๖๗A', 'S1234567A'], // Thai
      ['𝐒𝐆12', 'SG12'], // mathematical bold letters
      ['ﬁ12', 'FI12'], // a ligature
      ['S\u00a0123\u20134\u3000567\u2212A\u2215B', 'S1234567AB'] // Unicode spaces, dashes, minus and slash
    ]) {
      expect(normalizeIdentifierValue(written as string)).toBe(compared)
    }
  })

  it('finds the value of every Unicode decimal digit: they come in runs of ten from 0 to 9', () => {
    // asciiDigit relies on Unicode's stability guarantee; this checks the runtime's Unicode data keeps it.
    const digit = /\p{Nd}/u
    let runStart = -1
    for (let codePoint = 0; codePoint <= 0x110000; codePoint++) {
      const isDigit = codePoint < 0x110000 && digit.test(String.fromCodePoint(codePoint))
      if (isDigit && runStart < 0) runStart = codePoint
      if (!isDigit && runStart >= 0) {
        expect((codePoint - runStart) % 10, `the run of digits at U+${runStart.toString(16)}`).toBe(0)
        for (let value = 0; value < 10; value++) {
          expect(normalizeIdentifierValue(String.fromCodePoint(runStart + value))).toBe(String(value))
        }
        runStart = -1
      }
    }
  })

  it('refuses an identifier in letters other than A-Z, naming its value', () => {
    const identifiers: NonNullable<CustomerInput['identifiers']> = [
      { type: 'NATIONAL_ID', value: 'S1234567А', issuingCountry: 'SG' }, // a Cyrillic А
      { type: 'NATIONAL_ID', value: 'Ο1234567', issuingCountry: 'GR' }, // a Greek Ο
      { type: 'PASSPORT', value: 'Nguyễn1', issuingCountry: 'VN' },
      { type: 'TAX_ID', value: '李123', issuingCountry: 'CN' },
      { type: 'TAX_ID', value: 'S1234567A', issuingCountry: 'SG' }
    ]
    expect(customerRuleErrors({ ...person, identifiers }, today)).toEqual(
      [0, 1, 2, 3].map((i) => ({ pointer: `/identifiers/${i}/value`, detail: 'must be written in Latin letters and digits (A-Z, 0-9)' }))
    )
    // The same rule holds for a record assembled after a PATCH.
    expect(customerRecordErrors({ ...person, identifiers: identifiers.slice(0, 1) }, today)).toEqual([
      { pointer: '/identifiers/0/value', detail: 'must be written in Latin letters and digits (A-Z, 0-9)' }
    ])
  })

  describe('identifier normalisation (properties)', () => {
    const previousNormalization = (value: string) => value.toUpperCase().replace(/[\s./-]+/g, '')
    const ascii = fc.string({ unit: fc.integer({ min: 0, max: 0x7f }).map((code) => String.fromCharCode(code)), maxLength: 60 })

    it('leaves plain ASCII exactly as it was normalised before, so stored values stay comparable', () => {
      fc.assert(fc.property(ascii, (value) => normalizeIdentifierValue(value) === previousNormalization(value)))
    })

    const upper = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ'
    const at = (base: number, offset: number) => String.fromCodePoint(base + offset)
    // Each ASCII character with the ways it may be re-written that a person still reads as it.
    const rewrites = (char: string): string[] => {
      if (/[0-9]/.test(char)) {
        const d = Number(char)
        // full-width, mathematical bold, double-struck, sans-serif, sans-serif bold, monospace, Arabic-Indic, Extended Arabic-Indic
        return [char, ...[0xff10, 0x1d7ce, 0x1d7d8, 0x1d7e2, 0x1d7ec, 0x1d7f6, 0x0660, 0x06f0].map((zero) => at(zero, d))]
      }
      if (/[A-Za-z]/.test(char)) {
        const l = upper.indexOf(char.toUpperCase())
        // either case, full-width in either case, mathematical bold in either case
        return [char.toUpperCase(), char.toLowerCase(), at(0xff21, l), at(0xff41, l), at(0x1d400, l), at(0x1d41a, l)]
      }
      if (char === ' ') return [' ', '\u00a0', '\u2009', '\u3000']
      if (char === '-') return ['-', '\u2010', '\u2013', '\u2014', '\u2212', '\uff0d']
      if (char === '.') return ['.', '\uff0e', '\u3002']
      return ['/', '\uff0f', '\u2215']
    }
    const asciiIdentifier = fc.string({ unit: fc.constantFrom(...`${upper}abcxyz0123456789 .-/`), minLength: 1, maxLength: 40 })
    const rewritten = asciiIdentifier.chain((value) =>
      fc.tuple(
        fc.constant(value),
        fc.tuple(...[...value].map((char) => fc.constantFrom(...rewrites(char)))).map((chars) => chars.join(''))
      )
    )

    it('normalises any full-width, mathematical or Arabic-Indic re-writing of an ASCII identifier to its ASCII form', () => {
      fc.assert(
        fc.property(rewritten, ([value, written]) => {
          expect(normalizeIdentifierValue(written)).toBe(normalizeIdentifierValue(value))
          // and so is accepted, or refused, as the ASCII form is
          const errorsOf = (v: string) =>
            customerRuleErrors({ ...person, identifiers: [{ type: 'NATIONAL_ID', value: v, issuingCountry: 'SG' }] }, today)
          expect(errorsOf(written)).toEqual(errorsOf(value))
        })
      )
    })

    // Letters of other scripts that look like Latin capitals or small letters.
    const lookAlikes = [...'АВЕКМНОРСТХЅІЈаеорсухѕіј', ...'ΑΒΕΖΗΙΚΜΝΟΡΤΥΧοικνρτυχ']
    const withLookAlike = fc
      .tuple(fc.string({ unit: fc.constantFrom(...`${upper}0123456789`), maxLength: 20 }), fc.constantFrom(...lookAlikes), fc.nat())
      .map(([value, letter, position]) => {
        const index = position % (value.length + 1)
        return `${value.slice(0, index)}${letter}${value.slice(index)}`
      })

    it('refuses an identifier with a Cyrillic or Greek look-alike letter', () => {
      fc.assert(
        fc.property(withLookAlike, (value) => {
          expect(customerRecordErrors({ ...person, identifiers: [{ type: 'NATIONAL_ID', value, issuingCountry: 'SG' }] }, today)).toEqual([
            { pointer: '/identifiers/0/value', detail: 'must be written in Latin letters and digits (A-Z, 0-9)' }
          ])
        })
      )
    })
  })

  it('reports schema errors of an assembled record with pointers', () => {
    expect(customerRecordErrors({ ...person, email: 'not-an-email', extra: 1 }, today)).toEqual([
      { pointer: '/extra', detail: 'is not a known field' },
      { pointer: '/email', detail: 'must be a valid email' }
    ])
  })
})

describe('mixed-script names', () => {
  const scripts = {
    Latin: 'abcdefghijklmnopqrstuvwxyzéüñøß',
    Cyrillic: 'абвгдежзийклмнопрстуфхцчшщюя',
    Greek: 'αβγδεζηθικλμνξοπρστυφχψω',
    Arabic: 'ابتثجحخدذرزسشصضطظعغفقكلمنهوي',
    Han: '王李张明华伟山田太郎金',
    Hangul: '김민수지영박'
  }
  const word = (letters: string) => fc.array(fc.constantFrom(...letters), { minLength: 1, maxLength: 8 }).map((chars) => chars.join(''))
  const script = fc.constantFrom(...(Object.keys(scripts) as (keyof typeof scripts)[]))

  it('passes a name in any one script, with spaces, hyphens, apostrophes and its accents', () => {
    fc.assert(
      fc.property(
        script.chain((name) => fc.array(word(scripts[name]), { minLength: 1, maxLength: 3 })),
        fc.constantFrom(' ', '-', "'", '’', '. '),
        (words, joiner) => {
          expect(isMixedScript(words.join(joiner))).toBe(false)
        }
      )
    )
    // A combining accent counts in the scripts it is used with (its Script_Extensions).
    for (const name of ['Jose\u0301', 'Ива\u0301н', 'Ἀλέξανδρος']) expect(isMixedScript(name), name).toBe(false)
  })

  it('flags a name that mixes two scripts, such as one look-alike letter', () => {
    fc.assert(
      fc.property(script, script, fc.nat(), fc.nat(), (first, second, a, b) => {
        fc.pre(first !== second && !(['Han', 'Hangul'].includes(first) && ['Han', 'Hangul'].includes(second)))
        const one = scripts[first][a % scripts[first].length]!
        const other = [...scripts[second]][b % [...scripts[second]].length]!
        expect(isMixedScript(`${one}${one}${other}`)).toBe(true)
      })
    )
    // Latin "Ada" with a Cyrillic "а" (U+0430) looks the same.
    expect(isMixedScript('Ad\u0430')).toBe(true)
  })

  it('passes the writing systems that mix scripts by design: Japanese and Korean', () => {
    for (const name of ['山田たろう', 'ヤマダ太郎', '金민수', 'ﾔﾏﾀﾞ']) expect(isMixedScript(name), name).toBe(false)
    expect(isMixedScript('김たろう')).toBe(true)
  })

  it('says which name fields are mixed', () => {
    expect(reviewFlagsOf({ firstName: 'Ad\u0430', lastName: 'Lovelace', middleName: 'Иван Ivan' })).toEqual([
      { flag: 'MIXED_SCRIPT_NAME', fields: ['firstName', 'middleName'] }
    ])
    expect(reviewFlagsOf({ firstName: 'Ada', fullName: 'Владимир' })).toEqual([])
  })
})
