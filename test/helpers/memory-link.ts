/**
 * Links and a listener in memory, for running the protocol, the coordinator's pool and workers in
 * one process: no sockets, so a test of a whole run takes milliseconds, and a fault placed on a
 * frame (in-process-cluster.ts) lands exactly there. The spawned-process tests stay the end-to-end checks.
 */
import type { Link, LinkHandlers, Listener } from '../../protocol/transport.js';

/**
 * One end of a link. Without a peer it is a probe: `receive` plays the far side, and what it sends
 * collects in `sent` (the fuzz tests). Paired, frames go to the peer on a later turn of the event
 * loop, in order, as a socket would deliver them.
 */
export class MemoryLink implements Link {
  readonly sent: Uint8Array[] = [];
  closed: string | undefined;
  private handlers: LinkHandlers | undefined;
  private peerEnd: MemoryLink | undefined;

  constructor(readonly peer = 'memory-peer') {}

  /** Two ends joined to each other. */
  static pair(names: [string, string] = ['memory-a', 'memory-b']): [MemoryLink, MemoryLink] {
    const a = new MemoryLink(names[1]);
    const b = new MemoryLink(names[0]);
    a.peerEnd = b;
    b.peerEnd = a;
    return [a, b];
  }

  send(frame: Uint8Array, written?: () => void): void {
    if (this.closed) return;
    this.sent.push(frame);
    written?.();
    const peer = this.peerEnd;
    if (!peer) return;
    // A copy: the sender may reuse its buffer, as it may with a socket.
    const copy = frame.slice();
    setImmediate(() => peer.receive(copy));
  }

  close(reason: string): void {
    if (this.closed) return;
    this.closed = reason;
    const peer = this.peerEnd;
    setImmediate(() => {
      this.handlers?.close(reason);
      peer?.close(`peer closed: ${reason}`);
    });
  }

  attach(handlers: LinkHandlers): void {
    this.handlers = handlers;
  }

  /** A whole frame arrived from the peer. */
  receive(bytes: Uint8Array): void {
    if (!this.closed) this.handlers?.frame(bytes);
  }
}

/** Hands each `connect()`'s far end to whoever listens (the coordinator's pool). */
export class MemoryListener implements Listener {
  constructor(readonly url = 'memory://coordinator') {}

  private handler: ((link: Link) => void) | undefined;
  /**
   * The coordinator's ends: closing the listener closes them, and the workers hear it after what was sent
   * before.
   */
  private readonly links: MemoryLink[] = [];
  private connections = 0;

  onLink(handler: (link: Link) => void): void {
    this.handler = handler;
  }

  private closed = false;

  /** A new connection: returns the worker's end. */
  connect(): MemoryLink {
    if (this.closed) throw new Error(`${this.url} is closed`);
    if (!this.handler) throw new Error('nobody listens yet');
    const n = ++this.connections;
    const [worker, coordinator] = MemoryLink.pair([`memory-worker-${n}`, this.url]);
    this.links.push(coordinator);
    this.handler(coordinator);
    return worker;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const link of this.links) link.close('listener closed');
  }
}
