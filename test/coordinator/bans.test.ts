/**
 * Who may not come back (issue 31 item 4): a worker whose frames are rejected `limit` times within `windowMs`
 * is refused for `backoffMs`; a liar is refused for the rest of the run; a slow machine's late results never
 * count against it. Times are passed in, so no clock is needed.
 */
import { describe, expect, it } from 'vitest';
import { Bans, DEFAULT_ABUSE_POLICY } from '../../coordinator/bans.js';

const policy = { limit: 3, windowMs: 30_000, backoffMs: 60_000 };

describe('Bans: strikes', () => {
  it('does not ban below the limit', () => {
    const bans = new Bans(policy);
    expect(bans.strike('w1', 'unexpected_message', 1_000)).toBe(false);
    expect(bans.strike('w1', 'stale_result', 2_000)).toBe(false);
    expect(bans.refusal('w1', 2_000)).toBeUndefined();
    expect(bans.refusal('w1', 2_001)).toBeUndefined();
  });

  it('bans at the limit-th strike inside the window, for the back-off, then lets the worker back', () => {
    const bans = new Bans(policy);
    expect(bans.strike('w1', 'unexpected_message', 1_000)).toBe(false);
    expect(bans.strike('w1', 'unexpected_message', 10_000)).toBe(false);
    expect(bans.strike('w1', 'bad_seal', 30_999)).toBe(true);
    const why = bans.refusal('w1', 30_999);
    expect(why).toBeDefined();
    expect(why).toMatch(/3 frames rejected within 30 s/);
    expect(why).toMatch(/the last: bad_seal/);
    expect(why).toMatch(/refused for 60 s/);
    expect(bans.refusal('w1', 30_999 + 59_999)).toBe(why);
    expect(bans.refusal('w1', 30_999 + 60_000)).toBeUndefined();
    expect(bans.refusal('w1', 30_999 + 60_001)).toBeUndefined();
    expect(bans.bannedForRun).toEqual([]);
  });

  it('bans only the worker that earned it', () => {
    const bans = new Bans(policy);
    for (const t of [0, 1, 2]) bans.strike('w1', 'unexpected_message', t);
    bans.strike('w2', 'unexpected_message', 0);
    bans.strike('w2', 'unexpected_message', 1);
    expect(bans.refusal('w1', 3)).toBeDefined();
    expect(bans.refusal('w2', 3)).toBeUndefined();
    expect(bans.refusal('w3', 3)).toBeUndefined();
  });

  it('does not add up strikes further apart than the window', () => {
    const bans = new Bans(policy);
    // Exactly windowMs after the first: the first is out of the window.
    expect(bans.strike('w1', 'unexpected_message', 0)).toBe(false);
    expect(bans.strike('w1', 'unexpected_message', 15_000)).toBe(false);
    expect(bans.strike('w1', 'unexpected_message', 30_000)).toBe(false);
    expect(bans.refusal('w1', 30_000)).toBeUndefined();
    // A strike every 20 s never has three in any 30 s.
    const slow = new Bans(policy);
    for (let t = 0; t < 600_000; t += 20_000) expect(slow.strike('w2', 'stale_result', t)).toBe(false);
    expect(slow.refusal('w2', 600_000)).toBeUndefined();
  });

  it('counts the strikes still inside the window once old ones have left it', () => {
    const bans = new Bans(policy);
    bans.strike('w1', 'unexpected_message', 0);
    bans.strike('w1', 'unexpected_message', 20_000);
    expect(bans.strike('w1', 'unexpected_message', 40_000)).toBe(false); // 0 is out
    expect(bans.strike('w1', 'unexpected_message', 45_000)).toBe(true); // 20, 40 and 45 s
  });

  it('never counts late or stale results (a slow machine), however many', () => {
    const bans = new Bans(policy);
    for (let t = 0; t < 100; t++) expect(bans.strike('w1', 'late_result', t)).toBe(false);
    for (let t = 0; t < 100; t++) expect(bans.strike('w2', 'stale_result', t)).toBe(false);
    expect(bans.refusal('w2', 100)).toBeUndefined();
    expect(bans.refusal('w1', 100)).toBeUndefined();
    // Nor do they help other reasons to the limit.
    expect(bans.strike('w1', 'unexpected_message', 101)).toBe(false);
    expect(bans.strike('w1', 'late_result', 102)).toBe(false);
    expect(bans.strike('w1', 'unexpected_message', 103)).toBe(false);
    expect(bans.refusal('w1', 104)).toBeUndefined();
    expect(bans.strike('w1', 'unexpected_message', 105)).toBe(true);
  });

  it('starts counting afresh after a ban: one strike after the back-off does not ban again', () => {
    const bans = new Bans(policy);
    for (const t of [0, 1, 2]) bans.strike('w1', 'unexpected_message', t);
    expect(bans.refusal('w1', 60_002)).toBeUndefined();
    expect(bans.strike('w1', 'unexpected_message', 60_003)).toBe(false);
    expect(bans.refusal('w1', 60_003)).toBeUndefined();
  });

  it('follows the policy it is given', () => {
    const bans = new Bans({ limit: 1, windowMs: 1_000, backoffMs: 5_000 });
    expect(bans.strike('w1', 'invalid_message', 100)).toBe(true);
    expect(bans.refusal('w1', 5_099)).toMatch(/1 frames rejected within 1 s .*refused for 5 s/);
    expect(bans.refusal('w1', 5_100)).toBeUndefined();
  });

  it('defaults to 3 rejections within 30 s, refused for 60 s (as SECURITY.md says)', () => {
    expect(DEFAULT_ABUSE_POLICY).toEqual({ limit: 3, windowMs: 30_000, backoffMs: 60_000 });
    const bans = new Bans();
    for (const t of [0, 1_000]) expect(bans.strike('w1', 'unexpected_message', t)).toBe(false);
    expect(bans.strike('w1', 'unexpected_message', 29_999)).toBe(true);
    expect(bans.refusal('w1', 89_998)).toBeDefined();
    expect(bans.refusal('w1', 89_999)).toBeUndefined();
  });
});

