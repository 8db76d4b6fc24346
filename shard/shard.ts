/**
 * A shard reducer session (`gradfleet shard`): joins the coordinator as a worker does, is given a
 * slice of the flat vector with its weights and Adam state, then serves workers on its own
 * listener: it checks each node's slice they send and tells the coordinator its verdict, reduces
 * the nodes the coordinator names, steps Adam on its slice and publishes the new weights slice to
 * every worker. The coordinator keeps the ledger, the barrier and the metrics.
 */
import type { Logger } from 'pino';
import { unreachable } from '../common/exhaustive.js';
import type { SharedSecret } from '../protocol/auth.js';
import { type Channel, RejectionCounts } from '../protocol/channel.js';
import { ClientHandshake, joiningChannel } from '../protocol/client-handshake.js';
import type { Frame } from '../protocol/codec.js';
import { keepAlive } from '../protocol/keep-alive.js';
import {
  type MessageOf,
  SHARD_TENSORS,
  type ShardMessage,
  TO_SHARD_MESSAGE_TYPES,
  type ToShardMessage,
} from '../protocol/messages.js';
import type { Link, Listener } from '../protocol/transport.js';
import type { AdmissionLimits } from '../protocol/admission.js';
import { PeerPool, type WelcomeMessage } from '../protocol/peer-pool.js';
import { type WeightsParts, weightsFrames } from '../protocol/weights-parts.js';
import { type SliceWorker, SliceWorkers } from './slice-workers.js';
import { layerStarts, paramLayout } from '../training/models/spec.js';
import { getModel } from '../training/models/zoo.js';
import { geometryOf } from '../training/parallel/step-plan.js';
import { type ReducedSlice, ShardReducer, type ShardTensors } from './shard-reducer.js';
import { ExactSquares } from '../training/optimizer/exact-squares.js';

export interface ShardOptions {
  id: string;
  /** The link to the coordinator. */
  link: Link;
  /** Where workers reach this shard; `serves` is its address as workers must use it. */
  listener: Listener;
  serves: string;
  secret?: SharedSecret;
  log: Logger;
  maxFrameBytes?: number;
  limits?: AdmissionLimits;
}

/**
 * shutdown: the coordinator is done; lost: its link died (state gone, a new session starts fresh); refused:
 * authentication. `rejections`: frames and peers this shard turned away, on its coordinator's link and its
 * workers' (auth_failed, bad_seal, replayed, too_many_connections, ...), logged as it ends.
 */
export interface ShardOutcome {
  end: 'shutdown' | 'lost' | 'refused';
  reason: string;
  steps: number;
  rejections: RejectionCounts['byReason'];
}

const shardTensorOf = (t: ShardTensors, name: (typeof SHARD_TENSORS)[number]): Float32Array =>
  name === 'weights' ? t.weights : name === 'adam_m' ? t.m : t.v;

class Shard {
  private readonly channel: Channel<ToShardMessage, ShardMessage>;
  private readonly handshake: ClientHandshake;
  private readonly rejections = new RejectionCounts();
  private welcome: MessageOf<'welcome'> | undefined;
  /** --bucket-mb: how the slice's weights are cut into parts (weights-parts.ts), fixed by the welcome. */
  private weightParts: WeightsParts | undefined;
  private pool: SliceWorkers | undefined;
  private reducer: ShardReducer | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private lastHeard = performance.now();
  private steps = 0;
  private closed = false;
  /** Bytes in and out of the workers' links at the last report, for per-step deltas. */
  private reportedBytes = { in: 0, out: 0 };
  /** Traffic of workers' links that have closed (their channels are gone from the pool). */
  private readonly departedBytes = { in: 0, out: 0 };
  private settle!: (outcome: ShardOutcome) => void;
  readonly outcome: Promise<ShardOutcome>;

  constructor(private readonly settings: ShardOptions) {
    this.outcome = new Promise((resolve) => (this.settle = resolve));
    this.channel = joiningChannel(settings.link, {
      log: settings.log,
      rejections: this.rejections,
      maxFrameBytes: settings.maxFrameBytes,
      accepts: TO_SHARD_MESSAGE_TYPES,
      handle: (frame) => this.onMessage(frame),
      fail: (err) => this.fail(err),
      lost: (reason) => this.finish('lost', reason),
    });
    this.handshake = new ClientHandshake(
      this.channel,
      { workerId: settings.id, backend: 'shard', serves: settings.serves },
      settings.secret,
      'the coordinator',
    );
    this.handshake.start();
  }

