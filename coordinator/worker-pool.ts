/**
 * Membership: accepts worker links, runs the handshake (hello → welcome → ready, streaming any data
 * set a worker lacks), and hands the coordinator ready workers, their results and their losses.
 */
import type { Logger } from 'pino';
import type { Dataset } from '../training/data/index.js';
import { Channel, type ChannelMeter, type RejectionCounts } from '../protocol/channel.js';
import type { Frame } from '../protocol/codec.js';
import { MAX_CHUNK_SAMPLES, type MessageOf, type Split } from '../protocol/messages.js';
import type { Link, Listener } from '../protocol/transport.js';
import { PIXELS_PER_IMAGE } from '../training/data/index.js';

export type WelcomeMessage = MessageOf<'welcome'>;
export type ResultMessage = MessageOf<'contribution'> | MessageOf<'evaluation'>;

export interface WorkerSession {
  readonly id: string;
  readonly channel: Channel;
  readonly backend: string;
  state: 'connected' | 'welcomed' | 'ready' | 'gone';
  /** Micro-batches per second, measured (undefined until its first result). */
  speed?: number;
  /** The weights version this worker holds (-1: none yet). */
  weightsVersion: number;
}

export interface PoolEvents {
  ready(session: WorkerSession): void;
  lost(session: WorkerSession, reason: string): void;
  result(session: WorkerSession, message: ResultMessage, payload: Float32Array): void;
}

export interface WorkerPoolOptions {
  listener: Listener;
  welcome: WelcomeMessage;
  datasets: Record<Split, Dataset>;
  log: Logger;
  rejections: RejectionCounts;
  maxFrameBytes?: number;
  /** Counts a worker's traffic (metrics), from its hello on. */
  meterFor?: (workerId: string) => ChannelMeter;
  /** A link that has not said hello by then is closed. */
  helloTimeoutMs?: number;
}

export class WorkerPool {
  private readonly sessions = new Map<string, WorkerSession>();
  private events: PoolEvents | undefined;
  private readyWaiters: Array<() => void> = [];
  private closing = false;

  constructor(private readonly options: WorkerPoolOptions) {
    options.listener.onLink((link) => this.accept(link));
  }

  setEvents(events: PoolEvents): void {
    this.events = events;
  }

  /** Ready workers in the order they joined. */
  ready(): WorkerSession[] {
    return [...this.sessions.values()].filter((s) => s.state === 'ready');
  }

  async waitForReady(count: number): Promise<void> {
    while (this.ready().length < count) await new Promise<void>((resolve) => this.readyWaiters.push(resolve));
  }

  shutdown(reason: string): void {
    this.closing = true;
    for (const s of this.sessions.values()) {
      s.channel.send({ type: 'shutdown', reason });
      s.channel.link.close(reason);
    }
  }

  private accept(link: Link): void {
    const { log, rejections, maxFrameBytes } = this.options;
    let session: WorkerSession | undefined;
    const channel: Channel = new Channel(link, {
      log, rejections, maxFrameBytes, replyToRejections: true,
      onMessage: (frame) => {
        if (!session) session = this.greet(channel, frame);
        else this.handle(session, frame);
      },
      onClose: (reason) => {
        clearTimeout(helloTimer);
        if (session) this.drop(session, reason);
      },
    });
    const helloTimer = setTimeout(() => {
      if (!session) link.close('no hello in time');
    }, this.options.helloTimeoutMs ?? 15_000);
  }

  private greet(channel: Channel, { message }: Frame): WorkerSession | undefined {
    if (message.type !== 'hello') {
      channel.reject('unexpected_message', `${message.type} before hello`);
      return undefined;
    }
    if (this.sessions.has(message.workerId)) {
      channel.reject('duplicate_worker', `a worker named ${message.workerId} is already connected`);
      channel.link.close('duplicate worker id');
      return undefined;
    }
    const session: WorkerSession = { id: message.workerId, channel, backend: message.backend, state: 'welcomed', weightsVersion: -1 };
    this.sessions.set(session.id, session);
    channel.wire = this.options.welcome.wire;
    channel.meter = this.options.meterFor?.(session.id);
    this.options.log.info({ worker: session.id, peer: channel.peer, backend: session.backend }, `worker ${session.id} joined from ${channel.peer}`);
    channel.send(this.options.welcome);
    return session;
  }

  private handle(session: WorkerSession, { message, payload }: Frame): void {
    switch (message.type) {
      case 'ready':
        if (message.missing.length > 0) return this.stream(session, message.missing);
        session.state = 'ready';
        this.readyWaiters.splice(0).forEach((wake) => wake());
        return this.events?.ready(session);
      case 'contribution':
      case 'evaluation':
        if (session.state !== 'ready') return session.channel.reject('unexpected_message', `${message.type} from a worker that is not ready`);
        return this.events?.result(session, message, payload);
      case 'heartbeat':
        return;
      case 'error':
        this.options.log.warn({ worker: session.id, code: message.code }, `worker ${session.id} reports: ${message.message}`);
        return;
      case 'shutdown':
        return session.channel.link.close(`worker left: ${message.reason}`);
      default:
        return session.channel.reject('unexpected_message', `${message.type} is not a worker's message`);
    }
  }

  private stream(session: WorkerSession, splits: readonly Split[]): void {
    for (const split of new Set(splits)) {
      const data = this.options.datasets[split];
      this.options.log.info({ worker: session.id, split, samples: data.count }, `streaming the ${split} set to ${session.id}`);
      for (let first = 0; first < data.count; first += MAX_CHUNK_SAMPLES) {
        const count = Math.min(MAX_CHUNK_SAMPLES, data.count - first);
        session.channel.send({
          type: 'dataChunk', split, first, count, total: data.count,
          images: data.images.subarray(first * PIXELS_PER_IMAGE, (first + count) * PIXELS_PER_IMAGE),
          labels: data.labels?.subarray(first, first + count) ?? null,
        });
      }
    }
  }

  private drop(session: WorkerSession, reason: string): void {
    if (session.state === 'gone') return;
    const wasReady = session.state === 'ready';
    session.state = 'gone';
    this.sessions.delete(session.id);
    this.options.log[this.closing ? 'info' : 'warn']({ worker: session.id, reason }, `worker ${session.id} left: ${reason}`);
    if (wasReady) this.events?.lost(session, reason);
  }
}
