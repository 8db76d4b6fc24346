/**
 * Membership: admits worker links within the limits, runs the handshake (hello → [challenge → auth]
 * → welcome → ready, streaming any data set a worker lacks), keeps the heartbeat, and hands the
 * coordinator ready workers, their results and their losses.
 *
 * Until a link has authenticated, the only message it may send is its part of the handshake, and
 * its frames are held to a small size: nothing else it says is ever processed.
 */
import { type GpuAdapterInfo, adapterLabel } from '../training/backends/adapters.js';
import type { Logger } from 'pino';
import { unreachable } from '../common/exhaustive.js';
import { type SharedSecret, newNonce, proofsMatch } from '../protocol/auth.js';
import { AdmissionControl, type AdmissionLimits, DEFAULT_ADMISSION } from '../protocol/admission.js';
import { PreAdmissionBudget } from '../protocol/budgets.js';
import type { Dataset } from '../training/data/index.js';
import { Channel, type ChannelMeter, type RejectionCounts } from '../protocol/channel.js';
import type { Frame } from '../protocol/codec.js';
import type { RejectionReason } from '../protocol/errors.js';
import {
  MAX_CHUNK_IMAGE_BYTES,
  MAX_CHUNK_SAMPLES,
  type CoordinatorMessage,
  type MessageOf,
  PEER_MESSAGE_TYPES,
  type PeerMessage,
  type ShardMessage,
  type Split,
  type ToShardMessage,
} from '../protocol/messages.js';
import type { Link, Listener } from '../protocol/transport.js';

/** The run's welcome, less the heartbeat terms, which the pool fills in from its own settings. */
export type WelcomeMessage = Omit<MessageOf<'welcome'>, 'heartbeatMs' | 'heartbeatTimeoutMs'>;
export type ResultMessage = MessageOf<'contribution'> | MessageOf<'evaluation'>;

/**
 * The joined side's end of a link: until the hello it cannot know whether a worker or a shard
 * reducer joined, so it hears either's messages; each session's handler then takes its own.
 */
type PeerChannel = Channel<PeerMessage, CoordinatorMessage | ToShardMessage>;
/** The coordinator's end of a worker's link: it sends a worker's messages. */
type CoordinatorChannel = Channel<PeerMessage, CoordinatorMessage>;
/** The coordinator's end of a shard reducer's link. */
type ShardChannel = Channel<PeerMessage, ToShardMessage>;

/** A shard reducer joined to the coordinator (shard/): it serves workers at `serves`. */
export interface ShardSession {
  readonly id: string;
  readonly channel: ShardChannel;
  readonly serves: string;
  state: 'joined' | 'gone';
  lastHeard: number;
}

export interface WorkerSession {
  readonly id: string;
  readonly channel: CoordinatorChannel;
  readonly backend: string;
  /** The GPU adapter, for workers on webgpu. */
  readonly adapter?: GpuAdapterInfo;
  state: 'welcomed' | 'ready' | 'gone';
  /** When (performance.now()) a valid frame last came from it. */
  lastHeard: number;
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
}

export interface PoolEvents {
  ready(session: WorkerSession): void;
  lost(session: WorkerSession, reason: string): void;
  result(session: WorkerSession, message: ResultMessage, payload: Float32Array): void;
  /** The worker confirmed it holds weights `session.holdsVersion`. */
  holding(session: WorkerSession): void;
}

/** A shard reducer joined (only when the pool takes shards); its messages and its loss follow. */
export interface ShardEvents {
  joined(session: ShardSession): void;
  message(session: ShardSession, message: ShardMessage, payload: Float32Array): void;
  lost(session: ShardSession, reason: string): void;
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
  /**
   * The data sets it streams to workers that lack them (a shard reducer's pool has none: its workers never
   * ask).
   */
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
}

/**
 * A connection that has not even said hello by then is closed: an idle socket holds one of
 * --max-connections' slots for this long, not for the whole handshake time.
 */
const FIRST_HELLO_MS = 5_000;

/**
 * Bytes a peer may send before it has authenticated, frames and framing together: a hello and an auth are a
 * few hundred.
 */
const HANDSHAKE_FRAME_BYTES = 16 * 1024;

/**
 * A link between connecting and being admitted. awaiting_hello: nothing heard yet; challenged: our
 * challenge (with `nonce`) is out and unanswered; refused: turned away (`why`), its link closing.
 */
