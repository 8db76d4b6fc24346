/** The pure parts of running a cluster: admission, sample accounting, stragglers, probes, proofs. */
import { describe, expect, it } from 'vitest';
import { AdmissionControl } from '../../protocol/admission.js';
import { SampleLedger } from '../../coordinator/sample-ledger.js';
import { splitRange } from '../../coordinator/sharding.js';
import { StragglerWatch } from '../../coordinator/stragglers.js';
import { SharedSecret, newNonce, proofsMatch } from '../../protocol/auth.js';

describe('admission', () => {
  it('caps open connections', () => {
    const a = new AdmissionControl({ maxConnections: 2, maxWorkers: 10, joinsPerSecond: 100 }, 0);
    expect(a.admitConnection(1, 0).ok).toBe(true);
    expect(a.admitConnection(2, 0)).toMatchObject({ ok: false, reason: 'too_many_connections' });
  });

  it('lets a burst of joinsPerSecond through, then refills at that rate', () => {
    const a = new AdmissionControl({ maxConnections: 100, maxWorkers: 10, joinsPerSecond: 4 }, 0);
    const at = (t: number) => a.admitConnection(0, t).ok;
    expect([at(0), at(0), at(0), at(0), at(0)]).toEqual([true, true, true, true, false]);
    expect(at(100)).toBe(false); // 0.4 of a token
    expect(at(260)).toBe(true); // 1.04 tokens
    expect(at(260)).toBe(false);
    expect([at(10_000), at(10_000), at(10_000), at(10_000), at(10_000)]).toEqual([
      true,
      true,
      true,
      true,
      false,
    ]); // never more than a burst
  });

  it('gives each source its own bucket: one busy address is refused while another still joins', () => {
    const a = new AdmissionControl(
      { maxConnections: 100, maxWorkers: 10, joinsPerSecond: 100, joinsPerSourcePerSecond: 2 },
      0,
    );
    const from = (source: string) => a.admitConnection(0, 0, source);
    expect([from('10.0.0.1').ok, from('10.0.0.1').ok]).toEqual([true, true]);
    expect(from('10.0.0.1')).toMatchObject({
      ok: false,
      reason: 'join_rate_limited',
      detail: expect.stringMatching(/from 10\.0\.0\.1 \(--max-joins-per-source-per-s\)/),
    });
    expect(from('10.0.0.2').ok).toBe(true);
    expect(a.admitConnection(0, 500, '10.0.0.1').ok).toBe(true); // refilled at 2/s
  });

  it('caps workers', () => {
    const a = new AdmissionControl({ maxConnections: 100, maxWorkers: 3, joinsPerSecond: 10 }, 0);
    expect(a.hasRoomFor(2)).toBe(true);
    expect(a.hasRoomFor(3)).toBe(false);
  });
});

describe('sample ledger', () => {
  it('closes an epoch complete when each sample was counted once', () => {
    const l = new SampleLedger(10);
    l.begin(0, 0);
    l.record(0, 0, 4);
    l.record(0, 4, 10);
    expect(l.close()).toBe(0);
    expect(l.totals).toMatchObject({ samples: 10, duplicates: 0, missing: 0, epochsComplete: 1 });
  });

  it('catches a sample counted twice and one never counted', () => {
    const l = new SampleLedger(10);
    l.begin(0, 0);
    l.record(0, 0, 6);
    l.record(0, 5, 9);
    expect(l.close()).toBe(1);
    expect(l.totals).toMatchObject({ samples: 10, duplicates: 1, missing: 1, epochsComplete: 0 });
  });

  it('starts a resumed run mid-epoch with the earlier samples accounted', () => {
    const l = new SampleLedger(10);
    l.begin(3, 6);
    l.record(3, 6, 10);
    expect(l.close()).toBe(0);
    expect(l.totals.epochsComplete).toBe(1);
    expect(() => l.record(3, 0, 1)).toThrow(/epoch 3 recorded during epoch 4/);
    expect(() => l.record(4, 8, 11)).toThrow(/outside an epoch of 10/);
  });
});

