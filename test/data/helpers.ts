/** Fixtures shared by the data tests: temp dirs and small synthetic datasets. */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { encodeIdx } from '../../training/data/idx.js';
import { Rng } from '../../training/rng.js';

/**
 * A fresh temp dir, removed after the enclosing describe block (or file). Call it while tests
 * are being collected, not inside an `it`: hooks registered there never run.
 */
export function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'gradfleet-data-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A fresh empty directory inside `parent` (cleaned up with it). */
export function subDir(parent: string, name: string): string {
  const dir = join(parent, name);
  mkdirSync(dir);
  return dir;
}

/** `count` random 28x28 images and labels 0..9 from a fixed seed. */
export function syntheticSamples(count: number, seed: number): { images: Uint8Array; labels: Uint8Array } {
  const rng = new Rng(seed);
  const images = new Uint8Array(count * 784);
  for (let i = 0; i < images.length; i++) images[i] = rng.nextInt(256);
  const labels = new Uint8Array(count);
  for (let i = 0; i < count; i++) labels[i] = rng.nextInt(10);
  return { images, labels };
}

export function writeIdxImages(path: string, images: Uint8Array, height = 28, width = 28): void {
  writeFileSync(path, encodeIdx([images.length / (height * width), height, width], images));
}

export function writeIdxLabels(path: string, labels: Uint8Array): void {
  writeFileSync(path, encodeIdx([labels.length], labels));
}
