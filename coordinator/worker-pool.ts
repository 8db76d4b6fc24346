/**
 * The coordinator's workers: the worker role it serves on its PeerPool (protocol/peer-pool.ts, which
 * admits links within the limits, runs the handshake and keeps the heartbeat). Admits workers while
 * the door is open (a sharded run's welcome carries the shard map), welcomes them, streams any data
 * set a worker lacks until it is ready, and hands the coordinator ready workers, their results and
 * their losses. Shard reducers join the same pool as another role (shard-role.ts), served once
 * whoever runs them asks (`setShardEvents`).
 */
import type { Logger } from 'pino';
import { unreachable } from '../common/exhaustive.js';
import type { AdmissionLimits } from '../protocol/admission.js';
import { BucketAssembly } from '../protocol/bucket-assembly.js';
import type { SharedSecret } from '../protocol/auth.js';
import type { Channel, ChannelMeter, RejectionCounts } from '../protocol/channel.js';
import type { Frame } from '../protocol/codec.js';
import {
  MAX_CHUNK_IMAGE_BYTES,
  MAX_CHUNK_SAMPLES,
  type CoordinatorMessage,
  type MessageOf,
  type PeerMessage,
  type Split,
} from '../protocol/messages.js';
import {
  type AdmittedPeer,
  type PeerChannel,
  PeerPool,
  type Refusal,
  type RoleMessage,
  type WelcomeMessage,
} from '../protocol/peer-pool.js';
import type { Listener } from '../protocol/transport.js';
import { type GpuAdapterInfo, adapterLabel } from '../training/backends/adapters.js';
import type { Dataset } from '../training/data/index.js';
import { type ShardEvents, shardRole } from './shard-role.js';
import { type AbusePolicy, Bans } from './bans.js';

export type ResultMessage = MessageOf<'contribution'> | MessageOf<'evaluation'>;

export interface WorkerSession {
  readonly id: string;
  /** The coordinator's end of the worker's link: it sends a worker's messages. */
  readonly channel: Channel<PeerMessage, CoordinatorMessage>;
  readonly backend: string;
  /** The GPU adapter, for workers on webgpu. */
  readonly adapter?: GpuAdapterInfo;
  state: 'welcomed' | 'ready' | 'gone';
  /** Micro-batches per second, measured (undefined until its first result). */
  speed?: number;
  /** Steps in a row it was ready for but given no micro-batch (too slow for a share of its own). */
  idleSteps: number;
  /** The weights version last sent to this worker (-1: none yet). */
  weightsVersion: number;
  /**
   * The weights version the worker said it holds (a `holding` message; -1: none yet): work for it waits for
   * this.
   */
  holdsVersion: number;
  /**
   * Data sets already streamed to it: each at most once per session (a repeated ask would make us send ~47 MB
   * again).
   */
  streamed?: Set<Split>;
  /** Its nodes' buckets (--bucket-mb), until each node's contribution closes them. */
  readonly buckets: BucketAssembly;
}

export interface PoolEvents {
  ready(session: WorkerSession): void;
  lost(session: WorkerSession, reason: string): void;
  result(session: WorkerSession, message: ResultMessage, payload: Float32Array): void;
  /** The worker confirmed it holds weights `session.holdsVersion`. */
  holding(session: WorkerSession): void;
}

/**
 * Whether workers may join yet: a sharded run's welcome carries the shard map, so workers wait
 * (are turned away, and retry) until every shard has joined.
 */
export type WorkerAdmission =
  | { open: true; shards?: MessageOf<'welcome'>['shards'] }
  | { open: false; why: string };

