import { readFile } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** Sends `signal`, waits up to `graceMs` for the process to go, then kills it. */
export async function terminate(pid: number, signal: NodeJS.Signals, graceMs: number): Promise<void> {
  if (!isAlive(pid)) return
  process.kill(pid, signal)
  const deadline = Date.now() + graceMs
  while (isAlive(pid) && Date.now() < deadline) await sleep(100)
  if (isAlive(pid)) process.kill(pid, 'SIGKILL')
  while (isAlive(pid)) await sleep(50)
}

/**
 * A local server left running by a process that was killed (its parent cannot clean up after SIGKILL)
 * still holds its port and data folder; the pid file it wrote says which process that is, and its command
 * line must still say what it is.
 */
export async function stopLeftover(pidFile: string, signal: NodeJS.Signals, commandContains: string): Promise<boolean> {
  const text = await readFile(pidFile, 'utf8').catch(() => '')
  const pid = Number(text.split('\n')[0])
  if (!Number.isInteger(pid) || pid <= 1 || !isAlive(pid)) return false
  // A stale pid file may name a process that has nothing to do with us now.
  const command = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')
  if (!command.includes(commandContains)) return false
  await terminate(pid, signal, 30_000)
  return true
}
