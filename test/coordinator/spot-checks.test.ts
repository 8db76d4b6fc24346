/**
 * The pure parts of --verify-fraction (issue 31): which items the secret draw picks, how a key is read from
 * the environment, the detection probability the docs quote, and when two computations of an item agree.
 */
import { describe, expect, it } from 'vitest';
import { UsageError } from '../../common/errors.js';
import {
  type ChunkResult,
  type NodeResult,
  SpotChecks,
  compareNodes,
  compareChunks,
  detectionProbability,
  spotCheckKeyOf,
} from '../../coordinator/spot-checks.js';

const keyA = Uint8Array.from({ length: 32 }, (_, i) => i);
const keyB = Uint8Array.from({ length: 32 }, (_, i) => 255 - i);
const names = (n: number) => Array.from({ length: n }, (_, i) => `step ${i >> 3} node 0:${i & 7}`);

describe('SpotChecks.picks', () => {
  const many = names(20_000);

  it('picks nothing at fraction 0 and everything at fraction 1', () => {
    const none = new SpotChecks(0, keyA);
    const all = new SpotChecks(1, keyA);
    expect(many.filter((n) => none.picks(n))).toEqual([]);
    expect(many.every((n) => all.picks(n))).toBe(true);
  });

  it.each([0.01, 0.05, 0.1, 0.5, 0.9])(
    'picks a share of about %s of 20,000 names (within 4 standard deviations)',
    (p) => {
      for (const key of [keyA, keyB]) {
        const checks = new SpotChecks(p, key);
        const picked = many.filter((n) => checks.picks(n)).length;
        const sd = Math.sqrt(many.length * p * (1 - p));
        expect(Math.abs(picked - many.length * p)).toBeLessThan(4 * sd);
      }
    },
  );

  it('gives the same choice under the same key, and another choice under another key', () => {
    const some = names(2_000);
    const choice = (key: Uint8Array) => {
      const checks = new SpotChecks(0.3, key);
      return some.filter((n) => checks.picks(n));
    };
    expect(choice(keyA)).toEqual(choice(Uint8Array.from(keyA)));
    expect(choice(keyB)).toEqual(choice(keyB));
    expect(choice(keyA)).not.toEqual(choice(keyB));
    // The same name is answered the same way every time it is asked.
    const checks = new SpotChecks(0.3, keyA);
    expect(some.map((n) => checks.picks(n))).toEqual(some.map((n) => checks.picks(n)));
  });

  it('draws a fresh key when none is given: two instances choose differently', () => {
    const some = names(2_000);
    const [x, y] = [new SpotChecks(0.5), new SpotChecks(0.5)];
    expect(some.filter((n) => x.picks(n))).not.toEqual(some.filter((n) => y.picks(n)));
  });

  it('a larger fraction under the same key picks a superset (the draw is one rank per name)', () => {
    const some = names(5_000);
    const small = new SpotChecks(0.1, keyA);
    const large = new SpotChecks(0.4, keyA);
    for (const n of some) if (small.picks(n)) expect(large.picks(n)).toBe(true);
  });

  it.each([-0.01, 1.01, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -1, 2])(
    'refuses a fraction of %s',
    (fraction) => {
      expect(() => new SpotChecks(fraction, keyA)).toThrow(RangeError);
      expect(() => new SpotChecks(fraction, keyA)).toThrow(/fraction must be in \[0, 1\]/);
    },
  );

  it('refuses a fraction that is not a number at all', () => {
    expect(() => new SpotChecks(undefined as unknown as number, keyA)).toThrow(RangeError);
    expect(() => new SpotChecks({} as unknown as number, keyA)).toThrow(RangeError);
  });

  it('accepts the ends of the range', () => {
    expect(() => new SpotChecks(0, keyA)).not.toThrow();
    expect(() => new SpotChecks(1, keyA)).not.toThrow();
  });
});

