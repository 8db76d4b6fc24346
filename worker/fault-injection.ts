/**
 * Failures a test can inject into a worker to prove the coordinator copes (the hidden --fault-*
 * flags). It wraps the worker's compute path through `ComputeInterceptor`; a production worker
 * never loads this module (the CLI imports it only when a --fault-* flag is given).
 */
import type { Logger } from 'pino';
import type { MessageOf } from '../protocol/messages.js';
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
    },
  };
}
