/**
 * What a run's state must be before it is saved or resumed: weights and Adam's moments finite, of
 * the model's size, and Adam's second moment never negative. One Inf in `v` (a gradient above
 * ~1.8e19 squares past float32) would otherwise stay there for good and be checkpointed with it.
 * Pure: throws naming the tensor and the first bad value.
 */
import { firstNonFinite } from '../protocol/codec.js';

export interface TrainableTensors {
  weights: Float32Array;
  m: Float32Array;
  v: Float32Array;
}

export function checkTrainableState(
  t: TrainableTensors,
  expectedSize: number | undefined,
  where: string,
): void {
  for (const [name, values] of Object.entries({ weights: t.weights, adam_m: t.m, adam_v: t.v })) {
    if (expectedSize !== undefined && values.length !== expectedSize)
      throw new Error(`${where}: ${name} has ${values.length} values, the model has ${expectedSize}`);
    const bad = firstNonFinite(values);
    if (bad >= 0) throw new Error(`${where}: ${name}[${bad}] is ${values[bad]}; refusing non-finite state`);
  }
  const negative = t.v.findIndex((x) => x < 0);
  if (negative >= 0)
    throw new Error(`${where}: adam_v[${negative}] is ${t.v[negative]}; a second moment is never negative`);
}