  private onMessage({ message, payload }: Frame<ToShardMessage>): void {
    this.lastHeard = performance.now();
    switch (message.type) {
      case 'challenge': {
        const answered = this.handshake.challenge(message);
        return answered.ok ? undefined : this.refuse(answered.why);
      }
      case 'welcome':
        return this.onWelcome(message);
      case 'shardAssign':
        return this.onAssign(message);
      case 'shardState':
        return this.onState(message, payload);
      case 'reduce':
        return this.onReduce(message);
      case 'clipScale':
        return this.onClipScale(message);
      case 'compare':
        return this.onCompare(message);
      case 'collect':
        return this.onCollect();
      case 'heartbeat':
        return;
      case 'error':
        return this.settings.log.warn({ code: message.code }, `coordinator reports: ${message.message}`);
      case 'shutdown':
        this.finish('shutdown', message.reason);
        return this.settings.link.close('shutdown');
      default:
        return unreachable(message, 'coordinator message to a shard');
    }
  }

  private onWelcome(w: MessageOf<'welcome'>): void {
    const trusted = this.handshake.welcome();
    if (!trusted.ok) return this.refuse(trusted.why);
    if (this.welcome) return this.channel.reject('unexpected_message', 'a second welcome');
    if (paramLayout(getModel(w.model)).size !== w.layoutSize)
      throw new Error(`the coordinator's ${w.model} layout differs from this build's: upgrade one side`);
    this.welcome = w;
    if (w.bucketValues)
      this.weightParts = { values: w.bucketValues, layerStarts: layerStarts(paramLayout(getModel(w.model))) };
    this.heartbeat = keepAlive({
      intervalMs: w.heartbeatMs,
      timeoutMs: w.heartbeatTimeoutMs,
      lastHeard: () => this.lastHeard,
      beat: () => this.channel.send({ type: 'heartbeat', sentAt: Date.now() }),
      silent: (s) => this.settings.link.close(`the coordinator has been silent for ${s.toFixed(1)} s`),
    });
    const { heartbeatMs, heartbeatTimeoutMs, shards: _map, ...terms } = w;
    const welcome: WelcomeMessage = terms;
    // Workers join us as they join the coordinator: same secret, same limits, the coordinator's welcome.
    const peers = new PeerPool({
      listener: this.settings.listener,
      log: this.settings.log,
      rejections: this.rejections,
      maxFrameBytes: this.settings.maxFrameBytes,
      secret: this.settings.secret,
      limits: this.settings.limits,
      heartbeat: { intervalMs: heartbeatMs, timeoutMs: heartbeatTimeoutMs },
    });
    this.pool = new SliceWorkers(peers, {
      welcome,
      log: this.settings.log,
      slice: () => this.reducer?.slice ?? { offset: 0, size: 0 },
      events: {
        ready: (s) => this.sendWeights([s]),
        slice: (s, m, p) => this.onSlice(s, m, p),
        lost: (s) => {
          this.departedBytes.in += s.channel.bytesIn;
          this.departedBytes.out += s.channel.bytesOut;
        },
      },
    });
    // Workers only: a shard reducer's hello is refused here.
    peers.serve('worker', this.pool);
    this.settings.log.info(
      { run: w.runId, serves: this.settings.serves },
      `shard ${this.settings.id} joined run ${w.runId}; serving workers at ${this.settings.serves}`,
    );
  }

  private onAssign(a: MessageOf<'shardAssign'>): void {
    const w = this.welcome;
    if (!w) return this.channel.reject('unexpected_message', 'shardAssign before the welcome');
    if (a.offset + a.size > w.layoutSize)
      return this.channel.reject(
        'invalid_message',
        `slice [${a.offset}, ${a.offset + a.size}) is outside ${w.layoutSize} parameters`,
      );
    this.reducer = new ShardReducer(
      paramLayout(getModel(w.model)),
      geometryOf(w, w.train.count),
      { offset: a.offset, size: a.size },
      a.nodeSquares === true,
    );
    this.settings.log.info(
      { index: a.index, offset: a.offset, size: a.size },
      `shard ${this.settings.id} holds slice ${a.index}: [${a.offset}, ${a.offset + a.size})`,
    );
  }

  private onState(message: MessageOf<'shardState'>, values: Float32Array): void {
    if (!this.reducer) return this.channel.reject('unexpected_message', 'shardState before shardAssign');
    const loaded = this.reducer.load(message, values);
    if (!loaded) return;
    this.settings.log.info(
      { version: loaded.version },
      `shard ${this.settings.id} loaded weights version ${loaded.version}`,
    );
    this.channel.send({ type: 'shardLoaded', version: loaded.version });
    this.sendWeights(this.pool?.ready() ?? []);
  }

