/**
 * The run's current weights, sent to each worker that lacks them: encoded once per version and
 * shared by every link (a transport may publish it once for all, see Link.sendShared).
 */
import { encodeFrame } from '../protocol/codec.js';
import type { WireDtype } from '../protocol/wire-dtype.js';
import type { RunState } from './run-state.js';
import type { WorkerSession } from './worker-pool.js';

export class WeightsBroadcast {
  private frame: { version: number; bytes: Uint8Array } | undefined;

  constructor(
    private readonly state: RunState,
    private readonly wire: WireDtype,
  ) {}

  /** Sends the current weights unless the worker already holds them. */
  ensure(session: WorkerSession): void {
    const { step, weights } = this.state;
    if (session.weightsVersion === step) return;
    if (this.frame?.version !== step) {
      this.frame = {
        version: step,
        bytes: encodeFrame({ type: 'weights', version: step, payloadValues: weights.length }, weights, {
          dtype: this.wire,
        }),
      };
    }
    session.channel.sendShared(this.frame.bytes);
    session.weightsVersion = step;
  }

  publish(sessions: readonly WorkerSession[]): void {
    for (const s of sessions) this.ensure(s);
  }
}
