/**
 * What peers that have not authenticated may cost: each at most `perPeer` bytes off the wire (a
 * hello and an auth are a few hundred), and all of them together at most `total`, so many
 * half-open handshakes cannot add up to the memory that one could not take. Counted from the raw
 * bytes a link reads (before any frame or chunk is assembled), released when the peer is admitted
 * or gone. Pure bookkeeping.
 */

type Charge = { ok: true } | { ok: false; reason: 'preauth_too_large' | 'preauth_budget'; detail: string };

export interface PreAdmissionTicket {
  /**
   * Counts `bytes` more from this peer; not ok: it is past its own allowance or the shared one, and must be
   * dropped.
   */
  charge(bytes: number): Charge;
  /** The peer was admitted or left: its bytes no longer count. */
  release(): void;
}

export class PreAdmissionBudget {
  private used = 0;

  constructor(
    readonly perPeer: number,
    readonly total: number,
  ) {}

  /** Bytes charged to peers not yet admitted, together. */
  get outstanding(): number {
    return this.used;
  }

  open(): PreAdmissionTicket {
    let mine = 0;
    let released = false;
    return {
      charge: (bytes) => {
        if (released) return { ok: true };
        mine += bytes;
        this.used += bytes;
        if (mine > this.perPeer)
          return {
            ok: false,
            reason: 'preauth_too_large',
            detail: `it sent ${mine} bytes before authenticating (at most ${this.perPeer})`,
          };
        if (this.used > this.total)
          return {
            ok: false,
            reason: 'preauth_budget',
            detail: `peers not yet admitted have sent ${this.used} bytes together (at most ${this.total}: --max-preauth-kb)`,
          };
        return { ok: true };
      },
      release: () => {
        if (released) return;
        released = true;
        this.used -= mine;
      },
    };
  }
}