export interface WorkerPoolOptions {
  listener: Listener;
  welcome: WelcomeMessage;
  /** The data sets it streams to workers that lack them. */
  datasets?: Record<Split, Dataset>;
  log: Logger;
  rejections: RejectionCounts;
  maxFrameBytes?: number;
  /** Counts a worker's traffic (metrics), from its hello on. */
  meterFor?: (workerId: string) => ChannelMeter;
  /** A link that has not finished the handshake by then is closed. */
  helloTimeoutMs?: number;
  /** Workers must prove they hold it (protocol/auth.ts); none: anyone may join. */
  secret?: SharedSecret;
  limits?: AdmissionLimits;
  /** Heartbeat period, and the silence after which a worker is dropped; both go to workers in the welcome. */
  heartbeat: { intervalMs: number; timeoutMs: number };
  /** When repeated rejections get a worker evicted, and for how long (default DEFAULT_ABUSE_POLICY). */
  abuse?: AbusePolicy;
  /** Values of each tree node that come here: the reducer's nodePayloadSize (0 where shard reducers take them). */
  nodeValues: () => number;
}

export class WorkerPool {
  private readonly peers: PeerPool;
  private readonly sessions = new Map<string, WorkerSession>();
  private workerAdmission: WorkerAdmission = { open: true };
  private events: PoolEvents | undefined;
  private readyWaiters: Array<() => void> = [];
  readonly bans: Bans;

  constructor(private readonly options: WorkerPoolOptions) {
    const { listener, log, rejections, maxFrameBytes, helloTimeoutMs, secret, limits, heartbeat } = options;
    this.peers = new PeerPool({
      listener,
      log,
      rejections,
      maxFrameBytes,
      helloTimeoutMs,
      secret,
      limits,
      heartbeat,
    });
    this.peers.serve('worker', { admit: (hello, channel) => this.admit(hello, channel) });
    this.bans = new Bans(options.abuse);
  }

  /**
   * Closes the worker's link and refuses it (by its id) for the rest of the run: it was caught lying. Its
   * work goes back to the others at once (the `lost` event).
   */
  evict(session: WorkerSession, why: string): void {
    this.bans.banForRun(session.id, why);
    this.expel(session, why);
  }

  private expel(session: WorkerSession, why: string): void {
    if (session.state === 'gone') return;
    this.options.rejections.record('banned');
    this.options.log.error({ worker: session.id, reason: 'banned' }, `worker ${session.id} evicted: ${why}`);
    session.channel.send({ type: 'error', code: 'banned', message: why.slice(0, 4096) });
    session.channel.link.close(`evicted: ${why}`);
    this.lost(session, `evicted: ${why}`);
  }

  setEvents(events: PoolEvents): void {
    this.events = events;
  }

  /** Shard reducers may join from now on: `events` hears of them (only a sharded run serves them). */
  setShardEvents(events: ShardEvents): void {
    const { welcome, log } = this.options;
    this.peers.serve('shard', shardRole(this.peers, { welcome, log, events }));
  }

  /** Ready workers in the order they joined. */
  ready(): WorkerSession[] {
    return [...this.sessions.values()].filter((s) => s.state === 'ready');
  }

  /** Opens (with the shard map for the welcome) or closes the door to workers. */
  admitWorkers(admission: WorkerAdmission): void {
    this.workerAdmission = admission;
  }

  async waitForReady(count: number): Promise<void> {
    while (this.ready().length < count) await new Promise<void>((resolve) => this.readyWaiters.push(resolve));
  }

  shutdown(reason: string): void {
    this.peers.shutdown(reason);
  }

  private admit(hello: MessageOf<'hello'>, channel: PeerChannel): AdmittedPeer<'worker'> | Refusal {
    const door = this.workerAdmission;
    if (!door.open) return { refuse: 'awaiting_shards', why: door.why };
    const banned = this.bans.refusal(hello.workerId, performance.now());
    if (banned) return { refuse: 'banned', why: `worker ${hello.workerId} is banned: ${banned}` };
    if (this.sessions.has(hello.workerId))
      return { refuse: 'duplicate_worker', why: `a worker named ${hello.workerId} is already connected` };
    const room = this.peers.admission.admitWorker(this.sessions.size);
    if (!room.ok) return { refuse: room.reason, why: room.detail };
    const session: WorkerSession = {
      id: hello.workerId,
      channel,
      backend: hello.backend,
      adapter: hello.adapter,
      state: 'welcomed',
      weightsVersion: -1,
      holdsVersion: -1,
      idleSteps: 0,
      buckets: new BucketAssembly(() => ({ offset: 0, size: this.options.nodeValues() })),
    };
    this.sessions.set(session.id, session);
    channel.onRejected = (reason) => {
      if (this.bans.strike(session.id, reason, performance.now()))
        this.expel(session, this.bans.refusal(session.id, performance.now())!);
    };
    channel.wire = this.options.welcome.wire;
    channel.meter = this.options.meterFor?.(session.id);
    this.options.log.info(
      { worker: session.id, peer: channel.peer, backend: session.backend, adapter: session.adapter },
      `worker ${session.id} joined from ${channel.peer}${session.adapter ? ` (${session.backend} on ${adapterLabel(session.adapter)})` : ''}`,
    );
    channel.send(
      this.peers.welcome({ ...this.options.welcome, ...(door.shards && { shards: door.shards }) }),
    );
    return { message: (frame) => this.handle(session, frame), lost: (reason) => this.lost(session, reason) };
  }

