/**
 * The coordinator's side of its shard reducers (shard/): which joined shard holds which slice of
 * the flat vector, loading each with its slice of the run's state, the reduce round trip of a step,
 * and gathering their slices back for a checkpoint. Workers are let in only once every slice is
 * served: their welcome carries the shard map.
 */
import type { Logger } from 'pino';
import { type MessageOf, SHARD_TENSORS, type ShardMessage, type ShardTensor } from '../protocol/messages.js';
import type { ParamSlice } from '../training/optimizer/adam.js';
import { ExactSquares } from '../training/optimizer/exact-squares.js';
import { type DistanceSums, addDistanceSums } from '../training/parallel/node-distance.js';
import { planShards } from '../training/parallel/shard-plan.js';
import { ReducerStateLost } from './gradient-reducer.js';
import type { RunState } from './run-state.js';
import type { ShardSession } from './shard-role.js';
import type { WorkerPool } from './worker-pool.js';

export type SliceVerdict = MessageOf<'sliceVerdict'>;
/**
 * A shard's report of a reduced step, with the round trip from the coordinator's request to the report, on
 * its clock.
 */
export type ShardReport = MessageOf<'reduced'> & { shard: string; roundTripSeconds: number };

interface Slot {
  slice: ParamSlice;
  session?: ShardSession;
  loadedVersion?: number;
}

interface Waiter<T> {
  resolve(value: T): void;
  reject(err: Error): void;
}

export interface ShardSetOptions {
  count: number;
  state: RunState;
  pool: WorkerPool;
  log: Logger;
  /** Shards report each node slice's Σg² in their verdicts (--outlier-factor). */
  nodeSquares: boolean;
  /** A slice verdict from a shard (the coordinator's gate decides what it means for the node). */
  verdict(shard: number, verdict: SliceVerdict): void;
  /** Shards connected changed (metrics). */
  connected?(count: number): void;
  lost?(shard: string, reason: string): void;
}

export class ShardSet {
  readonly slices: ParamSlice[];
  private readonly slots: Slot[];
  private allLoaded: Waiter<void>[] = [];
  private reduceWait:
    | {
        step: number;
        sentAt: number;
        reports: Map<number, ShardReport>;
        waiter: Waiter<ShardReport[]>;
        /** --max-grad-norm: each shard's exact Σg², and what makes the clip scale of their total. */
        clip?: { squares: Map<number, ExactSquares>; scaleOf(total: ExactSquares): number };
      }
    | undefined;
  private compareWait:
    | {
        request: Omit<MessageOf<'compare'>, 'type'>;
        parts: Map<number, DistanceSums>;
        waiter: Waiter<DistanceSums>;
      }
    | undefined;
  private collectWait:
    | {
        parts: Map<
          number,
          Partial<Record<ShardTensor, Float32Array>> & { adamStep?: number; version?: number }
        >;
        waiter: Waiter<void>;
      }
    | undefined;

  constructor(private readonly settings: ShardSetOptions) {
    this.slices = planShards(settings.state.weights.length, settings.count);
    this.slots = this.slices.map((slice) => ({ slice }));
    settings.pool.setShardEvents({
      joined: (s) => this.joined(s),
      message: (s, m, p) => this.message(s, m, p),
      lost: (s, reason) => this.lost(s, reason),
    });
    this.closeDoor();
  }

  get count(): number {
    return this.slots.length;
  }

  get connected(): number {
    return this.slots.filter((s) => s.session).length;
  }

  /**
   * Between a lost shard and the rollback's reload: whatever loads meanwhile holds a state about to be
   * undone.
   */
  private suspended = false;

  private get serving(): boolean {
    return !this.suspended && this.slots.every((s) => s.session && s.loadedVersion !== undefined);
  }

  private closeDoor(): void {
    const loaded = this.slots.filter((s) => s.session && s.loadedVersion !== undefined).length;
    this.settings.pool.admitWorkers({
      open: false,
      why: `waiting for shard reducers: ${this.connected} of ${this.count} joined, ${loaded} loaded`,
    });
  }

  /** Resolves once every slice is held by a loaded shard. */
  ready(): Promise<void> {
    if (this.serving) return Promise.resolve();
    return new Promise((resolve, reject) => this.allLoaded.push({ resolve, reject }));
  }