describe('stragglers', () => {
  const speeds = (slow: number) =>
    new Map([
      ['a', 100],
      ['b', 100],
      ['c', slow],
    ]);

  it('names a worker under half the median speed for `patience` steps in a row, once, and clears it when it recovers', () => {
    const w = new StragglerWatch(2, 3);
    expect(w.observe(speeds(40)).flagged).toEqual([]);
    expect(w.observe(speeds(40)).flagged).toEqual([]);
    expect(w.observe(speeds(40)).flagged).toEqual(['c']);
    expect(w.observe(speeds(40)).flagged).toEqual([]);
    expect(w.isStraggler('c')).toBe(true);
    expect(w.observe(speeds(90)).cleared).toEqual(['c']);
    expect(w.isStraggler('c')).toBe(false);
  });

  it('does not flag one slow step, nor a worker at 60% of the median', () => {
    const w = new StragglerWatch(2, 3);
    for (const s of [40, 40, 90, 40, 40, 60, 60, 60, 60]) expect(w.observe(speeds(s)).flagged).toEqual([]);
  });

  it('clears a straggler that left', () => {
    const w = new StragglerWatch(2, 1);
    expect(w.observe(speeds(10)).flagged).toEqual(['c']);
    expect(
      w.observe(
        new Map([
          ['a', 100],
          ['b', 100],
        ]),
      ).cleared,
    ).toEqual(['c']);
  });
});

describe('probing idle workers', () => {
  it('gives a probed worker one item it would otherwise not get, from the largest block, keeping blocks contiguous', () => {
    const workers = [
      { id: 'fast', speed: 100 },
      { id: 'slow', speed: 1 },
    ];
    expect(splitRange(0, 4, workers).map((b) => [b.workerId, b.count])).toEqual([['fast', 4]]);
    const probed = splitRange(0, 4, [workers[0], { ...workers[1], probe: true }]);
    expect(probed).toEqual([
      { workerId: 'fast', first: 0, count: 3 },
      { workerId: 'slow', first: 3, count: 1 },
    ]);
  });

  it('does not probe when there are fewer items than workers', () => {
    expect(
      splitRange(0, 1, [
        { id: 'a', speed: 100 },
        { id: 'b', speed: 1, probe: true },
      ]),
    ).toEqual([{ workerId: 'a', first: 0, count: 1 }]);
  });
});

describe('HMAC proofs', () => {
  const secret = new SharedSecret('0123456789abcdef-shared');
  const nw = newNonce();
  const nc = newNonce();

  it('match for the same secret and nonces, and differ for another secret, nonce, worker or role', () => {
    const again = new SharedSecret('0123456789abcdef-shared');
    expect(proofsMatch(secret.workerProof(nc, nw, 'w1'), again.workerProof(nc, nw, 'w1'))).toBe(true);
    expect(
      proofsMatch(
        secret.workerProof(nc, nw, 'w1'),
        new SharedSecret('0123456789abcdef-other').workerProof(nc, nw, 'w1'),
      ),
    ).toBe(false);
    expect(proofsMatch(secret.workerProof(nc, nw, 'w1'), secret.workerProof(newNonce(), nw, 'w1'))).toBe(
      false,
    );
    expect(proofsMatch(secret.workerProof(nc, nw, 'w1'), secret.workerProof(nc, nw, 'w2'))).toBe(false);
    // A coordinator's proof over the same nonces cannot be replayed as a worker's.
    expect(proofsMatch(secret.coordinatorProof(nc, nw), secret.workerProof(nc, nw, ''))).toBe(false);
    expect(proofsMatch(secret.workerProof(nc, nw, 'w1'), new Uint8Array(31))).toBe(false);
  });

  it('never prints the secret', () => {
    expect(String(secret)).toBe('[secret]');
    expect(JSON.stringify({ secret })).not.toContain('0123456789abcdef');
    expect(() => new SharedSecret('short')).toThrow(/at least 16 bytes/);
  });
});
