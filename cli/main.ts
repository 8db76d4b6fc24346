#!/usr/bin/env node
/** The one gradfleet binary: subcommands for training, the cluster roles, evaluation and benchmarks. */
import { Command, CommanderError } from 'commander';
import { isEntryPoint } from '../common/entry-point.js';
import { UsageError } from '../common/errors.js';
import { configureLogFormat } from '../common/logger.js';
import { releaseBackend } from '../training/backends/select.js';
import { packageVersion } from '../common/package-info.js';
import { benchCommand } from './commands/bench.js';
import { coordinatorCommand } from './commands/coordinator.js';
import { evalCommand, predictCommand } from './commands/eval.js';
import { trainCommand } from './commands/train.js';
import { workerCommand } from './commands/worker.js';
import { shardCommand } from './commands/shard.js';

/** The program and its subcommands, not yet parsed (docs/cli.md and the docs tests read it). */
export function buildProgram(): Command {
  return (
    new Command('gradfleet')
      .description('distributed data-parallel training of MNIST CNNs')
      .version(packageVersion)
      .showHelpAfterError()
      .exitOverride()
      // Loggers are made inside the actions, so they all see the format that --json asks for.
      .hook('preAction', (_program, action) => configureLogFormat({ json: action.opts().json === true }))
      .addCommand(trainCommand())
      .addCommand(coordinatorCommand())
      .addCommand(workerCommand())
      .addCommand(shardCommand())
      .addCommand(evalCommand())
      .addCommand(predictCommand())
      .addCommand(benchCommand())
  );
}

if (isEntryPoint(import.meta.url)) {
  try {
    await buildProgram().parseAsync(process.argv);
    // A WebGPU device keeps Node running until it is destroyed.
    releaseBackend();
  } catch (err) {
    // Commander has already printed its own usage errors; everything else gets one clear line here,
    // never a stack dump through the wasm runtime's uncaught-exception handler.
    if (err instanceof CommanderError) process.exit(err.exitCode);
    if (err instanceof UsageError) {
      // The user's to fix, not a bug: the message alone, on one line, even under GRADFLEET_DEBUG.
      process.stderr.write(`gradfleet: error: ${err.message.replace(/\s*\n\s*/g, ' ')}\n`);
      process.exit(1);
    }
    process.stderr.write(`gradfleet: error: ${(err as Error).message}\n`);
    if (process.env.GRADFLEET_DEBUG) process.stderr.write(`${(err as Error).stack}\n`);
    process.exit(1);
  }
}