describe('SpotChecks.picksEach', () => {
  interface Chunk {
    owner: string;
    chunk: number;
  }
  /** 20 chunks each for four workers, interleaved as an evaluation hands them out. */
  const chunks: Chunk[] = Array.from({ length: 80 }, (_, chunk) => ({ owner: `w${chunk % 4}`, chunk }));
  const nameOf = (c: Chunk) => `evaluation 3 chunk ${c.chunk}`;

  it('at fraction 0 picks nothing, not even one per owner', () => {
    expect(new SpotChecks(0, keyA).picksEach(chunks, nameOf)).toEqual([]);
  });

  it('at fraction 1 picks every item', () => {
    expect(new SpotChecks(1, keyA).picksEach(chunks, nameOf)).toEqual(chunks);
  });

  it.each([0.001, 0.01, 0.1, 0.5])(
    'at fraction %s gives every owner at least one item and keeps every item picks() picks',
    (p) => {
      for (const key of [keyA, keyB]) {
        const checks = new SpotChecks(p, key);
        const picked = checks.picksEach(chunks, nameOf);
        for (const owner of ['w0', 'w1', 'w2', 'w3'])
          expect(picked.some((c) => c.owner === owner)).toBe(true);
        for (const c of chunks) if (checks.picks(nameOf(c))) expect(picked).toContain(c);
        // Nothing beyond the draw and one per owner.
        const extra = picked.filter((c) => !checks.picks(nameOf(c)));
        expect(extra.length).toBeLessThanOrEqual(4);
        expect(new Set(extra.map((c) => c.owner)).size).toBe(extra.length);
        // In the items' order, each once.
        expect(picked).toEqual(chunks.filter((c) => picked.includes(c)));
      }
    },
  );

  it('gives a lone owner of a lone item that item, even at a tiny fraction', () => {
    const one = [{ owner: 'w9', chunk: 0 }];
    expect(new SpotChecks(1e-9, keyA).picksEach(one, nameOf)).toEqual(one);
    expect(new SpotChecks(1e-9, keyA).picksEach([], nameOf)).toEqual([]);
  });

  it('makes the same choice under the same key', () => {
    const a = new SpotChecks(0.05, keyA).picksEach(chunks, nameOf);
    const b = new SpotChecks(0.05, Uint8Array.from(keyA)).picksEach(chunks, nameOf);
    expect(a).toEqual(b);
  });
});

describe('spotCheckKeyOf', () => {
  it('is undefined when GRADFLEET_VERIFY_KEY is unset or empty', () => {
    expect(spotCheckKeyOf({})).toBeUndefined();
    expect(spotCheckKeyOf({ GRADFLEET_VERIFY_KEY: '' })).toBeUndefined();
  });

  it('reads 64 hex digits, either case, as their 32 bytes', () => {
    const hex = '00ff10Ab'.repeat(8);
    const key = spotCheckKeyOf({ GRADFLEET_VERIFY_KEY: hex });
    expect(key).toBeInstanceOf(Uint8Array);
    expect([...(key as Uint8Array)]).toEqual(
      Array.from({ length: 8 }, () => [0x00, 0xff, 0x10, 0xab]).flat(),
    );
  });

  it('fixes the draw: the key read gives the same choice as the same bytes given directly', () => {
    const hex = Buffer.from(keyA).toString('hex');
    const fromEnv = new SpotChecks(0.5, spotCheckKeyOf({ GRADFLEET_VERIFY_KEY: hex }));
    const direct = new SpotChecks(0.5, keyA);
    const some = names(500);
    expect(some.map((n) => fromEnv.picks(n))).toEqual(some.map((n) => direct.picks(n)));
  });

  it.each([
    ['63 digits', 'a'.repeat(63)],
    ['65 digits', 'a'.repeat(65)],
    ['a non-hex digit', `${'a'.repeat(63)}g`],
    ['a 0x prefix', `0x${'a'.repeat(62)}`],
    ['spaces around it', ` ${'a'.repeat(64)} `],
    ['a trailing newline', `${'a'.repeat(64)}\n`],
    ['base64 of 32 bytes', Buffer.alloc(32, 7).toString('base64')],
    ['a word', 'secret'],
  ])('refuses %s with a UsageError', (_what, hex) => {
    expect(() => spotCheckKeyOf({ GRADFLEET_VERIFY_KEY: hex })).toThrow(UsageError);
    expect(() => spotCheckKeyOf({ GRADFLEET_VERIFY_KEY: hex })).toThrow(
      /GRADFLEET_VERIFY_KEY must be 64 hex/,
    );
  });
});