type Handshake =
  | { state: 'awaiting_hello' }
  | { state: 'challenged'; hello: MessageOf<'hello'>; nonce: Uint8Array }
  | { state: 'refused'; why: string };
type HandshakeStep = Handshake | { session: WorkerSession | ShardSession };

/** Counts and answers a refusal; the caller closes the link once the state is `refused`. */
function refusal(channel: PeerChannel, reason: RejectionReason, why: string): Handshake {
  channel.reject(reason, why);
  return { state: 'refused', why };
}

export class WorkerPool {
  private readonly sessions = new Map<string, WorkerSession>();
  private readonly shardSessions = new Map<string, ShardSession>();
  private workerAdmission: WorkerAdmission = { open: true };
  private events: PoolEvents | undefined;
  private shardEvents: ShardEvents | undefined;
  private readyWaiters: Array<() => void> = [];
  private closing = false;
  private openLinks = 0;
  private readonly admission: AdmissionControl;
  private readonly preAdmission: PreAdmissionBudget;
  private readonly heartbeatTimer: NodeJS.Timeout;

  constructor(private readonly options: WorkerPoolOptions) {
    const limits = options.limits ?? DEFAULT_ADMISSION;
    this.admission = new AdmissionControl(limits, performance.now());
    this.preAdmission = new PreAdmissionBudget(
      HANDSHAKE_FRAME_BYTES,
      limits.preAuthBytes ?? DEFAULT_ADMISSION.preAuthBytes,
    );
    options.listener.onLink((link) => this.accept(link));
    this.heartbeatTimer = setInterval(() => this.beat(), options.heartbeat.intervalMs);
    this.heartbeatTimer.unref();
  }

  setEvents(events: PoolEvents): void {
    this.events = events;
  }

  setShardEvents(events: ShardEvents): void {
    this.shardEvents = events;
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
    this.closing = true;
    clearInterval(this.heartbeatTimer);
    for (const s of [...this.sessions.values(), ...this.shardSessions.values()]) {
      s.channel.send({ type: 'shutdown', reason });
      s.channel.link.close(reason);
    }
  }

  private accept(link: Link): void {
    const { log, rejections, maxFrameBytes } = this.options;
    const admitted = this.admission.admitConnection(this.openLinks, performance.now(), link.source);
    if (!admitted.ok) {
      rejections.record(admitted.reason);
      log.warn(
        { peer: link.peer, reason: admitted.reason },
        `refused a connection from ${link.peer}: ${admitted.detail}`,
      );
      link.close(admitted.detail);
      return;
    }
    this.openLinks++;
    let session: WorkerSession | ShardSession | undefined;
    let handshake: Handshake = { state: 'awaiting_hello' };
    const budget = this.preAdmission.open();
    // The next state is taken before a refusal closes the link, so that the close sees it.
    const advance = (next: HandshakeStep) => {
      if ('session' in next) {
        session = next.session;
        channel.maxFrameBytes = maxFrameBytes;
        budget.release();
        return;
      }
      handshake = next;
      if (next.state === 'refused') link.close(next.why);
    };
    const channel: PeerChannel = new Channel(link, {
      log,
      rejections,
      maxFrameBytes: HANDSHAKE_FRAME_BYTES,
      replyToRejections: true,
      accepts: PEER_MESSAGE_TYPES,
      onWireBytes: (bytes) => {
        if (session) return;
        const charged = budget.charge(bytes);
        if (charged.ok) return;
        rejections.record(charged.reason);
        log.warn(
          { peer: link.peer, reason: charged.reason },
          `dropped ${link.peer} before admission: ${charged.detail}`,
        );
        link.close(charged.detail);
      },
      onUnexpected: (message) => {
        if (session) return channel.reject('unexpected_message', `${message.type} is not a worker's message`);
        advance(refusal(channel, 'unauthenticated', `${message.type} before authenticating`));
      },
      onMessage: (frame) => {
        if (!session) return advance(this.shake(channel, handshake, frame.message));
        // A dropped worker's frames still in flight (it was frozen, then thawed) are moot, not bad.
        if (session.state === 'gone') return;
        session.lastHeard = performance.now();
        if ('serves' in session) this.handleShard(session, frame);
        else this.handle(session, frame);
      },
      onClose: (reason) => {
        this.openLinks--;
        budget.release();
        clearTimeout(helloTimer);
        clearTimeout(firstHelloTimer);
        if (session) this.drop(session, reason);
        else if (handshake.state === 'challenged') {
          // A peer without the secret cannot answer; one that doubts ours leaves. Either way it failed to
          // authenticate.
          rejections.record('auth_failed');
          log.warn(
            { peer: link.peer, worker: handshake.hello.workerId, reason: 'auth_failed' },
            `${link.peer} left without answering the challenge (${reason})`,
          );
        }
      },
    });
    const helloTimer = setTimeout(() => {
      if (!session) link.close('no handshake in time');
    }, this.options.helloTimeoutMs ?? 15_000);
    const firstHelloTimer = setTimeout(
      () => {
        if (!session && handshake.state === 'awaiting_hello') link.close('no hello in time');
      },
      Math.min(FIRST_HELLO_MS, this.options.helloTimeoutMs ?? FIRST_HELLO_MS),
    );
  }

