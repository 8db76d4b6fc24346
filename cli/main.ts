#!/usr/bin/env node
/** The one gradfleet binary: subcommands for training, benchmarks and (soon) the cluster roles. */
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { benchCommand } from './commands/bench.js';
import { trainCommand } from './commands/train.js';

const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

const program = new Command('gradfleet')
  .description('distributed data-parallel training of MNIST CNNs')
  .version(version)
  .showHelpAfterError()
  .exitOverride()
  .addCommand(trainCommand())
  .addCommand(benchCommand());

try {
  await program.parseAsync(process.argv);
} catch (err) {
  // Commander has already printed its own usage errors; everything else gets one clear line here,
  // never a stack dump through the wasm runtime's uncaught-exception handler.
  if (err instanceof CommanderError) process.exit(err.exitCode);
  process.stderr.write(`gradfleet: error: ${(err as Error).message}\n`);
  if (process.env.GRADFLEET_DEBUG) process.stderr.write(`${(err as Error).stack}\n`);
  process.exit(1);
}