  private joined(session: ShardSession): void {
    const index = this.slots.findIndex((s) => !s.session);
    if (index < 0) {
      session.channel.reject('cluster_full', `all ${this.count} slices are served (--shards ${this.count})`);
      return session.channel.link.close('no slice free');
    }
    const slot = this.slots[index];
    slot.session = session;
    slot.loadedVersion = undefined;
    session.channel.send({
      type: 'shardAssign',
      index,
      ...slot.slice,
      ...(this.settings.nodeSquares && { nodeSquares: true }),
    });
    this.load(index);
    this.closeDoor();
    this.settings.connected?.(this.connected);
  }

  /**
   * Sends shard `index` its slice of the run's current state (the state must be current: a start, a resume or
   * a rollback).
   */
  private load(index: number): void {
    const { session, slice } = this.slots[index];
    const { state } = this.settings;
    const whole: Record<ShardTensor, Float32Array> = {
      weights: state.weights,
      adam_m: state.adam.m,
      adam_v: state.adam.v,
    };
    for (const tensor of SHARD_TENSORS) {
      const values = whole[tensor].subarray(slice.offset, slice.offset + slice.size);
      session!.channel.send(
        {
          type: 'shardState',
          tensor,
          version: state.step,
          adamStep: state.adam.step,
          payloadValues: values.length,
        },
        values,
      );
    }
  }

  /**
   * Reloads every shard from the run's state (after the coordinator rolled it back); workers are let in once
   * all have loaded it.
   */
  reloadAll(): void {
    this.suspended = false;
    this.slots.forEach((slot, i) => {
      if (!slot.session) return;
      slot.loadedVersion = undefined;
      this.load(i);
    });
  }

  private message(session: ShardSession, message: ShardMessage, payload: Float32Array): void {
    const index = this.slots.findIndex((s) => s.session === session);
    if (index < 0) return;
    switch (message.type) {
      case 'shardLoaded':
        return this.onLoaded(index, message.version);
      case 'sliceVerdict':
        return this.settings.verdict(index, message);
      case 'reduced':
        return this.onReduced(index, session, message);
      case 'shardState':
        return this.onState(index, message, payload);
      case 'sliceSquares':
        return this.onSquares(index, session, message);
      case 'comparison':
        return this.onComparison(index, session, message);
      default:
        return session.channel.reject(
          'unexpected_message',
          `${message.type} from shard reducer ${session.id}`,
        );
    }
  }

  private onLoaded(index: number, version: number): void {
    const slot = this.slots[index];
    if (version !== this.settings.state.step)
      return slot.session!.channel.reject(
        'stale_result',
        `loaded version ${version}, the run is at ${this.settings.state.step}`,
      );
    slot.loadedVersion = version;
    if (!this.serving) return;
    const shards = this.slots.map((s) => ({ ...s.slice, url: s.session!.serves }));
    this.settings.pool.admitWorkers({ open: true, shards });
    this.settings.log.info(
      { shards: shards.map((s) => s.url) },
      `${this.count} shard reducer(s) serving: workers may join`,
    );
    for (const w of this.allLoaded.splice(0)) w.resolve();
  }

  private lost(session: ShardSession, reason: string): void {
    const slot = this.slots.find((s) => s.session === session);
    if (!slot) return;
    slot.session = undefined;
    slot.loadedVersion = undefined;
    // Until the run has rolled back (reloadAll), no slice is served: a replacement loaded now would hold the
    // lost state.
    this.suspended = true;
    this.closeDoor();
    this.settings.connected?.(this.connected);
    this.settings.lost?.(session.id, reason);
    const err = new ReducerStateLost(`shard reducer ${session.id} left: ${reason}`);
    this.reduceWait?.waiter.reject(err);
    this.reduceWait = undefined;
    this.collectWait?.waiter.reject(err);
    this.collectWait = undefined;
    this.compareWait?.waiter.reject(err);
    this.compareWait = undefined;
  }

  /**
   * Every shard reduces the step's nodes and publishes its slice; resolves with their reports. With
   * `scaleOf` (--max-grad-norm), each shard first reports its slice's exact Σg², and every shard scales
   * its slice by `scaleOf(their total)` before Adam.
   */
  reduce(
    request: Omit<MessageOf<'reduce'>, 'type' | 'clip'>,
    scaleOf?: (total: ExactSquares) => number,
  ): Promise<ShardReport[]> {
    if (!this.serving)
      return Promise.reject(new ReducerStateLost(`${this.count - this.connected} shard reducer(s) missing`));
    return new Promise((resolve, reject) => {
      this.reduceWait = {
        step: request.step,
        sentAt: performance.now(),
        reports: new Map(),
        waiter: { resolve, reject },
        ...(scaleOf && { clip: { squares: new Map(), scaleOf } }),
      };
      for (const slot of this.slots)
        slot.session!.channel.send({ type: 'reduce', ...request, ...(scaleOf && { clip: true as const }) });
    });
  }

