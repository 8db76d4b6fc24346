/** The NATS link's retransmission timeout (protocol/retransmit-timeout.ts), worked by hand from RFC 6298. */
import { describe, expect, it } from 'vitest';
import { RetransmitTimeout } from '../../protocol/retransmit-timeout.js';

const options = { initialMs: 2000, floorMs: 200, ceilingMs: 60_000 };

describe('RetransmitTimeout', () => {
  it('starts at the initial guess, then follows the round trips: SRTT + 4 × RTTVAR', () => {
    const rto = new RetransmitTimeout(options);
    expect(rto.ms).toBe(2000);
    rto.sample(400); // SRTT 400, RTTVAR 200: 400 + 800
    expect(rto.ms).toBe(1200);
    rto.sample(800); // RTTVAR 0.75·200 + 0.25·|400 − 800| = 250; SRTT 0.875·400 + 0.125·800 = 450
    expect(rto.smoothedRttMs).toBe(450);
    expect(rto.ms).toBe(450 + 4 * 250);
  });

  it('a queue that grows the round trip to 3 s grows the timeout past it (a fixed 2 s resends everything)', () => {
    const rto = new RetransmitTimeout(options);
    for (const ms of [300, 900, 1800, 3000, 3000]) rto.sample(ms);
    expect(rto.ms).toBeGreaterThan(3000);
  });

  it('never less than the floor above the smoothed round trip, however steady the round trips', () => {
    const rto = new RetransmitTimeout(options);
    for (let i = 0; i < 50; i++) rto.sample(2);
    expect(rto.ms).toBeCloseTo(202, 6);
    // A steady slow link: the deviation decays towards 0, the margin stays.
    const slow = new RetransmitTimeout(options);
    for (let i = 0; i < 100; i++) slow.sample(200);
    expect(slow.ms).toBeCloseTo(400, 6);
  });

  it('doubles on each timeout up to the ceiling, and the next round trip measured resets it', () => {
    const rto = new RetransmitTimeout(options);
    rto.sample(1000); // 1000 + 4·500 = 3000
    rto.backoff();
    expect(rto.ms).toBe(6000);
    rto.backoff();
    expect(rto.ms).toBe(12_000);
    for (let i = 0; i < 10; i++) rto.backoff();
    expect(rto.ms).toBe(60_000);
    rto.sample(1000); // RTTVAR 0.75·500 + 0 = 375, SRTT 1000: 2500, no backoff
    expect(rto.ms).toBe(2500);
  });

  it('ignores a measurement that is not a duration', () => {
    const rto = new RetransmitTimeout(options);
    rto.sample(Number.NaN);
    rto.sample(-5);
    expect(rto.ms).toBe(2000);
    expect(rto.smoothedRttMs).toBeUndefined();
  });
});
