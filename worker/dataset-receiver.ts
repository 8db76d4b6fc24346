/** Reassembles a data set the coordinator streams to a worker that lacks it, and proves it identical. */
import { type Dataset, type ImageShape, createDataset, fingerprint } from '../training/data/index.js';
import type { MessageOf } from '../protocol/messages.js';

export class DatasetReceiver {
  private readonly images: Uint8Array;
  private labels: Uint8Array | null = null;
  private received = 0;
  private readonly seen: Uint8Array;
  private readonly pixelsPerImage: number;

  constructor(
    readonly split: string,
    readonly total: number,
    private readonly expectedFingerprint: string,
    private readonly shape: ImageShape,
  ) {
    this.pixelsPerImage = shape.height * shape.width;
    this.images = new Uint8Array(total * this.pixelsPerImage);
    this.seen = new Uint8Array(total);
  }

  /** Adds a chunk; returns the data set once complete and verified. */
  add(chunk: MessageOf<'dataChunk'>): Dataset | undefined {
    const { first, count, total } = chunk;
    if (total !== this.total || first + count > total)
      throw new Error(`${this.split} chunk [${first}, ${first + count}) does not fit ${this.total} samples`);
    if (chunk.images.length !== count * this.pixelsPerImage)
      throw new Error(`${this.split} chunk: ${chunk.images.length} pixels for ${count} images`);
    if (chunk.labels && chunk.labels.length !== count)
      throw new Error(`${this.split} chunk: ${chunk.labels.length} labels for ${count} images`);
    if (this.seen.subarray(first, first + count).some((s) => s))
      throw new Error(`${this.split} chunk [${first}, ${first + count}) overlaps one already received`);
    this.images.set(chunk.images, first * this.pixelsPerImage);
    if (chunk.labels) {
      this.labels ??= new Uint8Array(total);
      this.labels.set(chunk.labels, first);
    }
    this.seen.fill(1, first, first + count);
    this.received += count;
    if (this.received < total) return undefined;
    const data = createDataset(`streamed:${this.split}`, this.images, this.labels, this.shape);
    const got = fingerprint(data);
    if (got !== this.expectedFingerprint)
      throw new Error(
        `streamed ${this.split} set has fingerprint ${got}, the coordinator announced ${this.expectedFingerprint}`,
      );
    return data;
  }
}
