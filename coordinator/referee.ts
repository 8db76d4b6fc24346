/**
 * The coordinator's own computation, the arbiter of a spot check that failed: when a worker's node and
 * another worker's recomputation differ, whichever differs from the referee's lied. The coordinator cannot
 * be lied to about its own arithmetic, and this works with two workers, where no third one exists.
 *
 * The host builds it (cli/referee.ts wraps the worker's compute path): the coordinator never knows how.
 */
import type { LocalSteps } from '../training/step/local-steps.js';
import type { MessageOf } from '../protocol/messages.js';
import type { Dataset } from '../training/data/index.js';
import type { ModelSpec } from '../training/models/spec.js';
import type { BatchGeometry } from '../training/parallel/step-plan.js';

interface ComputedResult<M> {
  message: M;
  payload: Float32Array;
}

export interface Referee {
  /** The backend it computes on: results from workers on the same one must match it bit for bit. */
  readonly backend: string;
  /** The node that `assign` covers (exactly one tree node), computed with `weights` (version `assign.weightsVersion`). */
  contribution(
    assign: MessageOf<'assign'>,
    weights: Float32Array,
  ): Promise<ComputedResult<MessageOf<'contribution'>>>;
  /** The test chunks `request` covers, computed with `weights`. */
  evaluation(
    request: MessageOf<'evaluate'>,
    weights: Float32Array,
  ): Promise<ComputedResult<MessageOf<'evaluation'>>>;
}

/** What a referee computes from: the run's model, seed, batch geometry and data. */
export interface RefereeContext {
  model: ModelSpec;
  seed: number;
  geometry: BatchGeometry;
  train: Dataset;
  test: Dataset;
  localSteps: LocalSteps | undefined;
}

/** Builds the referee once the run's config is known (the CLI loads a compute backend for it). */
export type RefereeFactory = (context: RefereeContext) => Promise<Referee>;
