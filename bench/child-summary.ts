/**
 * The --json summary of a gradfleet child process (train, coordinator), or an error with the end of its
 * stderr.
 */
import type { ChildProcess } from 'node:child_process';
import type { RunSummary } from '../coordinator/launch.js';

/** Last characters of a child's stderr: enough for the error, never a whole dumped wasm runtime. */
export const tail = (s: string, n = 1500) => (s.length > n ? `…${s.slice(-n)}` : s);

/** Waits for `child` (spawned with stdout and stderr piped) to exit; `what` names it in errors. */
export async function summaryOf(child: ChildProcess, what: string): Promise<RunSummary> {
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-20_000)));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (c) => resolve(c));
  });
  if (code !== 0) throw new Error(`${what} exited with code ${code}: ${tail(stderr).trim()}`);
  const last = stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(last) as RunSummary;
  } catch {
    throw new Error(`${what}: no JSON summary on stdout (last line: ${tail(last, 300)})`);
  }
}
