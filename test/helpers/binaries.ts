/** External programs the tests run for real; a missing one fails the test with how to install it. */
import { execFileSync } from 'node:child_process';

export function requireBinary(name: string): string {
  try {
    return execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error(
      `${name} is not installed: run scripts/install-test-deps.sh (Debian/Ubuntu: apt-get install prometheus nats-server)`,
    );
  }
}
