/**
 * A worker session: connects to the coordinator, agrees on the run (model, layout, data
 * fingerprints), gets any data set it lacks streamed, then computes whatever it is assigned with
 * the weights it is sent, until the coordinator says shutdown.
 *
 * One state at a time, one method per message (as ws's websocket.js): a message that makes no
 * sense in the current state is rejected as unexpected, never half-handled.
 */
import type { GpuAdapterInfo } from '../training/backends/adapters.js';
import type { Logger } from 'pino';
import { unreachable } from '../common/exhaustive.js';
import type { SharedSecret } from '../protocol/auth.js';
import { type Channel, type ChannelMeter, RejectionCounts } from '../protocol/channel.js';
import { ClientHandshake, joiningChannel } from '../protocol/client-handshake.js';
import { bucketKey } from '../protocol/bucket-assembly.js';
import type { Frame } from '../protocol/codec.js';
import { keepAlive } from '../protocol/keep-alive.js';
import { FATAL_ERROR_CODES } from '../protocol/errors.js';
import {
  COORDINATOR_MESSAGE_TYPES,
  type CoordinatorMessage,
  type MessageOf,
  type Split,
  type WorkerMessage,
} from '../protocol/messages.js';
import type { Link } from '../protocol/transport.js';
import { type Dataset, fingerprint, loadDataset } from '../training/data/index.js';
import { getModel } from '../training/models/zoo.js';
import { paramLayout } from '../training/models/spec.js';
import { geometryOf } from '../training/parallel/step-plan.js';
import type { Compute, ComputeFactory, ComputedBucket, ComputedNode } from './compute.js';
import { checkDataSpec } from './data-policy.js';
import { type MemoryBudget, checkWelcomeFits, memoryBudget } from './memory-bounds.js';
import { DatasetReceiver } from './dataset-receiver.js';
import { ShardPeer } from './shard-peer.js';
import { type PartTaken, WeightsAssembler } from './weights-assembler.js';

/** What a worker reports as it goes (metrics); every part is optional. */
export interface WorkerObserver {
  meter?: ChannelMeter;
  welcomed?(model: string): void;
  /** An assignment computed: its compute time and the micro-batches it covered. */
  computed?(seconds: number, microBatches: number): void;
}

/**
 * A seam around the compute path, for fault injection (worker/fault-injection.ts): it sees each
 * assignment before it is computed and each node before it is sent, and may alter either.
 */
export interface ComputeInterceptor {
  beforeAssignment(assign: MessageOf<'assign'>): void;
  beforeSend(node: ComputedNode): void;
  /** The training set, once, before any compute: may alter it (wrong labels). */
  trainingData?(train: Dataset): void;
  /** An evaluation's predictions before they go: may alter them; `labels` are the test set's. */
  beforeEvaluation?(request: MessageOf<'evaluate'>, payload: Float32Array, labels: Uint8Array): void;
}

export interface WorkerOptions {
  link: Link;
  workerId: string;
  /** The backend's name, told to the coordinator (and shown in its summary). */
  backend: string;
  /** The GPU adapter it computes on (webgpu), told to the coordinator likewise. */
  adapter?: GpuAdapterInfo;
  /** Makes each run's compute (worker/threaded-compute.ts keeps it off this thread). */
  computeFor: ComputeFactory;
  log: Logger;
  /** Prove this to the coordinator, and demand its proof back (protocol/auth.ts). */
  secret?: SharedSecret;
  interceptor?: ComputeInterceptor;
  /** Folders local data files may be loaded from (worker/data-policy.ts); none: only mnist:*. */
  dataDirs?: readonly string[];
  maxFrameBytes?: number;
  observer?: WorkerObserver;
  /** Opens a link to a shard reducer at the welcome's shard map `url` (sharded runs only). */
  connectShard?: (url: string) => Promise<Link>;
  /** Called once the coordinator has let it in and it is ready: the host says which backend it computes on. */
  announce?: () => void;
  /** What a welcome may ask of this worker's memory (worker/memory-bounds.ts); default: 3/4 of the machine. */
  memory?: MemoryBudget;
}

/**
 * How a session ended. `shutdown`: the coordinator is done with us. `lost`: the link died or went
 * silent, or the coordinator turned us away for now (full, name still taken): worth reconnecting.
 * `refused`: authentication failed either way, which waiting does not fix.
 */
export interface WorkerOutcome {
  end: 'shutdown' | 'lost' | 'refused';
  reason: string;
  steps: number;
  rejections: RejectionCounts['byReason'];
}

