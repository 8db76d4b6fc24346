/**
 * Failures a test can inject into a worker to prove the coordinator copes (the hidden --fault-*
 * flags). It wraps the worker's compute path through `ComputeInterceptor`; a production worker
 * never loads this module (the CLI imports it only when a --fault-* flag is given).
 */
import type { Logger } from 'pino';
import type { MessageOf } from '../protocol/messages.js';
import type { Dataset } from '../training/data/index.js';
import type { LieMode } from './lie-modes.js';
import type { ComputedNode } from './compute.js';
import type { ComputeInterceptor } from './worker.js';

export interface FaultPlan {
  /** Poison the first contribution of this step with NaN. */
  nanAtStep?: number;
  /** Exit the process abruptly when assigned this step. */
  exitAtStep?: number;
  /** Burn this much CPU before each assignment, counted as compute: a slower machine. */
  slowMs?: number;
  /**
   * Report this many seconds of compute for every node, whatever it took: a worker lying to grab a bigger
   * share.
   */
  reportComputeSeconds?: number;
  /** Multiply the first contribution of this step by OUTLIER_FAULT_SCALE: finite, in range, and wrong. */
  scaleAtStep?: number;
  /** Lie, as a worker holding the secret might, from this step on (with `lieFromStep`, default 0). */
  lie?: LieMode;
  lieFromStep?: number;
}

/** Large enough to stand out from the step's median node, small enough to pass every range check. */
const OUTLIER_FAULT_SCALE = 1000;

/** Busy-waits (a slower processor, not an idle one); returns the seconds spent. */
function burn(ms: number): number {
  const started = performance.now();
  while (performance.now() - started < ms);
  return (performance.now() - started) / 1000;
}

export function faultInjector(plan: FaultPlan, log: Logger): ComputeInterceptor {
  const lying = (step: number) => plan.lie !== undefined && step >= (plan.lieFromStep ?? 0);
  let nanInjected = false;
  let scaleInjected = false;
  /** Burnt before an assignment, owed to its first node's compute time. */
  let stall = 0;
  return {
    beforeAssignment(assign: MessageOf<'assign'>): void {
      if (plan.exitAtStep === assign.step) {
        log.warn(`fault injection: exiting at step ${assign.step}`);
        process.exit(3);
      }
      stall = plan.slowMs ? burn(plan.slowMs) : 0;
    },
    beforeSend({ message, payload }: ComputedNode): void {
      message.computeSeconds += stall;
      stall = 0;
      if (plan.nanAtStep === message.step && !nanInjected) {
        nanInjected = true;
        payload[0] = Number.NaN;
        log.warn(`fault injection: NaN in step ${message.step}'s contribution`);
      }
      if (plan.scaleAtStep === message.step && !scaleInjected) {
        scaleInjected = true;
        for (let i = 0; i < payload.length; i++) payload[i] *= OUTLIER_FAULT_SCALE;
        log.warn(`fault injection: step ${message.step}'s contribution scaled by ${OUTLIER_FAULT_SCALE}`);
      }
      if (plan.reportComputeSeconds !== undefined) message.computeSeconds = plan.reportComputeSeconds;
      if (!lying(message.step)) return;
      if (plan.lie === 'flip-sign') for (let i = 0; i < payload.length; i++) payload[i] = -payload[i];
      if (plan.lie === 'scale') for (let i = 0; i < payload.length; i++) payload[i] *= 1.5;
      if (plan.lie === 'loss') message.lossSum /= 2;
      // The node beside its own at the same level (or the one before, at the end): another worker's.
      if (plan.lie === 'unassigned')
        message.index = message.index % 2 === 0 ? message.index + 1 : message.index - 1;
    },
    trainingData(train: Dataset): void {
      if (plan.lie !== 'labels' || !train.labels) return;
      let flipped = 0;
      for (let i = 0; i < train.labels.length; i++)
        if (train.labels[i] === 7) {
          train.labels[i] = 1;
          flipped++;
        }
      log.warn(`fault injection: ${flipped} training labels 7 turned into 1`);
    },
    beforeEvaluation(request: MessageOf<'evaluate'>, payload: Float32Array, labels: Uint8Array): void {
      if (plan.lie !== 'eval') return;
      const start = request.first * request.chunkSize;
      payload.forEach((_, i) => (payload[i] = labels[start + i]));
    },
  };
}
