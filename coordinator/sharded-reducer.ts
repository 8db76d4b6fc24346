/**
 * The step's reduce → average → Adam → publish on S shard reducers (shard/): the coordinator keeps
 * only the nodes' sums of loss, accuracy and samples; each shard reduces its slice of the named
 * nodes in tree order, steps Adam on it and publishes its slice of the new weights to the workers.
 * The coordinator's copy of the weights and moments is brought up to date only when asked (sync).
 */
import { averageOf } from '../training/parallel/reduction-tree.js';
import type { StepPosition } from '../training/parallel/step-plan.js';
import type { GradientReducer, StepUpdate } from './gradient-reducer.js';
import { type RunState, adamForEpoch } from './run-state.js';
import type { ShardReport, ShardSet } from './shard-set.js';
import type { StepGather } from './step-gather.js';
import type { WorkerSession } from './worker-pool.js';

export class ShardedReducer implements GradientReducer {
  readonly nodePayloadSize = 0;
  /** The version the shards are producing while a reduce is out: workers may report holding it early. */
  private publishing: number | undefined;

  constructor(
    private readonly state: RunState,
    private readonly shards: ShardSet,
    private readonly reported?: (reports: ShardReport[]) => void,
  ) {}

  /**
   * The shards send every version to each worker joined to them: nothing to send, only the version to expect.
   */
  ensureWeights(session: WorkerSession): void {
    session.weightsVersion = Math.max(session.weightsVersion, this.publishing ?? this.state.step);
  }

  sync(): Promise<void> {
    return this.shards.collect();
  }

  async apply(
    gather: StepGather,
    position: StepPosition,
    workers: readonly WorkerSession[],
  ): Promise<StepUpdate> {
    const { state } = this;
    const t0 = performance.now();
    // The nodes carry no values here: this sums their loss, correct and sample counts.
    const root = gather.reduce();
    const { lossSum, correct, samples } = root;
    const average = averageOf(root);
    const adam = adamForEpoch(state.config, position.epoch);
    this.publishing = state.step + 1;
    for (const w of workers) this.ensureWeights(w);
    let reports: ShardReport[];
    try {
      reports = await this.shards.reduce({
        step: position.step,
        microBatches: gather.batch.microBatches,
        nodes: gather.nodeOwners(),
        adam,
      });
    } finally {
      this.publishing = undefined;
    }
    state.step++;
    state.adam.step++;
    this.reported?.(reports);
    const slowest = (phase: keyof ShardReport['seconds']) =>
      Math.max(...reports.map((r) => r.seconds[phase]));
    const optimizer = slowest('optimizer');
    const broadcast = slowest('broadcast');
    const norm = Math.sqrt(reports.reduce((sum, r) => sum + r.gradSquares, 0));
    return {
      lossSum,
      correct,
      samples,
      loss: average.loss,
      accuracy: average.accuracy,
      learningRate: adam.learningRate,
      gradientNorm: () => norm,
      // The round trip, less what the slowest shard spent stepping Adam and publishing: reduction and the
      // hops.
      seconds: {
        reduce: Math.max(0, (performance.now() - t0) / 1000 - optimizer - broadcast),
        optimizer,
        broadcast,
      },
    };
  }
}