/**
 * connecting: hello sent, waiting for a challenge or a welcome; authenticating: our proof sent,
 * waiting for the welcome; joining: welcomed, waiting for the data sets we lack; ready: idle with a
 * model; computing: an assignment or evaluation in hand; closed: the session is over.
 */
type WorkerState = 'connecting' | 'authenticating' | 'joining' | 'ready' | 'computing' | 'closed';

const HANDSHAKE_TIMEOUT_MS = 30_000;
/**
 * How long a worker waits for the coordinator's word after a shard reducer left, before it takes the session
 * as lost.
 */
const SHARD_LOSS_GRACE_MS = 2_000;

/** Loads a data set by the coordinator's spec when this machine has the same one; else null. */
function localCopy(spec: string, expected: string, dataDirs: readonly string[], log: Logger): Dataset | null {
  const allowed = checkDataSpec(spec, dataDirs);
  if (!allowed.ok) {
    log.warn(
      { spec },
      `refusing to load the coordinator's data spec: ${allowed.reason}; it will be streamed`,
    );
    return null;
  }
  try {
    const data = loadDataset(spec);
    if (fingerprint(data) === expected) return data;
    log.warn({ spec }, `local ${spec} differs from the coordinator's: it will be streamed`);
  } catch (err) {
    log.info({ spec, reason: (err as Error).message }, `no local ${spec}: it will be streamed`);
  }
  return null;
}

/** True when our build's flat layout of the model is the coordinator's, entry by entry. */
function layoutAgrees(w: MessageOf<'welcome'>): boolean {
  const ours = paramLayout(getModel(w.model));
  return (
    ours.size === w.layoutSize &&
    ours.entries.length === w.layout.length &&
    ours.entries.every(
      (e, i) =>
        e.name === w.layout[i].name &&
        e.offset === w.layout[i].offset &&
        e.shape.join() === w.layout[i].shape.join(),
    )
  );
}

class Worker {
  private state: WorkerState = 'connecting';
  private readonly channel: Channel<CoordinatorMessage, WorkerMessage>;
  private readonly rejections = new RejectionCounts();
  private readonly handshake: ClientHandshake;
  private welcome: MessageOf<'welcome'> | undefined;
  private compute: Compute | undefined;
  private readonly data: Partial<Record<Split, Dataset>> = {};
  private readonly receivers: Partial<Record<Split, DatasetReceiver>> = {};
  private steps = 0;
  /** Per node whose buckets are out: how many went to each receiver (a shard's index; 0: the coordinator). */
  private readonly bucketsSent = new Map<string, number[]>();
  /** A sharded run's links to its shard reducers, in shard-map order. */
  private shards: { peers: Array<ShardPeer | undefined>; joined: boolean } | undefined;
  /**
   * The weights as their parts arrive (from the coordinator, or the shard reducers); what came before there
   * was a model to hold them (shards send theirs at once) waits here.
   */
  private weights: WeightsAssembler | undefined;
  private lastHeard = performance.now();
  private heartbeat: NodeJS.Timeout | undefined;
  private readonly handshakeTimer: NodeJS.Timeout;
  /** Compute runs one message at a time, in arrival order (weights before the assignment that uses them). */
  private queue = Promise.resolve();
  private settle!: { resolve(outcome: WorkerOutcome): void; reject(err: Error): void };
  readonly outcome: Promise<WorkerOutcome>;

  constructor(private readonly settings: WorkerOptions) {
    this.outcome = new Promise((resolve, reject) => (this.settle = { resolve, reject }));
    this.channel = joiningChannel(settings.link, {
      log: settings.log,
      rejections: this.rejections,
      maxFrameBytes: settings.maxFrameBytes,
      accepts: COORDINATOR_MESSAGE_TYPES,
      handle: (frame) => this.onMessage(frame),
      fail: (err) => this.fail(err),
      lost: (reason) => this.finish('lost', reason),
    });
    this.channel.meter = settings.observer?.meter;
    // A coordinator that neither challenges nor welcomes us (refused us mid-join, or hung) must not hold us
    // forever.
    this.handshakeTimer = setTimeout(() => {
      if (!this.welcome)
        settings.link.close(`no welcome from the coordinator within ${HANDSHAKE_TIMEOUT_MS / 1000} s`);
    }, HANDSHAKE_TIMEOUT_MS);
    this.handshakeTimer.unref();
    this.handshake = new ClientHandshake(
      this.channel,
      {
        workerId: settings.workerId,
        backend: settings.backend,
        ...(settings.adapter && { adapter: settings.adapter }),
      },
      settings.secret,
      'the coordinator',
    );
    this.handshake.start();
  }

