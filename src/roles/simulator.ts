import type { Config } from '../platform/config.ts'
import { onShutdown } from '../platform/lifecycle.ts'
import type { Logger } from '../platform/logger.ts'
import { startSimulator } from '../simulator/service.ts'

/** `cif-syncer simulator`: the simulated end systems alone (core banking demands CORE_BANKING_TOKEN when set). */
export async function runSimulator(config: Config, log: Logger): Promise<void> {
  const token = process.env.CORE_BANKING_TOKEN
  const simulator = await startSimulator(
    { ...config.simulator, ...(token ? { requiredAuthorization: { 'core-banking': `Bearer ${token}` } } : {}) },
    log
  )
  onShutdown(log, simulator.close)
}
