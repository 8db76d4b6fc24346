/**
 * Everything a run is: its config and where it stands (weights, Adam state, step, the current
 * epoch's running sums, history). A checkpoint is this state; resuming from it continues the run
 * bit for bit, because every shuffle and dropout mask is derived from (seed, epoch, step).
 */
import { z } from 'zod';
import { WIRE_DTYPES } from '../protocol/wire-dtype.js';
import type { AdamState } from '../training/optimizer/adam.js';
import { type UpdateRule, adamRule } from '../training/optimizer/apply-update.js';
import type { LocalSteps } from '../training/step/local-steps.js';
import { paramLayout } from '../training/models/spec.js';
import { getModel, modelNames } from '../training/models/zoo.js';
import { checkTrainableState } from './state-checks.js';

const runConfigSchema = z.object({
  runId: z.string().min(1),
  model: z.string(),
  seed: z.number().int().nonnegative(),
  batchSize: z.number().int().positive(),
  microBatchSize: z.number().int().positive(),
  epochs: z.number().int().positive(),
  maxSteps: z.number().int().positive().nullable(),
  adam: z.object({
    learningRate: z.number().positive(),
    beta1: z.number(),
    beta2: z.number(),
    epsilon: z.number().positive(),
  }),
  /** The learning rate of epoch e is adam.learningRate · lrDecay^e. */
  lrDecay: z.number().positive().max(1),
  evalChunkSize: z.number().int().positive(),
  /**
   * Global-norm clipping of the averaged gradient before Adam (coordinator/clipping.ts); null: off. Older
   * checkpoints have none.
   */
  maxGradNorm: z.number().positive().nullable().default(null),
  /**
   * Local steps (--local-steps, --replicas; training/step/local-steps.ts): each round, `replicas` virtual replicas
   * start from the global weights and take `steps` inner Adam steps of `batchSize` samples each (Adam's moments
   * reset every round); the outer Nesterov step applies their mean delta. null: every step is synchronous.
   */
  localSteps: z
    .object({
      steps: z.number().int().positive(),
      replicas: z.number().int().positive(),
      outer: z.object({ learningRate: z.number().positive(), momentum: z.number().min(0).max(1) }),
    })
    .nullable()
    .default(null),
  /**
   * Payload dtype of gradients and weights on the wire; f32 keeps results bit-identical across worker counts.
   */
  wire: z.enum(WIRE_DTYPES),
  train: z.object({ spec: z.string(), fingerprint: z.string(), count: z.number().int().positive() }),
  test: z.object({ spec: z.string(), fingerprint: z.string(), count: z.number().int().positive() }),
});
export type RunConfig = z.infer<typeof runConfigSchema>;

const epochSummarySchema = z.object({
  epoch: z.number().int().positive(),
  step: z.number().int().nonnegative(),
  trainLoss: z.number(),
  trainAccuracy: z.number(),
  testLoss: z.number().nullable(),
  testAccuracy: z.number().nullable(),
  wallSeconds: z.number(),
});
export type EpochSummary = z.infer<typeof epochSummarySchema>;

const accumulatorSchema = z.object({
  lossSum: z.number(),
  correct: z.number().int(),
  samples: z.number().int(),
});
export type EpochAccumulator = z.infer<typeof accumulatorSchema>;

const metaSchema = z.object({
  kind: z.literal('gradfleet-run'),
  config: runConfigSchema,
  step: z.number().int().nonnegative(),
  adamStep: z.number().int().nonnegative(),
  epochAccumulator: accumulatorSchema,
  history: z.array(epochSummarySchema),
  savedAt: z.string(),
});

export interface RunState {
  config: RunConfig;
  /** Steps completed = the weights version. */
  step: number;
  weights: Float32Array;
  adam: AdamState;
  epochAccumulator: EpochAccumulator;
  history: EpochSummary[];
  /**
   * Train loss of each step's global batch: [i] is step i + 1 (NaN where a checkpoint predating it left no
   * record).
   */
  stepLosses: number[];
}