  private get finished(): boolean {
    return this.state === 'closed';
  }

  private onMessage({ message, payload }: Frame<CoordinatorMessage>): void {
    this.lastHeard = performance.now();
    switch (message.type) {
      case 'challenge':
        return this.onChallenge(message);
      case 'welcome':
        return this.onWelcome(message);
      case 'dataChunk':
        return this.onDataChunk(message);
      case 'weights':
        if (!this.compute) return this.channel.reject('unexpected_message', `weights while ${this.state}`);
        return this.onWeightsPart(message, payload);
      case 'assign':
        return this.whenReady(message, (compute) => this.onAssign(compute, message));
      case 'evaluate':
        return this.whenReady(message, (compute) => this.onEvaluate(compute, message));
      case 'error':
        return this.onError(message);
      case 'shutdown':
        return this.onShutdown(message);
      case 'heartbeat':
        return;
      default:
        return unreachable(message, 'coordinator message');
    }
  }

  private onChallenge(c: MessageOf<'challenge'>): void {
    if (this.state !== 'connecting' && this.settings.secret)
      return this.channel.reject('unexpected_message', `a challenge while ${this.state}`);
    const answered = this.handshake.challenge(c);
    if (!answered.ok) return this.refuse(answered.why);
    this.state = 'authenticating';
  }

  private onWelcome(w: MessageOf<'welcome'>): void {
    const trusted = this.handshake.welcome();
    if (!trusted.ok) return this.refuse(trusted.why);
    if (this.state !== 'connecting' && this.state !== 'authenticating')
      return this.channel.reject('unexpected_message', `a welcome while ${this.state}`);
    if (!layoutAgrees(w))
      throw new Error(`the coordinator's ${w.model} layout differs from this build's: upgrade one side`);
    // Before anything is allocated for it: a welcome may ask for more than this machine has.
    const fits = checkWelcomeFits(w, this.settings.memory ?? memoryBudget());
    if (!fits.ok) throw new Error(fits.why);
    this.welcome = w;
    this.state = 'joining';
    this.channel.wire = w.wire;
    this.settings.observer?.welcomed?.(w.model);
    this.keepAlive(w);
    const missing: Split[] = [];
    for (const split of ['train', 'test'] as const) {
      const info = w[split];
      const local = localCopy(info.spec, info.fingerprint, this.settings.dataDirs ?? [], this.settings.log);
      if (local) this.data[split] = local;
      else {
        missing.push(split);
        this.receivers[split] = new DatasetReceiver(split, info.count, info.fingerprint, info);
      }
    }
    this.weights = new WeightsAssembler(w.layoutSize, w.shards);
    if (w.shards) this.joinShards(w, w.shards);
    if (missing.length > 0) this.channel.send({ type: 'ready', missing });
    else this.startCompute(w);
  }

  /** Links to every shard reducer of the map; the session is ready only once each has welcomed us. */
  private joinShards(w: MessageOf<'welcome'>, map: NonNullable<MessageOf<'welcome'>['shards']>): void {
    const { connectShard, workerId, backend, secret, log, maxFrameBytes } = this.settings;
    if (!connectShard)
      throw new Error('the coordinator runs shard reducers, and this worker was given no way to reach them');
    const shards: NonNullable<Worker['shards']> = { peers: [], joined: false };
    this.shards = shards;
    // A shard that goes at the end of the run (the coordinator told it first) is no loss: the
    // coordinator's own shutdown is on its way. Otherwise the session ends, to rejoin the new map.
    const lost = (reason: string) => {
      setTimeout(() => {
        if (!this.finished) this.settings.link.close(reason);
      }, SHARD_LOSS_GRACE_MS);
    };
    void Promise.all(
      map.map(async (entry, index) => {
        const link = await connectShard(entry.url);
        if (this.finished) return link.close('session over');
        const peer = new ShardPeer({
          index,
          link,
          workerId,
          backend,
          runId: w.runId,
          wire: w.wire,
          secret,
          log,
          rejections: this.rejections,
          maxFrameBytes,
          lost,
          weights: (m, payload) => this.onWeightsPart(m, payload, index),
        });
        shards.peers[index] = peer;
        await peer.joined;
      }),
    ).then(
      () => {
        shards.joined = true;
        if (this.state === 'joining') this.startCompute(w);
      },
      (err: Error) => lost(`cannot join the shard reducers: ${err.message}`),
    );
  }

