/**
 * A worker's link to one shard reducer of a sharded run: it joins the shard as it joined the
 * coordinator (same secret, sealed the same way), then sends the shard its slice of every tree
 * node and hears the shard's slice of each new weights version.
 */
import type { Logger } from 'pino';
import { unreachable } from '../common/exhaustive.js';
import type { SharedSecret } from '../protocol/auth.js';
import { Channel, type RejectionCounts } from '../protocol/channel.js';
import { ClientHandshake } from '../protocol/client-handshake.js';
import type { Frame } from '../protocol/codec.js';
import { keepAlive } from '../protocol/keep-alive.js';
import {
  COORDINATOR_MESSAGE_TYPES,
  type CoordinatorMessage,
  type MessageOf,
  type WorkerMessage,
} from '../protocol/messages.js';
import type { Link } from '../protocol/transport.js';
import type { WireDtype } from '../protocol/wire-dtype.js';

export interface ShardPeerOptions {
  index: number;
  link: Link;
  workerId: string;
  backend: string;
  runId: string;
  wire: WireDtype;
  secret?: SharedSecret;
  log: Logger;
  rejections: RejectionCounts;
  maxFrameBytes?: number;
  /** A weights slice from this shard. */
  weights(message: MessageOf<'weights'>, payload: Float32Array): void;
  /** The link ended, or the shard cannot be trusted: the worker's session cannot go on without it. */
  lost(reason: string): void;
}

export class ShardPeer {
  private readonly channel: Channel<CoordinatorMessage, WorkerMessage>;
  private readonly handshake: ClientHandshake;
  private heartbeat: NodeJS.Timeout | undefined;
  private lastHeard = performance.now();
  /** Resolves once the shard has welcomed us into the same run. */
  readonly joined: Promise<void>;
  private settleJoin!: { resolve(): void; reject(err: Error): void };
  private closed = false;

  constructor(private readonly settings: ShardPeerOptions) {
    this.joined = new Promise((resolve, reject) => (this.settleJoin = { resolve, reject }));
    // Nobody awaits `joined` after a session ends: its rejection must not be unhandled.
    this.joined.catch(() => {});
    this.channel = new Channel(settings.link, {
      log: settings.log,
      rejections: settings.rejections,
      maxFrameBytes: settings.maxFrameBytes,
      replyToRejections: false,
      accepts: COORDINATOR_MESSAGE_TYPES,
      onMessage: (frame) => this.onMessage(frame),
      onClose: (reason) => this.end(`link to shard ${settings.index} lost: ${reason}`),
    });
    this.handshake = new ClientHandshake(
      this.channel,
      { workerId: settings.workerId, backend: settings.backend },
      settings.secret,
      `shard ${settings.index}`,
    );
    this.handshake.start();
  }

  private onMessage({ message, payload }: Frame<CoordinatorMessage>): void {
    this.lastHeard = performance.now();
    switch (message.type) {
      case 'challenge': {
        const answered = this.handshake.challenge(message);
        return answered.ok ? undefined : this.fail(answered.why);
      }
      case 'welcome': {
        const trusted = this.handshake.welcome();
        if (!trusted.ok) return this.fail(trusted.why);
        if (message.runId !== this.settings.runId)
          return this.fail(
            `shard ${this.settings.index} serves run ${message.runId}, the coordinator's is ${this.settings.runId}`,
          );
        this.channel.wire = this.settings.wire;
        this.heartbeat = keepAlive({
          intervalMs: message.heartbeatMs,
          timeoutMs: message.heartbeatTimeoutMs,
          lastHeard: () => this.lastHeard,
          beat: () => this.channel.send({ type: 'heartbeat', sentAt: Date.now() }),
          silent: (s) =>
            this.settings.link.close(`shard ${this.settings.index} has been silent for ${s.toFixed(1)} s`),
        });
        // Ready at once: a shard streams no data; it answers with its current weights slice.
        this.channel.send({ type: 'ready', missing: [] });
        return this.settleJoin.resolve();
      }
      case 'weights':
        return this.settings.weights(message, payload);
      case 'heartbeat':
        return;
      case 'error':
        return this.settings.log.warn(
          { shard: this.settings.index, code: message.code },
          `shard ${this.settings.index} reports: ${message.message}`,
        );
      case 'shutdown':
        return this.end(`shard ${this.settings.index} shut down: ${message.reason}`);
      case 'dataChunk':
      case 'assign':
      case 'evaluate':
        return this.channel.reject('unexpected_message', `${message.type} from a shard reducer`);
      default:
        return unreachable(message, 'shard message');
    }
  }

  /** This node's slice: its sums' header, with the values from `offset`. */
  send(message: MessageOf<'contribution'>, offset: number, values: Float32Array): void {
    if (!this.closed) this.channel.send({ ...message, offset, payloadValues: values.length }, values);
  }

  /** Part of a node's slice ahead of it (--bucket-mb). */
  sendBucket(message: MessageOf<'bucket'>, values: Float32Array): void {
    if (!this.closed) this.channel.send(message, values);
  }

  close(reason: string): void {
    this.closed = true;
    clearInterval(this.heartbeat);
    this.settings.link.close(reason);
  }

  private fail(why: string): void {
    this.settings.log.error({ shard: this.settings.index }, why);
    this.end(why);
    this.settings.link.close(why);
  }

  private end(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.heartbeat);
    this.settleJoin.reject(new Error(reason));
    this.settings.lost(reason);
  }
}