export const emptyAccumulator = (): EpochAccumulator => ({ lossSum: 0, correct: 0, samples: 0 });

export function stateToCheckpoint(state: RunState): { meta: unknown; tensors: Record<string, Float32Array> } {
  checkTrainableState({ weights: state.weights, ...state.adam }, undefined, `step ${state.step}`);
  return {
    meta: {
      kind: 'gradfleet-run',
      config: state.config,
      step: state.step,
      adamStep: state.adam.step,
      epochAccumulator: state.epochAccumulator,
      history: state.history,
      savedAt: new Date().toISOString(),
    },
    tensors: {
      weights: state.weights,
      adam_m: state.adam.m,
      adam_v: state.adam.v,
      step_losses: Float32Array.from(state.stepLosses),
    },
  };
}

export function stateFromCheckpoint(
  meta: unknown,
  tensors: Record<string, Float32Array>,
  where: string,
): RunState {
  const parsed = metaSchema.safeParse(meta);
  if (!parsed.success) {
    // zod's messages say what was expected and of which type, never the value found.
    const issue = parsed.error.issues[0];
    throw new Error(
      `${where}: not a gradfleet run checkpoint (${issue.path.join('.') || 'meta'}: ${issue.message})`,
    );
  }
  const { weights, adam_m: m, adam_v: v } = tensors;
  if (!weights || !m || !v || m.length !== weights.length || v.length !== weights.length) {
    throw new Error(`${where}: checkpoint lacks consistent weights/adam_m/adam_v tensors`);
  }
  const { config, step, adamStep, epochAccumulator, history } = parsed.data;
  // Named by this build's list, not by the file's string: error messages never quote a checkpoint.
  if (!modelNames().includes(config.model))
    throw new Error(`${where}: the checkpoint's model is none this build knows (${modelNames().join(', ')})`);
  checkTrainableState({ weights, m, v }, paramLayout(getModel(config.model)).size, where);
  // Checkpoints written before per-step losses were kept have none: those steps show as a gap.
  const losses = tensors.step_losses ?? new Float32Array(step).fill(Number.NaN);
  if (losses.length !== step)
    throw new Error(`${where}: checkpoint has ${losses.length} per-step losses for ${step} steps`);
  return {
    config,
    step,
    weights,
    adam: { step: adamStep, m, v },
    epochAccumulator,
    history,
    stepLosses: Array.from(losses),
  };
}

/** Adam's settings for a step of `epoch` (in a run of local steps, the inner steps'): decayed per epoch. */
function adamForEpoch(config: RunConfig, epoch: number): RunConfig['adam'] {
  return { ...config.adam, learningRate: config.adam.learningRate * config.lrDecay ** epoch };
}

/** What the reduced average of a step of `epoch` is applied with: Adam, or the outer step of local steps. */
export function updateRuleFor(config: RunConfig, epoch: number): UpdateRule {
  return config.localSteps
    ? { kind: 'nesterov', ...config.localSteps.outer }
    : adamRule(adamForEpoch(config, epoch));
}

/** How a worker trains each replica of a round of local steps, or undefined for synchronous steps. */
export function localStepsOf(config: RunConfig): LocalSteps | undefined {
  const local = config.localSteps;
  return local
    ? { steps: local.steps, batchSize: config.batchSize, adam: config.adam, lrDecay: config.lrDecay }
    : undefined;
}

/**
 * The batches the coordinator hands out. Synchronous: the batch, in micro-batches. Local steps: a round is the
 * step, and each replica is one of its micro-batches, holding its `steps` inner batches back to back.
 */
export function batchingOf(config: RunConfig): { batchSize: number; microBatchSize: number } {
  const local = config.localSteps;
  if (!local) return config;
  const replicaSamples = local.steps * config.batchSize;
  return { batchSize: local.replicas * replicaSamples, microBatchSize: replicaSamples };
}