  /**
   * A part of a weights version, from the coordinator or shard `shard`. The first part of a version begins it
   * for the compute, and the coordinator is told we hold it: work for it may come now, and the compute waits
   * for the parts it needs (a layer-by-layer compute starts on the first layers while the rest arrive).
   */
  private onWeightsPart(message: MessageOf<'weights'>, payload: Float32Array, shard?: number): void {
    let taken: PartTaken | undefined;
    try {
      taken = this.weights!.add(message.version, message.offset ?? 0, payload, shard);
    } catch (err) {
      return this.fail(err as Error);
    }
    const compute = this.compute;
    if (!taken || !compute || this.finished) return;
    const { version, values } = taken.weights;
    if (taken.began) {
      compute.beginWeights(version, values);
      this.channel.send({ type: 'holding', version });
    }
    const from = message.offset ?? 0;
    compute.weightsIn(version, from, from + payload.length);
  }

  private onDataChunk(chunk: MessageOf<'dataChunk'>): void {
    const receiver = this.receivers[chunk.split];
    if (this.state !== 'joining' || !receiver)
      return this.channel.reject('unexpected_message', `${chunk.split} data that was not asked for`);
    const complete = receiver.add(chunk);
    if (!complete) return;
    this.data[chunk.split] = complete;
    delete this.receivers[chunk.split];
    this.settings.log.info(
      { split: chunk.split, samples: complete.count },
      `received the ${chunk.split} set`,
    );
    this.startCompute(this.welcome!);
  }

  /**
   * Ready once every data set is here and, in a sharded run, every shard has welcomed us; until then it waits
   * for the other.
   */
  private startCompute(w: MessageOf<'welcome'>): void {
    if (!this.data.train || !this.data.test || (this.shards && !this.shards.joined)) return;
    this.settings.interceptor?.trainingData?.(this.data.train);
    const compute = this.settings.computeFor({
      model: getModel(w.model),
      seed: w.seed,
      geometry: geometryOf(w, w.train.count),
      train: this.data.train!,
      test: this.data.test!,
      // Injected faults act on whole nodes: a worker given them sends its nodes whole.
      bucketValues: this.settings.interceptor ? 0 : (w.bucketValues ?? 0),
      localSteps: w.localSteps,
    });
    this.compute = compute;
    this.state = 'ready';
    this.channel.send({ type: 'ready', missing: [] });
    this.settings.log.info(
      { model: w.model, run: w.runId, shards: w.shards?.length },
      `ready to train ${w.model} (run ${w.runId})`,
    );
    this.settings.announce?.();
    const early = this.weights?.latest;
    if (early) {
      compute.beginWeights(early.version, early.values);
      for (const [from, to] of early.ranges.list) compute.weightsIn(early.version, from, to);
      this.channel.send({ type: 'holding', version: early.version });
    }
  }

  /** Work for the model: queued behind what is in hand, and refused before there is a model. */
  private whenReady(message: CoordinatorMessage, task: (compute: Compute) => void | Promise<void>): void {
    const compute = this.compute;
    if (!compute || (this.state !== 'ready' && this.state !== 'computing'))
      return this.channel.reject('unexpected_message', `${message.type} while ${this.state}`);
    this.queue = this.queue
      .then(async () => {
        if (this.finished) return;
        this.state = 'computing';
        await task(compute);
        if (!this.finished) this.state = 'ready';
      })
      .catch((err: unknown) => this.fail(err as Error));
  }

  private async onAssign(compute: Compute, assign: MessageOf<'assign'>): Promise<void> {
    const { interceptor, observer } = this.settings;
    interceptor?.beforeAssignment(assign);
    // Nodes run one after another: any whose buckets went out without it (a share cut short) never closes.
    this.bucketsSent.clear();
    let computeSeconds = 0;
    await compute.contributions(
      assign,
      (out) => {
        if (out.message.type === 'bucket') return this.sendBucket(out as ComputedBucket);
        const node = out as ComputedNode;
        interceptor?.beforeSend(node);
        computeSeconds += node.message.computeSeconds;
        this.sendNode(node);
      },
      () => this.finished,
    );
    observer?.computed?.(computeSeconds, assign.count);
    this.steps++;
  }