  private handle(session: WorkerSession, { message, payload }: Frame<RoleMessage<'worker'>>): void {
    switch (message.type) {
      case 'ready':
        if (message.missing.length > 0) return this.stream(session, message.missing);
        session.state = 'ready';
        this.readyWaiters.splice(0).forEach((wake) => wake());
        return this.events?.ready(session);
      case 'contribution':
      case 'bucket':
      case 'evaluation':
        if (session.state !== 'ready')
          return session.channel.reject(
            'unexpected_message',
            `${message.type} from a worker that is not ready`,
          );
        if (message.type === 'bucket') return session.buckets.take(session.channel, message, payload);
        if (message.type === 'contribution' && message.buckets !== undefined) {
          const node = session.buckets.close(message);
          return this.events?.result(session, node.message, node.payload);
        }
        return this.events?.result(session, message, payload);
      case 'holding':
        if (session.state !== 'ready' || message.version > session.weightsVersion) {
          return session.channel.reject(
            'unexpected_message',
            `holding weights ${message.version}, but ${session.weightsVersion} were sent`,
          );
        }
        // An older version's confirmation, overtaken by newer weights on their way: moot, not bad.
        if (message.version < session.weightsVersion) return;
        session.holdsVersion = message.version;
        return this.events?.holding(session);
      case 'hello':
      case 'auth':
        return session.channel.reject(
          'unexpected_message',
          `${message.type} from ${session.id}, which is already admitted`,
        );
      default:
        return unreachable(message, 'worker message');
    }
  }

  private stream(session: WorkerSession, splits: readonly Split[]): void {
    session.streamed ??= new Set();
    const streamed = session.streamed;
    const again = splits.filter((s) => streamed.has(s));
    if (again.length > 0)
      return session.channel.reject(
        'unexpected_message',
        `the ${again.join(' and ')} set was already streamed to ${session.id} in this session`,
      );
    const { datasets } = this.options;
    if (!datasets)
      return session.channel.reject(
        'unexpected_message',
        `asked for the ${splits.join(' and ')} set, which is not streamed from here`,
      );
    for (const split of new Set(splits)) {
      streamed.add(split);
      const data = datasets[split];
      this.options.log.info(
        { worker: session.id, split, samples: data.count },
        `streaming the ${split} set to ${session.id}`,
      );
      const perChunk = Math.min(MAX_CHUNK_SAMPLES, Math.floor(MAX_CHUNK_IMAGE_BYTES / data.pixelsPerImage));
      for (let first = 0; first < data.count; first += perChunk) {
        const count = Math.min(perChunk, data.count - first);
        session.channel.send({
          type: 'dataChunk',
          split,
          first,
          count,
          total: data.count,
          images: data.images.subarray(first * data.pixelsPerImage, (first + count) * data.pixelsPerImage),
          labels: data.labels?.subarray(first, first + count) ?? null,
        });
      }
    }
  }

  private lost(session: WorkerSession, reason: string): void {
    if (session.state === 'gone') return;
    const wasReady = session.state === 'ready';
    session.state = 'gone';
    this.sessions.delete(session.id);
    if (wasReady) this.events?.lost(session, reason);
  }
}
