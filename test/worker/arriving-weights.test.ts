/** A weights version arriving in parts: waits for any range resolve once its parts are in, in any order. */
import { describe, expect, it } from 'vitest';
import { ArrivingWeights } from '../../worker/arriving-weights.js';

describe('ArrivingWeights', () => {
  it('resolves a wait once the parts cover its range, and is complete once all are in', async () => {
    const w = new ArrivingWeights(3, new Float32Array(10));
    const resolved: string[] = [];
    const wait = (from: number, to: number) => w.whenIn(from, to).then(() => resolved.push(`${from}-${to}`));
    const waits = [wait(0, 4), wait(4, 10), wait(2, 6), wait(5, 5)];
    await Promise.resolve();
    expect(resolved).toEqual(['5-5']);
    w.arrived(0, 3);
    w.arrived(6, 10);
    await Promise.resolve();
    expect(resolved).toEqual(['5-5']);
    w.arrived(3, 6);
    await Promise.all(waits);
    expect(resolved.sort()).toEqual(['0-4', '2-6', '4-10', '5-5']);
    expect(w.complete).toBe(true);
    const whole = new ArrivingWeights(1, new Float32Array(4));
    whole.arrived(0, 4);
    expect(whole.complete).toBe(true);
  });
});