describe('Bans: for the run', () => {
  it('never expires', () => {
    const bans = new Bans(policy);
    bans.banForRun('liar', 'caught lying by a spot check (node [0, 4) of step 3)');
    for (const now of [0, 60_000, 1e12, Number.MAX_SAFE_INTEGER])
      expect(bans.refusal('liar', now)).toBe('caught lying by a spot check (node [0, 4) of step 3)');
    expect(bans.bannedForRun).toEqual(['liar']);
  });

  it('is not shortened by a later back-off', () => {
    const bans = new Bans(policy);
    bans.banForRun('liar', 'caught lying');
    for (const t of [0, 1, 2]) bans.strike('liar', 'unexpected_message', t);
    expect(bans.refusal('liar', 1e9)).toBe('caught lying');
    expect(bans.bannedForRun).toEqual(['liar']);
  });

  it('replaces a back-off in force', () => {
    const bans = new Bans(policy);
    for (const t of [0, 1, 2]) bans.strike('w1', 'unexpected_message', t);
    bans.banForRun('w1', 'caught lying');
    expect(bans.refusal('w1', 1e9)).toBe('caught lying');
  });

  it('bannedForRun lists only the run bans, not back-offs, in force or over', () => {
    const bans = new Bans(policy);
    bans.banForRun('liar1', 'caught lying');
    for (const t of [0, 1, 2]) bans.strike('abuser', 'unexpected_message', t);
    for (const t of [0, 1, 2]) bans.strike('gone', 'unexpected_message', t);
    bans.banForRun('liar2', 'caught lying');
    expect(bans.refusal('abuser', 10)).toBeDefined();
    expect(bans.bannedForRun.sort()).toEqual(['liar1', 'liar2']);
    expect(bans.refusal('gone', 100_000)).toBeUndefined();
    expect(bans.bannedForRun.sort()).toEqual(['liar1', 'liar2']);
  });
});
