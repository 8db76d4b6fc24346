import type { RejectionReason } from './errors.js';
import type { SessionKeys } from './sealing.js';

/**
 * What the coordinator and workers need from a transport: a bidirectional link per worker that
 * carries whole frames. WebSockets (ws-transport.ts) is the embedded default; NATS plugs in behind
 * the same two interfaces.
 */

export interface LinkHandlers {
  frame(bytes: Uint8Array): void;
  close(reason: string): void;
  /** Something the transport itself dropped (a lost or repeated chunk), for counting and logs. */
  rejected?(reason: RejectionReason, detail: string): void;
  /**
   * Raw bytes read from the peer, before any frame is assembled (what a peer not yet admitted is charged).
   */
  received?(bytes: number): void;
}

export interface Link {
  /** Who is at the other end, for logs ("ws 127.0.0.1:51234"). */
  readonly peer: string;
  /**
   * Where it connects from, for per-source limits: a remote address (ws), the joining client's inbox (NATS).
   */
  readonly source?: string;
  /**
   * The join pass it came with (protocol/join-pass.ts), as presented: unchecked until the side that is
   * joined checks it against its secret and clock.
   */
  readonly joinPass?: string;
  /** `written` (optional) runs once the frame has been handed to the operating system. */
  send(frame: Uint8Array, written?: () => void): void;
  /**
   * The same frame, sent to many links (the weights): a transport that can publish it once for all
   * may, as long as it arrives exactly as send() would deliver it, in order with the link's other
   * frames. Without it, send() is used.
   */
  sendShared?(frame: Uint8Array, written?: () => void): void;
  close(reason: string): void;
  /**
   * The largest frame the link may assemble from now on (a link that reassembles chunks allocates by their
   * claims).
   */
  limitFrames?(bytes: number): void;
  /** TLS binds this link end to end (wss://): sealing frames on top would add nothing. */
  readonly confidential?: boolean;
  /**
   * A link that seals its own messages (NATS, whose controls and chunks need it as much as frames):
   * from now on everything it sends is sealed and everything it accepts must be. Links without it
   * carry frames that the channel seals.
   */
  secure?(keys: SessionKeys): void;
  /** Set once, synchronously after the link is handed over, so no frame is missed. */
  attach(handlers: LinkHandlers): void;
}

/**
 * What the side that is joined allows connections that are not links yet (ws: TCP and TLS sockets before the
 * WebSocket upgrade), so that they cannot be held open without limit. (How long one may take to become a
 * link is the transport's own bound.)
 */
export interface ConnectionGuard {
  /** Connections open at once, those not yet links and links together; past it one is closed at once. */
  maxConnections: number;
  /** A connection closed at once because `open` were open (for counting and the log). */
  refused(peer: string, open: number): void;
}

export interface Listener {
  /** Where workers connect, e.g. ws://127.0.0.1:7070. */
  readonly url: string;
  /** Called for each new link; its handler must attach() before returning. */
  onLink(handler: (link: Link) => void): void;
  /**
   * Holds connections that are not links yet to `guard`, for transports that have such connections (ws);
   * links are admitted by their owner as before.
   */
  guard?(guard: ConnectionGuard): void;
  /** Stops listening and closes every connection, links or not: it never waits for a peer to hang up. */
  close(): Promise<void>;
}

export class TransportError extends Error {
  override name = 'TransportError';
  /** Retrying cannot help (credentials refused, certificate not trusted): give up and say why. */
  readonly permanent: boolean;

  constructor(message: string, options: { permanent?: boolean } = {}) {
    super(message);
    this.permanent = options.permanent ?? false;
  }
}

export function isPermanentFailure(err: unknown): boolean {
  return err instanceof TransportError && err.permanent;
}
