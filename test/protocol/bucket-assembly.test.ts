/**
 * The receiving end of --bucket-mb: buckets assembled into the node their contribution closes, and every way
 * a peer can get them wrong ending as a node of the wrong size (which the receiver's own check refuses).
 */
import { describe, expect, it } from 'vitest';
import { BucketAssembly } from '../../protocol/bucket-assembly.js';
import type { MessageOf } from '../../protocol/messages.js';

const node = { step: 3, level: 1, index: 0 };
const bucket = (offset: number, values: number[], of = node): [MessageOf<'bucket'>, Float32Array] => [
  { type: 'bucket', ...of, offset, payloadValues: values.length },
  Float32Array.from(values),
];
const closing = (buckets: number, of = node): MessageOf<'contribution'> => ({
  type: 'contribution',
  ...of,
  offset: 10,
  lossSum: 1.5,
  correct: 2,
  samples: 4,
  computeSeconds: 0.1,
  payloadValues: 0,
  buckets,
});

describe('BucketAssembly', () => {
  it('puts buckets, in any order, where their offsets say, and the closing contribution becomes the whole node', () => {
    const assembly = new BucketAssembly(() => ({ offset: 10, size: 5 }));
    expect(assembly.add(...bucket(13, [4, 5]))).toEqual({ ok: true });
    expect(assembly.add(...bucket(10, [1, 2, 3]))).toEqual({ ok: true });
    const { message, payload } = assembly.close(closing(2));
    expect([...payload]).toEqual([1, 2, 3, 4, 5]);
    expect(message).toEqual({ ...closing(2), payloadValues: 5, buckets: undefined });
    expect('buckets' in message).toBe(false);
  });

  it('refuses a bucket outside its span or over another, and a node whose buckets leave a gap comes out empty', () => {
    const assembly = new BucketAssembly(() => ({ offset: 10, size: 5 }));
    expect(assembly.add(...bucket(9, [1, 2]))).toMatchObject({
      ok: false,
      detail: expect.stringMatching(/outside \[10, 15\)/),
    });
    expect(assembly.add(...bucket(14, [1, 2]))).toMatchObject({ ok: false });
    expect(assembly.add(...bucket(10, [1, 2, 3]))).toEqual({ ok: true });
    expect(assembly.add(...bucket(12, [9]))).toMatchObject({
      ok: false,
      detail: expect.stringMatching(/overlaps/),
    });
    expect(assembly.close(closing(1)).payload).toHaveLength(0);
  });

  it('a node comes out empty when the count of buckets it claims is not what arrived', () => {
    const assembly = new BucketAssembly(() => ({ offset: 0, size: 3 }));
    assembly.add(...bucket(0, [1, 2, 3]));
    const { message, payload } = assembly.close(closing(2));
    expect(payload).toHaveLength(0);
    expect(message.payloadValues).toBe(0);
    // And one closed with no bucket at all.
    expect(assembly.close(closing(1, { ...node, index: 1 })).payload).toHaveLength(0);
  });

  it('drops nodes of older steps that never closed, and holds at most 2 open at once', () => {
    const assembly = new BucketAssembly(() => ({ offset: 0, size: 2 }));
    for (let index = 0; index < 2; index++)
      expect(assembly.add(...bucket(0, [1], { step: 1, level: 0, index }))).toEqual({ ok: true });
    expect(assembly.add(...bucket(0, [1], { step: 1, level: 0, index: 2 }))).toMatchObject({
      ok: false,
      detail: expect.stringMatching(/more than 2 nodes/),
    });
    // A node of a later step: the two of step 1 are gone.
    expect(assembly.add(...bucket(0, [7, 8], { step: 2, level: 0, index: 0 }))).toEqual({ ok: true });
    expect(assembly.close(closing(1, { step: 1, level: 0, index: 0 })).payload).toHaveLength(0);
    expect([...assembly.close(closing(1, { step: 2, level: 0, index: 0 })).payload]).toEqual([7, 8]);
  });
});
