/**
 * The joining side of the handshake (hello → [challenge → auth] → welcome), for every peer that
 * joins another: a worker joining the coordinator or a shard reducer, a shard reducer joining the
 * coordinator. The side that is joined runs protocol/peer-pool.ts.
 */
import { type SharedSecret, newNonce, proofsMatch } from './auth.js';
import type { Logger } from 'pino';
import { Channel, type RejectionCounts } from './channel.js';
import type { Frame } from './codec.js';
import type { Message, MessageOf } from './messages.js';
import type { Link } from './transport.js';

/**
 * The joining side's channel to the peer it joined: a handler that throws is a fault of this
 * session's own (it reports and leaves: `fail`), never a rejection of the peer's frame; the link
 * closing is the session lost.
 */
export function joiningChannel<In extends Message, Out extends Message>(
  link: Link,
  session: {
    log: Logger;
    rejections: RejectionCounts;
    maxFrameBytes?: number;
    accepts: ReadonlyArray<In['type']>;
    handle(frame: Frame<In>): void;
    fail(err: Error): void;
    lost(reason: string): void;
  },
): Channel<In, Out> {
  return new Channel<In, Out>(link, {
    log: session.log,
    rejections: session.rejections,
    maxFrameBytes: session.maxFrameBytes,
    replyToRejections: false,
    accepts: session.accepts,
    onMessage: (frame) => {
      try {
        session.handle(frame);
      } catch (err) {
        session.fail(err as Error);
      }
    },
    onClose: (reason) => session.lost(`connection to the coordinator lost: ${reason}`),
  });
}

/** What a joining peer says about itself in its hello (the nonce is the handshake's own). */
export type HelloFields = Omit<MessageOf<'hello'>, 'type' | 'nonce'>;

/**
 * A step of the handshake: go on, or stop for good with `why` (the peer cannot be trusted, or cannot trust
 * us).
 */
export type HandshakeVerdict = { ok: true } | { ok: false; why: string };

export class ClientHandshake {
  private readonly nonce = newNonce();
  private answered = false;

  /** `peer`: what the other side is, for the reasons given ("the coordinator", "shard 2"). */
  constructor(
    private readonly channel: Channel<Message, Message>,
    private readonly hello: HelloFields,
    private readonly secret: SharedSecret | undefined,
    private readonly peer: string,
  ) {}

  start(): void {
    this.channel.send({ type: 'hello', ...this.hello, nonce: this.nonce });
  }

  /** Answers the peer's challenge after checking its proof; from then on the channel is sealed. */
  challenge(c: MessageOf<'challenge'>): HandshakeVerdict {
    const {
      secret,
      hello: { workerId },
    } = this;
    if (!secret)
      return {
        ok: false,
        why: `${this.peer} requires a shared secret: pass --secret-file FILE (or GRADFLEET_SECRET)`,
      };
    if (this.answered) return { ok: false, why: `${this.peer} challenged twice` };
    if (!proofsMatch(secret.coordinatorProof(this.nonce, c.nonce), c.proof))
      return {
        ok: false,
        why: `${this.peer}'s secret differs from ours: give both the same GRADFLEET_SECRET (or --secret-file)`,
      };
    this.answered = true;
    this.channel.send({ type: 'auth', proof: secret.workerProof(c.nonce, this.nonce, workerId) });
    // Everything after our auth is sealed both ways (protocol/sealing.ts).
    this.channel.secure(secret, { workerNonce: this.nonce, coordinatorNonce: c.nonce, workerId }, 'worker');
    return { ok: true };
  }

  /** A welcome is acceptable only from a peer that proved it holds our secret, when we have one. */
  welcome(): HandshakeVerdict {
    if (this.secret && !this.answered)
      return {
        ok: false,
        why: `${this.peer} did not authenticate (it has no secret, or is not ours): refusing to work for it`,
      };
    return { ok: true };
  }
}
