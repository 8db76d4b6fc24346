/**
 * The step's reduce → average → Adam → publish on S shard reducers (shard/): the coordinator keeps
 * only the nodes' sums of loss, accuracy and samples; each shard reduces its slice of the named
 * nodes in tree order, steps Adam on it and publishes its slice of the new weights to the workers.
 * The coordinator's copy of the weights and moments is brought up to date only when asked (sync).
 *
 * A node is taken only once the coordinator's checks of its sums and every shard's check of its
 * slice have passed (the slice gate); a shard that leaves takes its slice of the Adam moments with
 * it, which only a rollback to the newest checkpoint restores (ReducerStateLost).
 */
import type { Logger } from 'pino';
import type { MessageOf } from '../protocol/messages.js';
import { type Clipped, clipScale } from '../training/optimizer/clipping.js';
import { averageOf } from '../training/parallel/reduction-tree.js';
import type { StepPosition } from '../training/parallel/step-plan.js';
import {
  type GradientReducer,
  type ReducerHost,
  ReducerStateLost,
  type StepUpdate,
} from './gradient-reducer.js';
import type { CoordinatorHooks } from './hooks.js';
import { type Agreement, type NodeNorm, agreementOf } from './outliers.js';
import { type RunState, updateRuleFor } from './run-state.js';
import { type ShardReport, ShardSet, type SliceVerdict } from './shard-set.js';
import { SliceGate } from './slice-gate.js';
import type { StepGather, Verdict } from './step-gather.js';
import { StragglerReport } from './stragglers.js';
import type { WorkerPool, WorkerSession } from './worker-pool.js';

export interface ShardedReducerOptions {
  state: RunState;
  /** Shard reducers, S. */
  count: number;
  pool: WorkerPool;
  log: Logger;
  hooks?: CoordinatorHooks;
  /** --outlier-factor is on: the shards report every node slice's Σg². */
  nodeSquares: boolean;
}

export class ShardedReducer implements GradientReducer {
  readonly nodePayloadSize = 0;
  readonly losesState = true;
  private readonly shards: ShardSet;
  private host: ReducerHost | undefined;
  /** The step's gate: nodes wait in it for their shards' verdicts. */
  private gate: SliceGate | undefined;
  /** The version the shards are producing while a reduce is out: workers may report holding it early. */
  private publishing: number | undefined;
  private readonly stragglers: StragglerReport;

  constructor(private readonly settings: ShardedReducerOptions) {
    const { hooks, log, pool, state, count, nodeSquares } = settings;
    this.shards = new ShardSet({
      count,
      nodeSquares,
      state,
      pool,
      log,
      verdict: (shard, v) => this.onSliceVerdict(shard, v),
      connected: (n) => hooks?.shardsConnected?.(n),
      lost: (id, reason) => {
        hooks?.shardLost?.(id, reason);
        this.host?.failed(new ReducerStateLost(`shard reducer ${id} left: ${reason}`));
      },
    });
    this.stragglers = new StragglerReport('shard reducer', 'reduces/s', log, hooks?.straggler);
    log.info({ shards: count }, `waiting for ${count} shard reducer(s)`);
  }

  get reducers(): number {
    return this.shards.count;
  }

  attach(host: ReducerHost): void {
    this.host = host;
  }

  serving(): Promise<void> {
    return this.shards.ready();
  }

  begin(gather: StepGather): void {
    this.gate = new SliceGate(this.shards.count, gather);
  }

  admit(
    gather: StepGather,
    session: WorkerSession,
    message: MessageOf<'contribution'>,
    payload: Float32Array,
  ): Verdict {
    if (this.gate?.gather !== gather)
      throw new Error(`a node of step ${gather.position.step} before it began`);
    return this.gate.header(session, message, payload);
  }

  /** A shard's verdict on a slice: it may decide a node that waits in the gate. */
  private onSliceVerdict(shard: number, v: SliceVerdict): void {
    const concluded = this.gate?.verdict(shard, v);
    if (!concluded || concluded.session.state === 'gone') return;
    this.host?.concluded(this.gate!.gather, concluded.session, concluded.message, concluded.verdict);
  }

  nodeNorms(gather: StepGather): NodeNorm[] {
    const squares = this.gate?.gather === gather ? this.gate.squares : new Map<string, number>();
    return gather.nodeNorms([], (key) => squares.get(key) ?? 0);
  }

  async compare(gather: StepGather, suspect: NodeNorm, recheck: StepGather): Promise<Agreement> {
    const owners = recheck.nodeOwners();
    const again = owners[0];
    if (owners.length !== 1 || again.level !== suspect.node.level || again.index !== suspect.node.index)
      throw new Error(`the recheck of node ${suspect.key} came back as ${owners.length} nodes, not one`);
    const sums = await this.shards.compare({
      step: gather.position.step,
      node: { ...suspect.node, worker: suspect.workerId },
      against: again,
    });
    return agreementOf(sums);
  }

  /**
   * The shards send every version to each worker joined to them: nothing to send, only the version to expect.
   */
  ensureWeights(session: WorkerSession): void {
    session.weightsVersion = Math.max(session.weightsVersion, this.publishing ?? this.settings.state.step);
  }

  sync(): Promise<void> {
    return this.shards.collect();
  }

  recover(): Promise<void> {
    this.gate = undefined;
    this.shards.reloadAll();
    return this.shards.ready();
  }

  async apply(
    gather: StepGather,
    position: StepPosition,
    workers: readonly WorkerSession[],
  ): Promise<StepUpdate> {
    const { state } = this.settings;
    const t0 = performance.now();
    // The nodes carry no values here: this sums their loss, correct and sample counts.
    const root = gather.reduce();
    const { lossSum, correct, samples } = root;
    const average = averageOf(root);
    const rule = updateRuleFor(state.config, position.epoch);
    this.publishing = state.step + 1;
    for (const w of workers) this.ensureWeights(w);
    const { maxGradNorm } = state.config;
    let clipped: Clipped | undefined;
    let reports: ShardReport[];
    try {
      reports = await this.shards.reduce(
        { step: position.step, microBatches: gather.batch.microBatches, nodes: gather.nodeOwners(), rule },
        maxGradNorm === null
          ? undefined
          : (squares) => {
              clipped = clipScale(Math.sqrt(squares.total()), maxGradNorm);
              return clipped.scale;
            },
      );
    } finally {
      this.publishing = undefined;
    }
    state.step++;
    state.adam.step++;
    this.settings.hooks?.shardsReduced?.(reports);
    // A shard's round trip is its reduce, Adam and publish plus the hops: slow ones hold every step back.
    this.stragglers.observe(new Map(reports.map((r) => [r.shard, 1 / Math.max(1e-4, r.roundTripSeconds)])));
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
      learningRate: rule.learningRate,
      gradientNorm: () => norm,
      // The round trip, less what the slowest shard spent stepping Adam and publishing: reduction and the
      // hops.
      seconds: {
        reduce: Math.max(0, (performance.now() - t0) / 1000 - optimizer - broadcast),
        optimizer,
        broadcast,
      },
      clippedFrom: clipped && clipped.scale < 1 ? clipped.norm : undefined,
    };
  }
}