  /** One handshake message: the handshake's next state, or the session once the worker is admitted. */
  private shake(channel: PeerChannel, handshake: Handshake, message: PeerMessage): HandshakeStep {
    const { secret } = this.options;
    switch (handshake.state) {
      case 'awaiting_hello': {
        if (message.type !== 'hello')
          return refusal(channel, 'unauthenticated', `${message.type} before hello`);
        if (!secret) return this.admit(channel, message);
        const nonce = newNonce();
        channel.send({ type: 'challenge', nonce, proof: secret.coordinatorProof(message.nonce, nonce) });
        return { state: 'challenged', hello: message, nonce };
      }
      case 'challenged': {
        const { hello, nonce } = handshake;
        if (message.type !== 'auth' || !secret)
          return refusal(channel, 'unauthenticated', `${message.type} before authenticating`);
        const expected = secret.workerProof(nonce, hello.nonce, hello.workerId);
        if (!proofsMatch(expected, message.proof))
          return refusal(channel, 'auth_failed', `worker ${hello.workerId} does not hold the secret`);
        channel.secure(
          secret,
          { workerNonce: hello.nonce, coordinatorNonce: nonce, workerId: hello.workerId },
          'coordinator',
        );
        return this.admit(channel, hello);
      }
      // Its link is closing: nothing more it says is processed, but it is still counted.
      case 'refused':
        return refusal(channel, 'unauthenticated', `${message.type} after its handshake was refused`);
      default:
        return unreachable(handshake, 'handshake state');
    }
  }

  private admit(channel: PeerChannel, hello: MessageOf<'hello'>): HandshakeStep {
    if (hello.serves !== undefined) return this.admitShard(channel, hello, hello.serves);
    const door = this.workerAdmission;
    if (!door.open) return refusal(channel, 'awaiting_shards', door.why);
    if (this.sessions.has(hello.workerId))
      return refusal(channel, 'duplicate_worker', `a worker named ${hello.workerId} is already connected`);
    if (!this.admission.hasRoomFor(this.sessions.size))
      return refusal(
        channel,
        'cluster_full',
        `${this.sessions.size} workers are connected (--max-workers ${this.admission.limits.maxWorkers})`,
      );
    const session: WorkerSession = {
      id: hello.workerId,
      channel,
      backend: hello.backend,
      adapter: hello.adapter,
      state: 'welcomed',
      weightsVersion: -1,
      holdsVersion: -1,
      lastHeard: performance.now(),
      idleSteps: 0,
    };
    this.sessions.set(session.id, session);
    channel.wire = this.options.welcome.wire;
    channel.meter = this.options.meterFor?.(session.id);
    this.options.log.info(
      { worker: session.id, peer: channel.peer, backend: session.backend, adapter: session.adapter },
      `worker ${session.id} joined from ${channel.peer}${session.adapter ? ` (${session.backend} on ${adapterLabel(session.adapter)})` : ''}`,
    );
    const { intervalMs, timeoutMs } = this.options.heartbeat;
    channel.send({
      ...this.options.welcome,
      ...(door.shards && { shards: door.shards }),
      heartbeatMs: intervalMs,
      heartbeatTimeoutMs: timeoutMs,
    });
    return { session };
  }

