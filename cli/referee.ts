/**
 * The coordinator's referee for --verify-fraction: the worker's own compute path (worker/compute.ts) run in
 * the coordinator's process, on the best CPU or GPU backend here. It computes only when a spot check finds
 * two workers disagreeing, so its cost is paid per lie, not per step.
 */
import type { Logger } from 'pino';
import type { Referee, RefereeFactory } from '../coordinator/referee.js';
import { selectBackend } from '../training/backends/select.js';
import { ModelRunner } from '../training/step/model-runner.js';
import { WorkerCompute } from '../worker/compute.js';

export function refereeFactory(log: Logger): RefereeFactory {
  return async (run): Promise<Referee> => {
    const backend = await selectBackend('auto', log);
    // Whole nodes: the referee hands its node to the comparison at once.
    const compute = new WorkerCompute({ ...run, bucketValues: 0 }, (m) => new ModelRunner(m));
    return {
      backend: backend.name,
      async contribution(assign, weights) {
        compute.setWeights(assign.weightsVersion, weights);
        const nodes: Awaited<ReturnType<Referee['contribution']>>[] = [];
        // The payload's buffer is recycled once emit returns: keep a copy.
        await compute.contributions(assign, ({ message, payload }) => {
          if (message.type === 'contribution')
            nodes.push({ message: { ...message }, payload: payload.slice() });
        });
        if (nodes.length !== 1)
          throw new Error(
            `the referee computed ${nodes.length} nodes for micro-batches [${assign.first}, ${assign.first + assign.count}), not one`,
          );
        return nodes[0];
      },
      async evaluation(request, weights) {
        compute.setWeights(request.weightsVersion, weights);
        return compute.evaluate(request);
      },
    };
  };
}