  /**
   * To the coordinator, or (sharded) each shard its slice and the coordinator the sums' header alone. A node
   * whose values went ahead in buckets closes them: each receiver is told how many it was sent.
   */
  private sendNode({ message, payload }: ComputedNode): void {
    const map = this.welcome?.shards;
    const key = bucketKey(message);
    const sent = this.bucketsSent.get(key);
    this.bucketsSent.delete(key);
    // When the buckets went is for the coordinator (its step log and metrics), not the shards.
    const { buckets: _, bucketsSent, ...header } = message;
    const closing = (to: number) => (message.buckets === undefined ? {} : { buckets: sent?.[to] ?? 0 });
    const timed = bucketsSent && { bucketsSent };
    if (!map || !this.shards) return this.channel.send({ ...header, ...closing(0), ...timed }, payload);
    map.forEach((slice, k) =>
      this.shards!.peers[k]!.send(
        { ...header, ...closing(k) },
        slice.offset,
        message.buckets === undefined ? payload.subarray(slice.offset, slice.offset + slice.size) : payload,
      ),
    );
    this.channel.send({ ...header, payloadValues: 0, ...timed });
  }

  /** Values of a node ahead of it: to the coordinator, or to each shard whose slice they meet, that part. */
  private sendBucket({ message, payload }: ComputedBucket): void {
    const key = bucketKey(message);
    const sent = this.bucketsSent.get(key) ?? [];
    this.bucketsSent.set(key, sent);
    const count = (to: number) => (sent[to] = (sent[to] ?? 0) + 1);
    const map = this.welcome?.shards;
    if (!map || !this.shards) {
      count(0);
      return this.channel.send(message, payload);
    }
    const end = message.offset + payload.length;
    map.forEach((slice, k) => {
      const from = Math.max(message.offset, slice.offset);
      const to = Math.min(end, slice.offset + slice.size);
      if (from >= to) return;
      count(k);
      this.shards!.peers[k]!.sendBucket(
        { ...message, offset: from, payloadValues: to - from },
        payload.subarray(from - message.offset, to - message.offset),
      );
    });
  }

  private async onEvaluate(compute: Compute, request: MessageOf<'evaluate'>): Promise<void> {
    const { message, payload } = await compute.evaluate(request);
    const labels = this.data.test?.labels;
    if (labels) this.settings.interceptor?.beforeEvaluation?.(request, payload, labels);
    if (!this.finished) this.channel.send(message, payload);
  }

  private onError(e: MessageOf<'error'>): void {
    if (FATAL_ERROR_CODES.has(e.code)) return this.refuse(`the coordinator refused us: ${e.message}`);
    this.settings.log.warn({ code: e.code }, `coordinator reports: ${e.message}`);
  }

  private onShutdown(message: MessageOf<'shutdown'>): void {
    this.settings.log.info({ reason: message.reason }, `coordinator says shutdown: ${message.reason}`);
    this.finish('shutdown', message.reason);
    this.settings.link.close('shutdown');
  }

  private keepAlive(w: MessageOf<'welcome'>): void {
    this.heartbeat = keepAlive({
      intervalMs: w.heartbeatMs,
      timeoutMs: w.heartbeatTimeoutMs,
      lastHeard: () => this.lastHeard,
      beat: () => this.channel.send({ type: 'heartbeat', sentAt: Date.now() }),
      silent: (s) => this.settings.link.close(`the coordinator has been silent for ${s.toFixed(1)} s`),
    });
  }

  /** A fault of this worker's own (layout mismatch, bad assignment): report and leave. */
  private fail(err: Error): void {
    if (this.finished) return;
    this.channel.send({ type: 'error', code: 'worker_failed', message: err.message });
    // Settle first: closing the link reports it lost, which would otherwise win.
    this.finish('refused', 'failed', err);
    this.settings.link.close('worker failed');
  }

  private refuse(reason: string): void {
    this.settings.log.error(reason);
    this.finish('refused', reason);
    this.settings.link.close(reason);
  }

  private finish(end: WorkerOutcome['end'], reason: string, error?: Error): void {
    if (this.finished) return;
    this.state = 'closed';
    clearInterval(this.heartbeat);
    clearTimeout(this.handshakeTimer);
    for (const peer of this.shards?.peers ?? []) peer?.close(reason);
    // Let a share in progress notice the close and stop before its model goes away.
    void this.queue.finally(() => this.compute?.dispose());
    if (error) this.settle.reject(error);
    else this.settle.resolve({ end, reason, steps: this.steps, rejections: this.rejections.byReason });
  }
}

/** One session with the coordinator over `link`, until it ends (see WorkerOutcome). */
export function runWorker(options: WorkerOptions): Promise<WorkerOutcome> {
  return new Worker(options).outcome;
}