describe('detectionProbability', () => {
  it('is 1 − (1 − p)^lies', () => {
    expect(detectionProbability(0.1, 1)).toBeCloseTo(0.1, 12);
    expect(detectionProbability(0.1, 2)).toBeCloseTo(0.19, 12);
    expect(detectionProbability(0.5, 3)).toBeCloseTo(0.875, 12);
    expect(detectionProbability(0.1, 10)).toBeCloseTo(1 - 0.9 ** 10, 12);
    expect(detectionProbability(0.1, 10)).toBeCloseTo(0.6513215599, 9);
  });

  it('is 0 with no lies or no checks, and 1 with every item checked', () => {
    expect(detectionProbability(0.3, 0)).toBe(0);
    expect(detectionProbability(0, 100)).toBe(0);
    expect(detectionProbability(1, 1)).toBe(1);
    expect(detectionProbability(1, 40)).toBe(1);
  });

  it('grows with the lies and with the fraction', () => {
    for (let k = 1; k < 50; k++)
      expect(detectionProbability(0.1, k + 1)).toBeGreaterThan(detectionProbability(0.1, k));
    expect(detectionProbability(0.25, 10)).toBeGreaterThan(detectionProbability(0.1, 10));
  });

  it("gives SECURITY.md's table", () => {
    const pct = (p: number, k: number) => 100 * detectionProbability(p, k);
    // p = 0.05: per step (2 nodes) 9.8%, within 10 nodes 40%, 40 nodes 87%, 100 nodes 99.4%.
    expect(pct(0.05, 2).toFixed(1)).toBe('9.8');
    expect(pct(0.05, 10).toFixed(0)).toBe('40');
    expect(pct(0.05, 40).toFixed(0)).toBe('87');
    expect(pct(0.05, 100).toFixed(1)).toBe('99.4');
    // p = 0.1: 19%, 65%, 98.5%, > 99.99%.
    expect(pct(0.1, 2).toFixed(0)).toBe('19');
    expect(pct(0.1, 10).toFixed(0)).toBe('65');
    expect(pct(0.1, 40).toFixed(1)).toBe('98.5');
    expect(pct(0.1, 100)).toBeGreaterThan(99.99);
    // p = 0.25: 44%, 94%, > 99.99%.
    expect(pct(0.25, 2).toFixed(0)).toBe('44');
    expect(pct(0.25, 10).toFixed(0)).toBe('94');
    expect(pct(0.25, 40)).toBeGreaterThan(99.99);
  });
});

