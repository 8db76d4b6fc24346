/**
 * The run's current weights, sent to each worker that lacks them: encoded once per version and
 * shared by every link (a transport may publish it once for all, see Link.sendShared).
 */
import { type WeightsParts, weightsFrames } from '../protocol/weights-parts.js';
import type { WireDtype } from '../protocol/wire-dtype.js';
import type { RunState } from './run-state.js';
import type { WorkerSession } from './worker-pool.js';

export class WeightsBroadcast {
  private frames: { version: number; bytes: Uint8Array[] } | undefined;

  /** `parts`: with --bucket-mb, the weights go in parts front layers first (protocol/weights-parts.ts). */
  constructor(
    private readonly state: RunState,
    private readonly wire: WireDtype,
    private readonly parts?: WeightsParts,
  ) {}

  /** Sends the current weights unless the worker already holds them. */
  ensure(session: WorkerSession): void {
    const { step, weights } = this.state;
    if (session.weightsVersion === step) return;
    if (this.frames?.version !== step)
      this.frames = { version: step, bytes: weightsFrames(step, 0, weights, this.wire, this.parts) };
    for (const frame of this.frames.bytes) session.channel.sendShared(frame);
    session.weightsVersion = step;
  }

  publish(sessions: readonly WorkerSession[]): void {
    for (const s of sessions) this.ensure(s);
  }
}
