/**
 * In a sharded run a tree node is taken only when the coordinator's checks of its sums (the
 * header the worker sent it) and every shard reducer's check of its slice have passed; any one
 * refusal sends the node's micro-batches back to be computed again. Header and verdicts arrive on
 * different links, in any order: this matches them up, one gate per step.
 */
import type { MessageOf } from '../protocol/messages.js';
import { nodeKey } from '../training/parallel/reduction-tree.js';
import type { SliceVerdict } from './shard-set.js';
import type { StepGather, Verdict } from './step-gather.js';
import type { WorkerSession } from './worker-pool.js';

interface Entry {
  header?: { session: WorkerSession; message: MessageOf<'contribution'> };
  verdicts: Map<number, SliceVerdict>;
}

export interface Concluded {
  session: WorkerSession;
  message: MessageOf<'contribution'>;
  verdict: Verdict;
}

const NO_VALUES = new Float32Array(0);

export class SliceGate {
  private readonly entries = new Map<string, Entry>();
  /** Per node taken (by its tree key): Σg² of its trainable values, added up over the shards' slices. */
  readonly squares = new Map<string, number>();

  constructor(
    private readonly shards: number,
    readonly gather: StepGather,
  ) {}

  private entry(worker: string, node: { level: number; index: number }): [string, Entry] {
    const key = `${worker}|${node.level}:${node.index}`;
    let e = this.entries.get(key);
    if (!e) {
      e = { verdicts: new Map() };
      this.entries.set(key, e);
    }
    return [key, e];
  }

  /** A node's header from its worker: refused, taken (its slices all passed already), or pending. */
  header(session: WorkerSession, message: MessageOf<'contribution'>, payload: Float32Array): Verdict {
    const refusal = this.gather.check(session.id, message, payload);
    if (refusal) return refusal;
    const [key, e] = this.entry(session.id, message);
    e.header = { session, message };
    return this.decide(key, e);
  }

  /** A shard's verdict on a slice; the node's outcome when this verdict decided it. */
  verdict(shard: number, v: SliceVerdict): Concluded | undefined {
    if (v.step !== this.gather.position.step) return undefined;
    const [key, e] = this.entry(v.worker, v);
    e.verdicts.set(shard, v);
    if (!e.header) return undefined;
    const verdict = this.decide(key, e);
    return verdict.ok === 'pending' ? undefined : { ...e.header, verdict };
  }

  private decide(key: string, e: Entry): Verdict {
    const { session, message } = e.header!;
    const refused = [...e.verdicts].find(([, v]) => v.reason !== null);
    if (refused) {
      this.entries.delete(key);
      const [shard, v] = refused;
      return {
        ok: false,
        reason: v.reason!,
        detail: `shard ${shard} refused its slice: ${v.detail}`,
        reassign: this.gather.revoke(session.id, message),
      };
    }
    if (e.verdicts.size < this.shards) return { ok: 'pending' };
    this.entries.delete(key);
    const verdict = this.gather.settle(session.id, message, NO_VALUES);
    if (verdict.ok === true)
      this.squares.set(
        nodeKey(message),
        [...e.verdicts.values()].reduce((sum, v) => sum + v.squares, 0),
      );
    return verdict;
  }
}
