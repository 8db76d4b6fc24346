/**
 * How a synthetic micro-batch spends its time, layer by layer, so that it can stand in for a real one where
 * timing is what matters (bench scale's overlap): forward takes a third of it and backward two thirds (a
 * backward pass computes two products per forward one: the gradient for the layer's input and the one for
 * its weights), and each layer takes its share of either in proportion to its forward multiply-adds
 * (spec.ts layerFlopsPerSample). A layer's values are final once its backward is done; backward runs last
 * layer first.
 */
import { type ModelSpec, type ParamLayout, layerFlopsPerSample } from '../models/spec.js';

/** Forward's share of a micro-batch's time; backward takes the rest. */
export const FORWARD_SHARE = 1 / 3;

export interface SyntheticLayerTime {
  layer: number;
  /** The layer's parameters in the flat layout: [from, to) (empty for a layer with none). */
  from: number;
  to: number;
  forwardMs: number;
  backwardMs: number;
}

/** Every layer's range and times, in forward order; the times add up to `microBatchMs`. */
export function syntheticSchedule(
  model: ModelSpec,
  layout: ParamLayout,
  microBatchMs: number,
): SyntheticLayerTime[] {
  const flops = layerFlopsPerSample(model);
  const total = flops.reduce((a, b) => a + b, 0);
  let cursor = 0;
  return model.layers.map((_, layer) => {
    const entries = layout.entries.filter((e) => e.layer === layer);
    const from = cursor;
    cursor += entries.reduce((sum, e) => sum + e.size, 0);
    const share = total > 0 ? flops[layer] / total : 1 / model.layers.length;
    return {
      layer,
      from,
      to: cursor,
      forwardMs: microBatchMs * FORWARD_SHARE * share,
      backwardMs: microBatchMs * (1 - FORWARD_SHARE) * share,
    };
  });
}