describe('compareNodes', () => {
  const values = () =>
    Float32Array.from({ length: 257 }, (_, i) => Math.sin(i + 1) * (i % 7 === 0 ? 10 : 0.01));
  const node = (over: Partial<NodeResult> = {}): NodeResult => ({
    values: values(),
    lossSum: 36.84137,
    correct: 50,
    ...over,
  });
  const flipBit = (v: Float32Array, index: number, bit = 0): Float32Array => {
    const copy = v.slice();
    new Uint32Array(copy.buffer)[index] ^= 1 << bit;
    return copy;
  };
  const nextUp = (x: number): number => {
    const view = new DataView(new ArrayBuffer(8));
    view.setFloat64(0, x);
    view.setBigUint64(0, view.getBigUint64(0) + 1n);
    return view.getFloat64(0);
  };

  describe('exact (same backend)', () => {
    it('agrees on identical results', () => {
      expect(compareNodes(node(), node(), true, 64)).toEqual({ agree: true, detail: 'identical' });
    });

    it.each([0, 12, 31])('disagrees on one flipped bit (bit %s of one value)', (bit) => {
      const b = node({ values: flipBit(values(), 100, bit) });
      const c = compareNodes(node(), b, true, 64);
      expect(c.agree).toBe(false);
      expect(c.detail).toMatch(/^values differ \(relative distance /);
    });

    it('disagrees on -0 against 0', () => {
      const a = node({ values: Float32Array.of(1, 0, 2) });
      const b = node({ values: Float32Array.of(1, -0, 2) });
      const c = compareNodes(a, b, true, 64);
      expect(c.agree).toBe(false);
      expect(c.detail).toMatch(/values differ \(relative distance 0\.00+\)/);
    });

    it('disagrees on a loss sum that differs in its last bit', () => {
      const a = node();
      const b = node({ lossSum: nextUp(a.lossSum) });
      expect(b.lossSum).not.toBe(a.lossSum);
      const c = compareNodes(a, b, true, 64);
      expect(c).toEqual({ agree: false, detail: `loss sums differ: ${a.lossSum} against ${b.lossSum}` });
    });

    it('disagrees on a correct count off by one', () => {
      const c = compareNodes(node({ correct: 50 }), node({ correct: 51 }), true, 64);
      expect(c).toEqual({ agree: false, detail: 'correct counts differ: 50 against 51' });
    });

    it('disagrees on values within the cross-backend tolerance', () => {
      const b = node({ values: values().map((x) => x * (1 + 1e-5)) });
      expect(compareNodes(node(), b, true, 64).agree).toBe(false);
      expect(compareNodes(node(), b, false, 64).agree).toBe(true);
    });
  });

  describe('tolerant (across backends)', () => {
    it('agrees on identical results, saying so', () => {
      expect(compareNodes(node(), node(), false, 64)).toEqual({ agree: true, detail: 'identical' });
    });

    it.each([1e-7, 1e-5, 5e-4, 9e-4])(
      'agrees on values %s relative apart, saying within tolerance',
      (rel) => {
        const b = node({ values: values().map((x) => x * (1 + rel)) });
        expect(compareNodes(node(), b, false, 64)).toEqual({ agree: true, detail: 'within tolerance' });
      },
    );

    it('agrees on a loss sum within 1e-3 relative and a correct count within 1% of the samples', () => {
      const a = node({ correct: 500 });
      const b = node({ lossSum: a.lossSum * (1 + 5e-4), correct: 510 });
      expect(compareNodes(a, b, false, 1000).agree).toBe(true);
      // Fewer than 100 samples: one prediction either way still agrees (argmax near a tie).
      expect(compareNodes(node({ correct: 5 }), node({ correct: 6 }), false, 32).agree).toBe(true);
    });

    it('disagrees on values 2e-3 relative apart', () => {
      const b = node({ values: values().map((x) => x * (1 + 2e-3)) });
      const c = compareNodes(node(), b, false, 64);
      expect(c.agree).toBe(false);
      expect(c.detail).toMatch(/values differ \(relative distance 0\.00200\)/);
    });

    it('disagrees on flipped signs (the same norm), and on scaled values', () => {
      const flipped = compareNodes(node(), node({ values: values().map((x) => -x) }), false, 64);
      expect(flipped).toEqual({ agree: false, detail: 'values differ (relative distance 2.00)' });
      const scaled = compareNodes(node(), node({ values: values().map((x) => 3 * x) }), false, 64);
      expect(scaled.agree).toBe(false);
    });

    it('disagrees on a loss sum 0.2% off, naming both', () => {
      const a = node();
      const b = node({ lossSum: a.lossSum * 1.002 });
      expect(compareNodes(a, b, false, 64)).toEqual({
        agree: false,
        detail: `loss sums differ: ${a.lossSum} against ${b.lossSum}`,
      });
      expect(compareNodes(b, a, false, 64).agree).toBe(false);
    });

    it('disagrees on a loss sum of the other sign, or NaN', () => {
      expect(compareNodes(node(), node({ lossSum: -node().lossSum }), false, 64).agree).toBe(false);
      expect(compareNodes(node(), node({ lossSum: Number.NaN }), false, 64).agree).toBe(false);
    });

    it('agrees on two zero loss sums', () => {
      expect(compareNodes(node({ lossSum: 0 }), node({ lossSum: 0 }), false, 64).agree).toBe(true);
    });

    it('disagrees on a correct count off by more than 1% of the samples', () => {
      expect(compareNodes(node({ correct: 500 }), node({ correct: 511 }), false, 1000)).toEqual({
        agree: false,
        detail: 'correct counts differ: 500 against 511',
      });
      expect(compareNodes(node({ correct: 5 }), node({ correct: 7 }), false, 32).agree).toBe(false);
    });
  });

  it('disagrees on results of different lengths, either way and either mode', () => {
    const short = node({ values: values().subarray(0, 256) });
    for (const exact of [true, false]) {
      expect(compareNodes(node(), short, exact, 64)).toEqual({
        agree: false,
        detail: '257 values against 256',
      });
      expect(compareNodes(short, node(), exact, 64).detail).toBe('256 values against 257');
    }
  });

  it('names the first thing that differs: values before the loss before the count', () => {
    const b = node({ values: values().map((x) => -x), lossSum: 1, correct: 0 });
    expect(compareNodes(node(), b, true, 64).detail).toMatch(/^values differ/);
    const c = node({ lossSum: 1, correct: 0 });
    expect(compareNodes(node(), c, true, 64).detail).toMatch(/^loss sums differ/);
  });
});

describe('compareChunks', () => {
  const predictions = () => Float32Array.from({ length: 500 }, (_, i) => (i * 7) % 10);
  const chunk = (over: Partial<ChunkResult> = {}): ChunkResult => ({
    predictions: predictions(),
    lossSum: 151.25,
    ...over,
  });
  const changed = (count: number) => {
    const p = predictions();
    for (let i = 0; i < count; i++) p[i * 3] = (p[i * 3] + 1) % 10;
    return p;
  };

  it('exact: agrees only on the same predictions and loss', () => {
    expect(compareChunks(chunk(), chunk(), true)).toEqual({ agree: true, detail: 'identical' });
    expect(compareChunks(chunk(), chunk({ predictions: changed(1) }), true)).toEqual({
      agree: false,
      detail: '1 of 500 predictions differ',
    });
    expect(compareChunks(chunk(), chunk({ lossSum: 151.25000001 }), true).agree).toBe(false);
  });

  it('across backends: a prediction that went the other way near a tie is no lie, 1% of them at most', () => {
    expect(compareChunks(chunk(), chunk({ predictions: changed(1) }), false)).toEqual({
      agree: true,
      detail: 'within tolerance',
    });
    expect(compareChunks(chunk(), chunk({ predictions: changed(5) }), false).agree).toBe(true);
    expect(compareChunks(chunk(), chunk({ predictions: changed(6) }), false)).toEqual({
      agree: false,
      detail: '6 of 500 predictions differ',
    });
    expect(compareChunks(chunk(), chunk({ lossSum: 151.25 * 1.0005 }), false).agree).toBe(true);
    expect(compareChunks(chunk(), chunk({ lossSum: 151.25 * 1.002 }), false).agree).toBe(false);
  });

  it('faked predictions (the true labels) disagree', () => {
    const labels = Float32Array.from({ length: 500 }, (_, i) => (i * 3) % 10);
    expect(compareChunks(chunk(), chunk({ predictions: labels }), false).agree).toBe(false);
  });

  it('disagrees on chunks of different lengths', () => {
    expect(compareChunks(chunk(), chunk({ predictions: predictions().subarray(0, 499) }), false)).toEqual({
      agree: false,
      detail: '500 predictions against 499',
    });
  });
});
