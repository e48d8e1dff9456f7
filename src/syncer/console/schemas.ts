import { type Static, Type } from 'typebox'
import { CIF_ID_PATTERN } from '../../contracts/cif-id.ts'
import { DeliveryFilters, Reason } from '../api/schemas.ts'
import { requestStates } from '../delivery/four-eyes.ts'
import { operatorActions } from '../delivery/states.ts'

/** The console's forms and queries: what a browser sends, checked as strictly as the admin API's bodies. */

/** Every form carries the CSRF token (console.ts), which the CSRF check reads before the route. */
const csrf = { _csrf: Type.String({ maxLength: 200 }) }
const ID = Type.String({ pattern: '^[1-9][0-9]{0,17}$' })

/** Where to go once signed in; only a console page is taken (console.ts). */
export const SignInQuery = Type.Object({ next: Type.Optional(Type.String({ maxLength: 2000 })) }, { additionalProperties: false })
export const SignInForm = Type.Object({ key: Type.String({ minLength: 1, maxLength: 300 }), ...csrf }, { additionalProperties: false })
export const CsrfOnly = Type.Object(csrf, { additionalProperties: false })
export const ReasonForm = Type.Object({ reason: Reason.properties.reason, ...csrf }, { additionalProperties: false })

/** A browser sends one checked box as a value and several as a list. */
export const BulkForm = Type.Object(
  {
    action: Type.Enum(['redrive', 'skip']),
    reason: Reason.properties.reason,
    deliveryIds: Type.Union([ID, Type.Array(ID, { minItems: 1, maxItems: 1000 })]),
    ...csrf
  },
  { additionalProperties: false }
)
export type BulkForm = Static<typeof BulkForm>

export const IdParams = Type.Object({ id: ID })
export const CifIdParams = Type.Object({ cifId: Type.String({ pattern: CIF_ID_PATTERN }) })
export const CustomerQuery = Type.Object({ cifId: Type.Optional(Type.String({ pattern: CIF_ID_PATTERN })) }, { additionalProperties: false })
export const DeliveriesQuery = DeliveryFilters

export const ActionsQuery = Type.Object(
  {
    operator: Type.Optional(Type.String({ maxLength: 100, pattern: '^[^\\p{C}\\p{Z}]+$' })),
    cifId: Type.Optional(Type.String({ pattern: CIF_ID_PATTERN })),
    action: Type.Optional(Type.Enum(Object.values(operatorActions))),
    before: Type.Optional(Type.String({ pattern: '^[0-9]{1,18}$' })),
    requestState: Type.Optional(Type.Enum([...requestStates]))
  },
  { additionalProperties: false }
)
export type ActionsQuery = Static<typeof ActionsQuery>
