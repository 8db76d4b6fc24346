/**
 * `gradfleet bench adapters`: the WebGPU adapters Dawn sees. `gradfleet bench agreement`: each
 * backend's training-step contribution against the cpu backend's (bench/agreement.ts), with a
 * backend that cannot load reported as skipped with its reason instead of failing the command.
 * Both feed scripts/gpu-check.sh.
 */
import Table from 'cli-table3';
import { Command } from 'commander';
import { agreementContribution, agreementInput, compareContributions } from '../../bench/agreement.js';
import { tableStyle } from '../../common/colour.js';
import { createLogger } from '../../common/logger.js';
import { adapterLabel, listAdapters, loadDawn } from '../../training/backends/adapters.js';
import {
  BACKEND_CHOICES,
  type BackendChoice,
  BackendUnavailableError,
  selectBackend,
} from '../../training/backends/select.js';
import { modelNames } from '../../training/models/zoo.js';
import type { Contribution } from '../../training/step/model-runner.js';
import { oneOf, positiveInt, printJson } from '../options.js';

export function adaptersCommand(): Command {
  return new Command('adapters')
    .description('the WebGPU adapters (Dawn over Vulkan) this machine has, and which are software')
    .option('--json', 'print one JSON object: {adapters, reason}')
    .action(async (opts: { json?: boolean }) => {
      const loaded = await loadDawn();
      const adapters = loaded.dawn ? await listAdapters(loaded.dawn) : [];
      const reason = loaded.dawn
        ? adapters.length
          ? null
          : 'Dawn sees no adapter (no Vulkan driver?)'
        : loaded.reason;
      if (opts.json) return printJson({ adapters, reason });
      if (reason) process.stdout.write(`no WebGPU adapters: ${reason}\n`);
      adapters.forEach((a, i) => process.stdout.write(`${i}: ${adapterLabel(a)}\n`));
    });
}

export function agreementCommand(): Command {
  return new Command('agreement')
    .description('gradient agreement of every parameter with the cpu backend, per model and backend')
    .option('--model <name...>', `models (${modelNames().join(', ')})`, modelNames())
    .option('--backend <name...>', 'backends to check', ['webgpu', 'native', 'wasm'])
    .option('--batch-small <n>', 'micro-batch for mnist-small', positiveInt, 8)
    .option(
      '--batch-cnn <n>',
      'micro-batch for mnist-cnn (the cpu reference takes ~12 s at 4)',
      positiveInt,
      4,
    )
    .option('--json', 'print one JSON object per model and backend')
    .action(
      async (opts: {
        model: string[];
        backend: string[];
        batchSmall: number;
        batchCnn: number;
        json?: boolean;
      }) => {
        const log = createLogger('bench');
        const backends = opts.backend.map(oneOf(BACKEND_CHOICES)) as BackendChoice[];
        const table = new Table({
          style: tableStyle(),
          head: [
            'model',
            'backend',
            'max rel error',
            'max abs error (≈0 grads)',
            'loss error',
            'agrees',
            'note',
          ],
        });
        for (const modelName of opts.model) {
          const batch = modelName === 'mnist-small' ? opts.batchSmall : opts.batchCnn;
          await selectBackend('cpu', log);
          const expected: Contribution = await agreementContribution(modelName, batch);
          for (const choice of backends) {
            let row: Record<string, unknown>;
            try {
              const info = await selectBackend(choice, log);
              const a = compareContributions(
                agreementInput(modelName, batch).layout,
                await agreementContribution(modelName, batch),
                expected,
              );
              row = {
                model: modelName,
                backend: info.name,
                batch,
                adapter: info.adapter ?? null,
                ok: a.ok,
                max_rel_error: a.max_rel_error,
                max_abs_error: a.max_abs_error,
                loss_abs_error: a.loss_abs_error,
                failing: a.params.filter((p) => !p.ok).map((p) => p.name),
              };
              table.push([
                modelName,
                info.name,
                a.max_rel_error.toExponential(2),
                a.max_abs_error.toExponential(2),
                a.loss_abs_error.toExponential(2),
                a.ok ? 'yes' : 'NO',
                info.adapter ? adapterLabel(info.adapter) : '',
              ]);
            } catch (err) {
              if (!(err instanceof BackendUnavailableError)) throw err;
              row = { model: modelName, backend: choice, batch, skipped: err.message };
              table.push([modelName, choice, '', '', '', 'skipped', err.message.slice(0, 120)]);
            }
            if (opts.json) printJson(row);
          }
        }
        if (!opts.json)
          process.stdout.write(
            `Training-step contribution vs the cpu backend (tolerance: relative 1e-4, absolute 1e-5 where the reference norm < 1e-4):\n${table.toString()}\n`,
          );
      },
    );
}
