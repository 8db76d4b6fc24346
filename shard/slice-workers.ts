/**
 * The workers a shard reducer serves: the worker role on the shard's own PeerPool. They join it as
 * they join the coordinator (same secret, same limits, the coordinator's welcome) and are ready at
 * once (a shard streams no data); each then sends its slice of every tree node and hears the shard's
 * weights slices. Whatever else a worker says belongs to the coordinator and is refused here, and so
 * is a shard reducer's hello: the shard's pool serves workers alone.
 */
import type { Logger } from 'pino';
import { unreachable } from '../common/exhaustive.js';
import { BucketAssembly, type Span } from '../protocol/bucket-assembly.js';
import type { Channel } from '../protocol/channel.js';
import type { Frame } from '../protocol/codec.js';
import type { CoordinatorMessage, MessageOf, PeerMessage } from '../protocol/messages.js';
import type {
  AdmittedPeer,
  PeerChannel,
  PeerPool,
  PeerRole,
  Refusal,
  RoleMessage,
  WelcomeMessage,
} from '../protocol/peer-pool.js';
import { adapterLabel } from '../training/backends/adapters.js';

/** A worker joined to this shard. */
export interface SliceWorker {
  readonly id: string;
  /** The shard's end of the worker's link: it sends what the coordinator sends a worker. */
  readonly channel: Channel<PeerMessage, CoordinatorMessage>;
  state: 'welcomed' | 'ready' | 'gone';
  /** Its nodes' buckets (--bucket-mb), until each node's contribution closes them. */
  readonly buckets: BucketAssembly;
}

export interface SliceWorkerEvents {
  /** It is ready for weights. */
  ready(worker: SliceWorker): void;
  /** Its slice of a tree node, from a ready worker. */
  slice(worker: SliceWorker, message: MessageOf<'contribution'>, payload: Float32Array): void;
  /** A ready worker left. */
  lost(worker: SliceWorker): void;
}

export class SliceWorkers implements PeerRole<'worker'> {
  private readonly sessions = new Map<string, SliceWorker>();

  constructor(
    private readonly peers: PeerPool,
    private readonly settings: {
      welcome: WelcomeMessage;
      log: Logger;
      events: SliceWorkerEvents;
      /** The shard's slice (empty before it is assigned one): the part of each node's buckets it takes. */
      slice: () => Span;
    },
  ) {}

  /** Ready workers in the order they joined. */
  ready(): SliceWorker[] {
    return [...this.sessions.values()].filter((s) => s.state === 'ready');
  }

  shutdown(reason: string): void {
    this.peers.shutdown(reason);
  }

  admit(hello: MessageOf<'hello'>, channel: PeerChannel): AdmittedPeer<'worker'> | Refusal {
    if (this.sessions.has(hello.workerId))
      return { refuse: 'duplicate_worker', why: `a worker named ${hello.workerId} is already connected` };
    const room = this.peers.admission.admitWorker(this.sessions.size);
    if (!room.ok) return { refuse: room.reason, why: room.detail };
    const worker: SliceWorker = {
      id: hello.workerId,
      channel,
      state: 'welcomed',
      buckets: new BucketAssembly(this.settings.slice),
    };
    this.sessions.set(worker.id, worker);
    const { welcome, log } = this.settings;
    channel.wire = welcome.wire;
    const { backend, adapter } = hello;
    log.info(
      { worker: worker.id, peer: channel.peer, backend, adapter },
      `worker ${worker.id} joined from ${channel.peer}${adapter ? ` (${backend} on ${adapterLabel(adapter)})` : ''}`,
    );
    channel.send(this.peers.welcome(welcome));
    return { message: (frame) => this.handle(worker, frame), lost: () => this.lost(worker) };
  }

  private handle(worker: SliceWorker, { message, payload }: Frame<RoleMessage<'worker'>>): void {
    const { events } = this.settings;
    switch (message.type) {
      case 'ready':
        if (message.missing.length > 0)
          return worker.channel.reject(
            'unexpected_message',
            `asked for the ${message.missing.join(' and ')} set, which is not streamed from here`,
          );
        worker.state = 'ready';
        return events.ready(worker);
      case 'contribution':
      case 'bucket':
      case 'evaluation':
        if (worker.state !== 'ready')
          return worker.channel.reject(
            'unexpected_message',
            `${message.type} from a worker that is not ready`,
          );
        if (message.type === 'evaluation')
          return worker.channel.reject('unexpected_message', 'evaluations go to the coordinator');
        if (message.type === 'bucket') return worker.buckets.take(worker.channel, message, payload);
        if (message.buckets !== undefined) {
          const node = worker.buckets.close(message);
          return events.slice(worker, node.message, node.payload);
        }
        return events.slice(worker, message, payload);
      case 'holding':
        return worker.channel.reject('unexpected_message', 'holding goes to the coordinator');
      case 'hello':
      case 'auth':
        return worker.channel.reject(
          'unexpected_message',
          `${message.type} from ${worker.id}, which is already admitted`,
        );
      default:
        return unreachable(message, 'worker message');
    }
  }

  private lost(worker: SliceWorker): void {
    const wasReady = worker.state === 'ready';
    worker.state = 'gone';
    this.sessions.delete(worker.id);
    if (wasReady) this.settings.events.lost(worker);
  }
}
