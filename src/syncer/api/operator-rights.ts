import { mayDo, type OperatorRight, type OperatorRole, operatorRights } from '../../contracts/access.ts'
import { httpProblems, Refusal } from '../../contracts/problems.ts'

/**
 * Refuses (403, naming the role it needs) an operator whose role does not carry `right`: one rule for the
 * admin API, the reconciliation API and the console.
 */
export function requireOperatorRight(roles: ReadonlyMap<string, OperatorRole>, caller: string, right: OperatorRight, what: string): void {
  if (!mayDo(roles.get(caller), right)) {
    throw new Refusal(httpProblems.forbidden, `Operator ${caller} may not ${what}: that needs the role ${operatorRights[right].join(' or ')}.`)
  }
}
