/**
 * The shared secret's flags, for the coordinator and its workers. From a file or the environment
 * it stays out of `ps` and shell history; --secret on the command line is offered for quick tries.
 */
import { type Command, Option } from 'commander';
import { SharedSecret } from '../protocol/auth.js';
import { readFlagFile } from './options.js';
import { UsageError } from '../common/errors.js';

const SECRET_ENV = 'GRADFLEET_SECRET';

export interface SecretFlags {
  secret?: string;
  secretFile?: string;
}

export function addSecretOptions(cmd: Command, who: string): Command {
  return cmd
    .addOption(
      new Option(
        '--secret <value>',
        `shared secret ${who} (at least 16 bytes; prefer --secret-file or ${SECRET_ENV})`,
      ).env(SECRET_ENV),
    )
    .option('--secret-file <path>', 'read the shared secret from this file (trailing newline ignored)');
}

/** An empty value (`GRADFLEET_SECRET=` from a compose file with no secret set) means none. */
export function secretOf(flags: SecretFlags): SharedSecret | undefined {
  if (flags.secret && flags.secretFile !== undefined)
    throw new UsageError(`give the secret once: --secret (or ${SECRET_ENV}) or --secret-file, not both`);
  if (flags.secretFile !== undefined) {
    return new SharedSecret(
      readFlagFile('--secret-file', flags.secretFile)
        .toString('utf8')
        .replace(/\r?\n$/, ''),
    );
  }
  return flags.secret === undefined || flags.secret === '' ? undefined : new SharedSecret(flags.secret);
}

/**
 * How local workers get the secret: its file's path, or the value in their environment (never in their
 * arguments).
 */
export function workerSecretArgs(flags: SecretFlags): { args: string[]; env: Record<string, string> } {
  if (flags.secretFile !== undefined) return { args: ['--secret-file', flags.secretFile], env: {} };
  return { args: [], env: flags.secret ? { [SECRET_ENV]: flags.secret } : {} };
}