  private admitShard(channel: PeerChannel, hello: MessageOf<'hello'>, serves: string): HandshakeStep {
    if (!this.shardEvents)
      return refusal(
        channel,
        'unexpected_message',
        `${hello.workerId} is a shard reducer, and this run has none (start the coordinator with --shards)`,
      );
    if (this.shardSessions.has(hello.workerId))
      return refusal(
        channel,
        'duplicate_worker',
        `a shard reducer named ${hello.workerId} is already connected`,
      );
    const session: ShardSession = {
      id: hello.workerId,
      channel,
      serves,
      state: 'joined',
      lastHeard: performance.now(),
    };
    this.shardSessions.set(session.id, session);
    // Its tensors travel as f32 whatever the run's wire (a bf16 Adam state would not resume bit for bit).
    this.options.log.info(
      { shard: session.id, peer: channel.peer, serves },
      `shard reducer ${session.id} joined from ${channel.peer}, serving ${serves}`,
    );
    const { intervalMs, timeoutMs } = this.options.heartbeat;
    channel.send({ ...this.options.welcome, heartbeatMs: intervalMs, heartbeatTimeoutMs: timeoutMs });
    this.shardEvents?.joined(session);
    return { session };
  }

  private handleShard(session: ShardSession, { message, payload }: Frame<PeerMessage>): void {
    switch (message.type) {
      case 'heartbeat':
        return;
      case 'error':
        this.options.log.warn(
          { shard: session.id, code: message.code },
          `shard reducer ${session.id} reports: ${message.message}`,
        );
        return;
      case 'shutdown':
        return session.channel.link.close(`shard reducer left: ${message.reason}`);
      case 'shardLoaded':
      case 'shardState':
      case 'sliceVerdict':
      case 'reduced':
      case 'sliceSquares':
      case 'comparison':
        return this.shardEvents?.message(session, message, payload);
      default:
        return session.channel.reject(
          'unexpected_message',
          `${message.type} from shard reducer ${session.id}`,
        );
    }
  }

  /** Heartbeats out; workers silent past the timeout (dead, stopped, cut off) are dropped. */
  private beat(): void {
    const now = performance.now();
    const { timeoutMs } = this.options.heartbeat;
    for (const s of [...this.sessions.values(), ...this.shardSessions.values()]) {
      if (now - s.lastHeard > timeoutMs) {
        const reason = `no heartbeat for ${((now - s.lastHeard) / 1000).toFixed(1)} s`;
        this.drop(s, reason);
        s.channel.link.close(reason);
      } else {
        s.channel.send({ type: 'heartbeat', sentAt: Date.now() });
      }
    }
  }

  private handle(session: WorkerSession, { message, payload }: Frame<PeerMessage>): void {
    switch (message.type) {
      case 'ready':
        if (message.missing.length > 0) return this.stream(session, message.missing);
        session.state = 'ready';
        this.readyWaiters.splice(0).forEach((wake) => wake());
        return this.events?.ready(session);
      case 'contribution':
      case 'evaluation':
        if (session.state !== 'ready')
          return session.channel.reject(
            'unexpected_message',
            `${message.type} from a worker that is not ready`,
          );
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
      case 'heartbeat':
        return; // lastHeard is already updated
      case 'error':
        this.options.log.warn(
          { worker: session.id, code: message.code },
          `worker ${session.id} reports: ${message.message}`,
        );
        return;
      case 'shutdown':
        return session.channel.link.close(`worker left: ${message.reason}`);
      case 'hello':
      case 'auth':
        return session.channel.reject(
          'unexpected_message',
          `${message.type} from ${session.id}, which is already admitted`,
        );
      case 'shardLoaded':
      case 'shardState':
      case 'sliceVerdict':
      case 'reduced':
      case 'sliceSquares':
      case 'comparison':
        return session.channel.reject(
          'unexpected_message',
          `${message.type} from worker ${session.id}: that is a shard reducer's message`,
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

  private drop(session: WorkerSession | ShardSession, reason: string): void {
    if (session.state === 'gone') return;
    if ('serves' in session) {
      session.state = 'gone';
      this.shardSessions.delete(session.id);
      this.options.log[this.closing ? 'info' : 'warn'](
        { shard: session.id, reason },
        `shard reducer ${session.id} left: ${reason}`,
      );
      return this.shardEvents?.lost(session, reason);
    }
    const wasReady = session.state === 'ready';
    session.state = 'gone';
    this.sessions.delete(session.id);
    this.options.log[this.closing ? 'info' : 'warn'](
      { worker: session.id, reason },
      `worker ${session.id} left: ${reason}`,
    );
    if (wasReady) this.events?.lost(session, reason);
  }
}