  private onSlice(session: SliceWorker, message: MessageOf<'contribution'>, values: Float32Array): void {
    const check =
      this.reducer?.accept(session.id, message, values) ??
      ({ ok: false, reason: 'unexpected_message', detail: 'a slice before the shard holds one' } as const);
    const { step, level, index } = message;
    if (!check.ok) session.channel.reject(check.reason, check.detail);
    this.channel.send({
      type: 'sliceVerdict',
      step,
      level,
      index,
      worker: session.id,
      reason: check.ok ? null : check.reason,
      detail: check.ok ? '' : check.detail,
      squares: check.ok ? check.squares : 0,
    });
  }

  private onReduce(r: MessageOf<'reduce'>): void {
    if (!this.reducer) return this.channel.reject('unexpected_message', 'reduce before shardAssign');
    const reduced = this.reducer.reduce(r);
    if (reduced instanceof ExactSquares)
      return this.channel.send({ type: 'sliceSquares', step: r.step, bins: [...reduced.bins] });
    this.publish(r.step, reduced);
  }

  private onClipScale(c: MessageOf<'clipScale'>): void {
    if (!this.reducer) return this.channel.reject('unexpected_message', 'clipScale before shardAssign');
    this.publish(c.step, this.reducer.finish(c.step, c.scale));
  }

  private onCompare(c: MessageOf<'compare'>): void {
    if (!this.reducer) return this.channel.reject('unexpected_message', 'compare before shardAssign');
    const { step, node, against } = c;
    this.channel.send({ type: 'comparison', step, node, against, ...this.reducer.compare(c) });
  }

  /** Sends the step's new weights slice to the workers and its report to the coordinator. */
  private publish(step: number, reduced: ReducedSlice): void {
    const t = performance.now();
    this.sendWeights(this.pool?.ready() ?? []);
    const broadcast = (performance.now() - t) / 1000;
    this.steps++;
    const bytes = this.workerBytes();
    this.channel.send({
      type: 'reduced',
      step,
      version: reduced.version,
      gradSquares: reduced.gradSquares,
      seconds: { ...reduced.seconds, broadcast },
      bytesIn: bytes.in - this.reportedBytes.in,
      bytesOut: bytes.out - this.reportedBytes.out,
    });
    this.reportedBytes = bytes;
  }

  private workerBytes(): { in: number; out: number } {
    const total = { ...this.departedBytes };
    for (const s of this.pool?.ready() ?? []) {
      total.in += s.channel.bytesIn;
      total.out += s.channel.bytesOut;
    }
    return total;
  }

  private onCollect(): void {
    const t = this.reducer?.current;
    if (!t) return this.channel.reject('unexpected_message', 'collect before the shard was loaded');
    for (const tensor of SHARD_TENSORS) {
      const values = shardTensorOf(t, tensor);
      this.channel.send(
        {
          type: 'shardState',
          tensor,
          version: t.version,
          adamStep: t.adamStep,
          payloadValues: values.length,
        },
        values,
      );
    }
  }

  /** The current weights slice, encoded once, to each of `sessions`. */
  /** The slice's weights to each worker, in parts front layers first with --bucket-mb (weights-parts.ts). */
  private sendWeights(sessions: readonly SliceWorker[]): void {
    const t = this.reducer?.current;
    if (!t || sessions.length === 0) return;
    const frames = weightsFrames(
      t.version,
      this.reducer!.slice.offset,
      t.weights,
      this.welcome!.wire,
      this.weightParts,
    );
    for (const s of sessions) for (const frame of frames) s.channel.sendShared(frame);
  }

  private fail(err: Error): void {
    if (this.closed) return;
    this.settings.log.error({ err }, `shard ${this.settings.id} failed: ${err.message}`);
    this.channel.send({ type: 'error', code: 'internal', message: err.message });
    this.finish('lost', `failed: ${err.message}`);
    this.settings.link.close('shard failed');
  }

  private refuse(reason: string): void {
    this.settings.log.error(reason);
    this.finish('refused', reason);
    this.settings.link.close(reason);
  }

  private finish(end: ShardOutcome['end'], reason: string): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.heartbeat);
    this.pool?.shutdown(`shard reducer ${this.settings.id}: ${reason}`);
    this.settle({ end, reason, steps: this.steps, rejections: this.rejections.byReason });
  }
}

export function runShard(options: ShardOptions): Promise<ShardOutcome> {
  return new Shard(options).outcome;
}