  private onSquares(index: number, session: ShardSession, message: MessageOf<'sliceSquares'>): void {
    const clip = this.reduceWait?.step === message.step ? this.reduceWait.clip : undefined;
    if (!clip || clip.squares.has(index))
      return session.channel.reject('stale_result', `squares of step ${message.step}, none were asked for`);
    clip.squares.set(index, new ExactSquares(message.bins));
    if (clip.squares.size < this.count) return;
    const total = new ExactSquares();
    for (const part of clip.squares.values()) total.merge(part);
    const scale = clip.scaleOf(total);
    for (const slot of this.slots)
      slot.session!.channel.send({ type: 'clipScale', step: message.step, scale });
  }

  /**
   * Every shard compares its slices of two versions of a node (an outlier and another worker's recomputation);
   * resolves with the sums over the whole vector.
   */
  compare(request: Omit<MessageOf<'compare'>, 'type'>): Promise<DistanceSums> {
    if (!this.serving)
      return Promise.reject(new ReducerStateLost(`${this.count - this.connected} shard reducer(s) missing`));
    return new Promise((resolve, reject) => {
      this.compareWait = { request, parts: new Map(), waiter: { resolve, reject } };
      for (const slot of this.slots) slot.session!.channel.send({ type: 'compare', ...request });
    });
  }

  private onComparison(index: number, session: ShardSession, message: MessageOf<'comparison'>): void {
    const wait = this.compareWait;
    const { node, against } = wait?.request ?? {};
    const same = (a: typeof node, b: typeof node) =>
      a && b && a.worker === b.worker && a.level === b.level && a.index === b.index;
    if (
      !wait ||
      wait.request.step !== message.step ||
      !same(node, message.node) ||
      !same(against, message.against)
    )
      return session.channel.reject('stale_result', `a comparison of step ${message.step} nobody asked for`);
    wait.parts.set(index, message);
    if (wait.parts.size < this.count) return;
    this.compareWait = undefined;
    wait.waiter.resolve([...wait.parts.values()].reduce(addDistanceSums));
  }

  private onReduced(index: number, session: ShardSession, message: MessageOf<'reduced'>): void {
    const wait = this.reduceWait;
    if (!wait || wait.step !== message.step)
      return session.channel.reject('stale_result', `reduced step ${message.step}, none was asked for`);
    wait.reports.set(index, {
      ...message,
      shard: session.id,
      roundTripSeconds: (performance.now() - wait.sentAt) / 1000,
    });
    this.slots[index].loadedVersion = message.version;
    if (wait.reports.size < this.count) return;
    this.reduceWait = undefined;
    wait.waiter.resolve([...wait.reports.values()]);
  }

  /**
   * Gathers every shard's slices into the run's state (weights, Adam moments and step): before a checkpoint
   * or the summary.
   */
  collect(): Promise<void> {
    if (!this.serving)
      return Promise.reject(new ReducerStateLost(`${this.count - this.connected} shard reducer(s) missing`));
    return new Promise((resolve, reject) => {
      this.collectWait = { parts: new Map(), waiter: { resolve, reject } };
      for (const slot of this.slots)
        slot.session!.channel.send({ type: 'collect', version: this.settings.state.step });
    });
  }

  private onState(index: number, message: MessageOf<'shardState'>, values: Float32Array): void {
    const wait = this.collectWait;
    const slot = this.slots[index];
    if (!wait) return slot.session!.channel.reject('unexpected_message', 'shardState nobody asked for');
    if (message.version !== this.settings.state.step || values.length !== slot.slice.size) {
      return slot.session!.channel.reject(
        'invalid_message',
        `shardState of version ${message.version} with ${values.length} values; expected ${this.settings.state.step} and ${slot.slice.size}`,
      );
    }
    const part = wait.parts.get(index) ?? {};
    part[message.tensor] = values;
    part.adamStep = message.adamStep;
    wait.parts.set(index, part);
    const complete = [...wait.parts.values()].filter((p) => SHARD_TENSORS.every((t) => p[t]));
    if (complete.length < this.count) return;
    const { state } = this.settings;
    for (const [i, p] of wait.parts) {
      const { offset } = this.slots[i].slice;
      state.weights.set(p.weights!, offset);
      state.adam.m.set(p.adam_m!, offset);
      state.adam.v.set(p.adam_v!, offset);
      state.adam.step = p.adamStep!;
    }
    this.collectWait = undefined;
    wait.waiter.resolve();
  }
}
