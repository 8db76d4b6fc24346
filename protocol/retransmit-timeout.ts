/**
 * When an unacknowledged frame of a NATS link is resent: after a retransmission timeout estimated from the
 * round trips the link measures (RFC 6298: smoothed RTT + 4 × its mean deviation), doubled on each timeout and
 * reset by the next measurement. The floor applies to the margin over the smoothed RTT, as in Linux's TCP, not
 * to the whole: on a steady slow link (200 ms) the deviation falls towards 0, and a timeout of SRTT + almost
 * nothing would fire on every ack a scheduling quantum late. A fixed timeout collapses under load: once a step's frames
 * queue for longer than it, every resend adds to the queue that delayed the acks.
 */
export interface RetransmitTimeoutOptions {
  /** Before any round trip is measured (and, as in TCP, the first guess: a resend is cheaper than a stall). */
  initialMs: number;
  /**
   * The least margin over the smoothed RTT: an ack may wait a scheduling quantum or a small queue even on an
   * idle link.
   */
  floorMs: number;
  /** Never above this, however often it doubles. */
  ceilingMs: number;
}

export const DEFAULT_RETRANSMIT: RetransmitTimeoutOptions = {
  initialMs: 2000,
  // RFC 6298's 1 s rather than Linux's 200 ms: a process starved of CPU (many on few cores, as on the
  // simulated cluster, or a GC pause) acks late by hundreds of ms, and every such pause past the timeout
  // repeats a chunk per link. A real loss is found sooner anyway: a later chunk's ack shows it.
  floorMs: 1000,
  ceilingMs: 60_000,
};

export class RetransmitTimeout {
  private srtt: number | undefined;
  private rttvar = 0;
  private backoffs = 0;

  constructor(private readonly options: RetransmitTimeoutOptions = DEFAULT_RETRANSMIT) {}

  /** A round trip measured on a frame sent once (Karn: a resent frame's ack could be either copy's). */
  sample(ms: number): void {
    if (!(ms >= 0 && Number.isFinite(ms))) return;
    if (this.srtt === undefined) {
      this.srtt = ms;
      this.rttvar = ms / 2;
    } else {
      this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - ms);
      this.srtt = 0.875 * this.srtt + 0.125 * ms;
    }
    this.backoffs = 0;
  }

  /** A timeout fired: the next one waits twice as long, until a round trip is measured again. */
  backoff(): void {
    this.backoffs = Math.min(this.backoffs + 1, 16);
  }

  get ms(): number {
    const { initialMs, floorMs, ceilingMs } = this.options;
    const base = this.srtt === undefined ? initialMs : this.srtt + Math.max(floorMs, 4 * this.rttvar);
    return Math.min(ceilingMs, base * 2 ** this.backoffs);
  }

  get smoothedRttMs(): number | undefined {
    return this.srtt;
  }
}
