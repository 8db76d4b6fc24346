import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Logger } from '../../common/logger.js';
import {
  CheckpointError,
  type CheckpointErrorCode,
  decodeCheckpoint,
  encodeCheckpoint,
} from '../../coordinator/checkpoint-file.js';
import {
  checkpointFileName,
  listCheckpoints,
  loadCheckpoint,
  loadLatestCheckpoint,
  resolveCheckpoint,
  saveCheckpoint,
} from '../../coordinator/checkpoint-store.js';

const BIG = 3_488_874;

/** Deterministic pseudo-random float32 bit patterns, NaN payloads and subnormals included. */
function randomBits(length: number, seed: number): Float32Array {
  const bits = new Uint32Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bits[i] = x >>> 0;
  }
  return new Float32Array(bits.buffer);
}

function expectBitExact(actual: Float32Array, expected: Float32Array): void {
  expect(actual).toBeInstanceOf(Float32Array);
  expect(actual.length).toBe(expected.length);
  const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const b = new Uint32Array(expected.buffer, expected.byteOffset, expected.length);
  let mismatches = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) mismatches++;
  expect(mismatches).toBe(0);
}

function decodeError(bytes: Uint8Array): CheckpointError {
  try {
    decodeCheckpoint(bytes);
  } catch (error) {
    expect(error).toBeInstanceOf(CheckpointError);
    return error as CheckpointError;
  }
  throw new Error('decodeCheckpoint accepted bad bytes');
}

function expectDecodeError(bytes: Uint8Array, code: CheckpointErrorCode, message: RegExp): void {
  const error = decodeError(bytes);
  expect(error.code).toBe(code);
  expect(error.message).toMatch(message);
}

/** A file with the right preamble around an arbitrary header text and payload. */
function rawFile(header: string, payload: Uint8Array, version = 1): Uint8Array {
  const headerBytes = new TextEncoder().encode(header);
  const payloadStart = Math.ceil((12 + headerBytes.length) / 8) * 8;
  const out = new Uint8Array(payloadStart + payload.length);
  out.set(new TextEncoder().encode('GFCK'), 0);
  out[4] = version;
  new DataView(out.buffer).setUint32(8, headerBytes.length, true);
  out.set(headerBytes, 12);
  out.set(payload, payloadStart);
  return out;
}

function headerOf(bytes: Uint8Array): { text: string; start: number; json: Record<string, unknown> } {
  const length = new DataView(bytes.buffer, bytes.byteOffset).getUint32(8, true);
  const text = new TextDecoder().decode(bytes.subarray(12, 12 + length));
  return { text, start: 12, json: JSON.parse(text) };
}

const meta = {
  step: 1234,
  model: 'mnist-small',
  adam: { beta1: 0.9, beta2: 0.999, t: 1234, nested: { deeper: [1, 'two', { three: null }], flag: true } },
  weightsVersion: 1234,
  lr: 1e-3,
  note: 'ünïcødé ✓',
};

function small(): Uint8Array {
  return encodeCheckpoint(
    { step: 7, adam: { beta1: 0.9, history: [1, 2, 3] }, tag: 'abc' },
    {
      w: new Float32Array([1.5, -2, 3.25, Number.NaN]),
      b: new Float32Array([0.5]),
      empty: new Float32Array(0),
    },
  );
}

describe('checkpoint file format', () => {
  it('round-trips 3 tensors (one of 3,488,874 values) bit-exactly with nested meta', () => {
    const big = randomBits(BIG, 12345);
    const specials = new Float32Array(
      new Uint32Array([
        0x7fc00001, 0xffbadbad, 0x80000000, 0x7f800000, 0xff800000, 0x00000001, 0x807fffff, 0x3f800000,
      ]).buffer,
    );
    const odd = randomBits(3, 99); // odd length: the next tensor still lands 4-byte aligned
    const bytes = encodeCheckpoint(meta, { weights: big, specials, odd });

    expect(new TextDecoder().decode(bytes.subarray(0, 4))).toBe('GFCK');
    expect([...bytes.subarray(4, 8)]).toEqual([2, 0, 0, 0]);
    const header = headerOf(bytes);
    const payloadStart = Math.ceil((12 + new TextEncoder().encode(header.text).length) / 8) * 8;
    expect(payloadStart % 8).toBe(0);
    expect(header.json.payloadBytes).toBe((BIG + 8 + 3) * 4);
    expect(bytes.length).toBe(payloadStart + (BIG + 8 + 3) * 4);
    expect(header.json.tensors).toEqual([
      { name: 'weights', offset: 0, length: BIG },
      { name: 'specials', offset: BIG * 4, length: 8 },
      { name: 'odd', offset: (BIG + 8) * 4, length: 3 },
    ]);
    expect(header.json.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(header.json.signature).toBeNull(); // no key: unsigned

    const decoded = decodeCheckpoint(bytes);
    expect(decoded.meta).toEqual(meta);
    expect(Object.keys(decoded.tensors)).toEqual(['weights', 'specials', 'odd']);
    expectBitExact(decoded.tensors.weights, big);
    expectBitExact(decoded.tensors.specials, specials);
    expectBitExact(decoded.tensors.odd, odd);

    // Copies, not views of the input.
    for (const tensor of Object.values(decoded.tensors)) expect(tensor.buffer).not.toBe(bytes.buffer);
    const before = decoded.tensors.weights[0];
    bytes.fill(0);
    expect(Object.is(decoded.tensors.weights[0], before)).toBe(true);
  });

  it('decodes from a Uint8Array at an unaligned byte offset (e.g. a pooled Buffer)', () => {
    const bytes = small();
    const host = new Uint8Array(bytes.length + 3);
    host.set(bytes, 3);
    const decoded = decodeCheckpoint(host.subarray(3));
    expect(decoded.meta).toEqual({ step: 7, adam: { beta1: 0.9, history: [1, 2, 3] }, tag: 'abc' });
    expectBitExact(decoded.tensors.w, new Float32Array([1.5, -2, 3.25, Number.NaN]));
    expect(decoded.tensors.empty).toEqual(new Float32Array(0));
  });

  it('stores meta as JSON: undefined becomes null, and no tensors is fine', () => {
    expect(decodeCheckpoint(encodeCheckpoint(undefined, {}))).toEqual({
      meta: null,
      tensors: {},
      signature: { state: 'unsigned', keyGiven: false },
    });
    expect(decodeCheckpoint(encodeCheckpoint([1, 'x'], {})).meta).toEqual([1, 'x']);
  });

  it('rejects what it cannot encode', () => {
    expect(() => encodeCheckpoint({}, { w: [1, 2] as unknown as Float32Array })).toThrow(
      /tensor "w" is not a Float32Array/,
    );
    expect(() => encodeCheckpoint({ n: 1n }, {})).toThrow(CheckpointError);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => encodeCheckpoint(cyclic, {})).toThrow(/meta is not JSON-serializable/);
  });

  it('detects one flipped byte in the payload', () => {
    const bytes = small();
    bytes[bytes.length - 5] ^= 0x01;
    expectDecodeError(bytes, 'checksum_mismatch', /checksum mismatch/);
  });

  it('detects one flipped byte in the meta', () => {
    const bytes = small();
    const { text, start } = headerOf(bytes);
    const at = start + text.indexOf('"abc"') + 2; // the "b" of the meta's tag value
    bytes[at] ^= 0x01; // "abc" -> "acc": still valid JSON, different meta
    expect(headerOf(bytes).json.meta).toEqual({
      step: 7,
      adam: { beta1: 0.9, history: [1, 2, 3] },
      tag: 'acc',
    });
    expectDecodeError(bytes, 'checksum_mismatch', /checksum mismatch/);

    const numeric = small();
    const digit = start + headerOf(numeric).text.indexOf('"step":7') + 7;
    numeric[digit] ^= 0x01; // 7 -> 6
    expectDecodeError(numeric, 'checksum_mismatch', /checksum mismatch/);
  });

  it('detects a flip that keeps the JSON value (1e-7 -> 1E-7) as a non-canonical header', () => {
    const bytes = encodeCheckpoint({ tiny: 1e-7 }, {});
    const { text, start } = headerOf(bytes);
    expect(text).toContain('1e-7');
    bytes[start + text.indexOf('1e-7') + 1] ^= 0x20;
    expectDecodeError(bytes, 'bad_header', /canonical/);
  });

  it('detects truncation anywhere', () => {
    const bytes = small();
    const { text } = headerOf(bytes);
    for (const length of [
      0,
      2,
      4,
      11,
      12 + Math.floor(text.length / 2),
      bytes.length - 4,
      bytes.length - 1,
    ]) {
      expectDecodeError(bytes.subarray(0, length), 'truncated', /truncated/);
    }
  });

  it('detects bytes after the payload', () => {
    const bytes = small();
    const longer = new Uint8Array(bytes.length + 4);
    longer.set(bytes);
    expectDecodeError(longer, 'trailing_bytes', /4 unexpected bytes after the payload/);
  });

  it('detects a bad magic', () => {
    const bytes = small();
    bytes.set(new TextEncoder().encode('PK\x03\x04'), 0);
    // Named as not a checkpoint; its bytes are not repeated.
    expect(decodeError(bytes).message).toMatch(/^bad magic: not a gradfleet checkpoint/);
    expect(decodeError(bytes).message).not.toMatch(/504b|PK/i);
    expectDecodeError(new TextEncoder().encode('{"meta":1}'), 'bad_magic', /bad magic/);
  });

  it('detects an unknown format version', () => {
    const bytes = small();
    bytes[4] = 3;
    expectDecodeError(bytes, 'unsupported_version', /unknown checkpoint format version 3/);
  });

  it('detects non-zero reserved and padding bytes', () => {
    const reserved = small();
    reserved[6] = 1;
    expectDecodeError(reserved, 'bad_header', /reserved/);

    const header = JSON.stringify({ meta: null, tensors: [], payloadBytes: 0, sha256: '0'.repeat(64) });
    const file = rawFile(header, new Uint8Array(0));
    expect(12 + header.length).toBeLessThan(file.length); // there is padding to spoil
    file[file.length - 1] = 0x20;
    expectDecodeError(file, 'bad_header', /padding/);
  });

  it('detects a header that is not JSON', () => {
    expectDecodeError(rawFile('{"meta": {oops', new Uint8Array(0)), 'bad_header', /header is not JSON/);
    expectDecodeError(rawFile('\u0000\u0001garbage', new Uint8Array(0)), 'bad_header', /header is not JSON/);
    const invalidUtf8 = rawFile('{}', new Uint8Array(0));
    invalidUtf8[12] = 0xff;
    expectDecodeError(invalidUtf8, 'bad_header', /UTF-8/);
    expectDecodeError(rawFile('[1,2]', new Uint8Array(0)), 'bad_header', /not a JSON object/);
    expectDecodeError(
      rawFile('{"meta":1,"tensors":[],"payloadBytes":0}', new Uint8Array(0)),
      'bad_header',
      /missing "sha256"/,
    );
  });

  it('detects a tensor table out of range or overlapping', () => {
    const payload = new Uint8Array(16);
    const sha256 = 'a'.repeat(64);
    const file = (tensors: unknown) =>
      rawFile(JSON.stringify({ meta: null, tensors, payloadBytes: 16, sha256 }), payload);

    expectDecodeError(
      file([{ name: 'w', offset: 8, length: 3 }]),
      'bad_tensor_table',
      /entry 0 out of range: bytes 8\.\.20 but the payload has 16/,
    );
    expectDecodeError(file([{ name: 'w', offset: 20, length: 0 }]), 'bad_tensor_table', /out of range/);
    expectDecodeError(
      file([
        { name: 'a', offset: 0, length: 3 },
        { name: 'b', offset: 8, length: 2 },
      ]),
      'bad_tensor_table',
      /entries 0 and 1 overlap/,
    );
    expectDecodeError(file([{ name: 'w', offset: 2, length: 1 }]), 'bad_tensor_table', /not 4-byte aligned/);
    expectDecodeError(
      file([
        { name: 'w', offset: 0, length: 1 },
        { name: 'w', offset: 4, length: 1 },
      ]),
      'bad_tensor_table',
      /entries 0 and 1 have the same name/,
    );
    expectDecodeError(
      file([{ name: 'w', offset: -4, length: 1 }]),
      'bad_tensor_table',
      /non-negative integers/,
    );
    expectDecodeError(file({ w: 1 }), 'bad_tensor_table', /not an array/);
    // A valid table gets as far as the checksum.
    expectDecodeError(file([{ name: 'w', offset: 0, length: 4 }]), 'checksum_mismatch', /checksum mismatch/);
  });

  it('rejects every single-bit flip anywhere in the file', () => {
    const bytes = small();
    let checked = 0;
    for (let i = 0; i < bytes.length; i++) {
      for (let bit = 0; bit < 8; bit++) {
        const copy = bytes.slice();
        copy[i] ^= 1 << bit;
        const error = decodeError(copy);
        expect(error.message.length).toBeGreaterThan(0);
        checked++;
      }
    }
    expect(checked).toBe(bytes.length * 8);
    expect(decodeCheckpoint(bytes).meta).toEqual({
      step: 7,
      adam: { beta1: 0.9, history: [1, 2, 3] },
      tag: 'abc',
    });
  });
});

describe('checkpoint store', () => {
  let root: string;
  let dir: string;

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'gradfleet-ckpt-'));
    dir = join(root, 'run', 'checkpoints'); // not created yet: saveCheckpoint does mkdir -p
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  const tensorsFor = (step: number) => ({
    w: new Float32Array([step, step + 0.5, -step]),
    m: new Float32Array([step / 10]),
  });

  async function saveSteps(steps: number[], keep?: number): Promise<string[]> {
    const paths: string[] = [];
    for (const step of steps)
      paths.push(
        await saveCheckpoint(
          dir,
          step,
          { step, adam: { t: step } },
          tensorsFor(step),
          keep === undefined ? {} : { keep },
        ),
      );
    return paths;
  }

  async function corrupt(path: string): Promise<void> {
    const bytes = await readFile(path);
    bytes[bytes.length - 2] ^= 0x10;
    await writeFile(path, bytes);
  }

  it('names files ckpt-<step zero-padded to 9>.gfck', () => {
    expect(checkpointFileName(42)).toBe('ckpt-000000042.gfck');
    expect(checkpointFileName(1_234_567_890)).toBe('ckpt-1234567890.gfck');
    expect(() => checkpointFileName(-1)).toThrow(CheckpointError);
    expect(() => checkpointFileName(1.5)).toThrow(CheckpointError);
  });

  it('keeps the newest 3 by default and leaves no temp files behind', async () => {
    const paths = await saveSteps([1, 2, 3, 4, 5]);
    expect(paths[4]).toBe(join(dir, 'ckpt-000000005.gfck'));
    expect(await listCheckpoints(dir)).toEqual([
      { step: 5, path: join(dir, 'ckpt-000000005.gfck') },
      { step: 4, path: join(dir, 'ckpt-000000004.gfck') },
      { step: 3, path: join(dir, 'ckpt-000000003.gfck') },
    ]);
    expect((await readdir(dir)).sort()).toEqual([
      'ckpt-000000003.gfck',
      'ckpt-000000004.gfck',
      'ckpt-000000005.gfck',
    ]);

    await saveSteps([6], 1);
    expect((await readdir(dir)).sort()).toEqual(['ckpt-000000006.gfck']);
    await expect(saveCheckpoint(dir, 7, null, {}, { keep: 0 })).rejects.toThrow(
      /keep must be a positive integer/,
    );
  });

  it('orders by the step in the name, not by name length or write time', async () => {
    await saveSteps([1_000_000_000, 999_999_999, 20], 5);
    expect((await listCheckpoints(dir)).map((e) => e.step)).toEqual([1_000_000_000, 999_999_999, 20]);
  });

  it('never deletes the checkpoint it just saved, even when newer steps exist', async () => {
    await saveSteps([10, 11, 12]);
    const path = await saveCheckpoint(dir, 5, { step: 5 }, tensorsFor(5));
    expect((await listCheckpoints(dir)).map((e) => e.step)).toEqual([12, 11, 5]);
    expect((await loadCheckpoint(path)).meta).toEqual({ step: 5 });
  });

  it('loads the latest valid checkpoint bit-exactly', async () => {
    await saveSteps([1, 2, 3]);
    const latest = await loadLatestCheckpoint(dir);
    expect(latest.path).toBe(join(dir, 'ckpt-000000003.gfck'));
    expect(latest.step).toBe(3);
    expect(latest.meta).toEqual({ step: 3, adam: { t: 3 } });
    expectBitExact(latest.tensors.w, tensorsFor(3).w);
    expectBitExact(latest.tensors.m, tensorsFor(3).m);
    expect(latest.skipped).toEqual([]);
  });

  it('falls back past a corrupt newest checkpoint and reports the skip', async () => {
    await saveSteps([1, 2, 3]);
    const newest = join(dir, 'ckpt-000000003.gfck');
    await corrupt(newest);
    const warn = vi.fn();
    const log = { warn } as unknown as Logger;

    const latest = await loadLatestCheckpoint(dir, log);
    expect(latest.step).toBe(2);
    expect(latest.meta).toEqual({ step: 2, adam: { t: 2 } });
    expect(latest.skipped).toHaveLength(1);
    expect(latest.skipped[0].path).toBe(newest);
    expect(latest.skipped[0].error).toBeInstanceOf(CheckpointError);
    expect(latest.skipped[0].error.code).toBe('checksum_mismatch');
    expect(latest.skipped[0].error.message).toContain(newest);
    expect(warn).toHaveBeenCalledTimes(1);
    expect(warn.mock.calls[0][0]).toMatchObject({ path: newest });

    // A truncated one (e.g. copied half-way) is skipped just the same.
    await writeFile(
      join(dir, 'ckpt-000000004.gfck'),
      (await readFile(join(dir, 'ckpt-000000002.gfck'))).subarray(0, 40),
    );
    const again = await loadLatestCheckpoint(dir);
    expect(again.step).toBe(2);
    expect(again.skipped.map((s) => s.error.code)).toEqual(['truncated', 'checksum_mismatch']);
  });

  it('throws naming the dir when every checkpoint is broken', async () => {
    await saveSteps([1, 2]);
    await corrupt(join(dir, 'ckpt-000000001.gfck'));
    await corrupt(join(dir, 'ckpt-000000002.gfck'));
    const error = await loadLatestCheckpoint(dir).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CheckpointError);
    expect((error as CheckpointError).code).toBe('no_valid_checkpoint');
    expect((error as CheckpointError).message).toContain(
      `no valid checkpoint in ${dir}: all 2 failed to load`,
    );
    expect((error as CheckpointError).message).toContain('checksum mismatch');
  });

  it('ignores a leftover temp file and other files', async () => {
    await saveSteps([1, 2]);
    await writeFile(join(dir, '.ckpt-000000009.gfck.4242.deadbeef.tmp'), 'half a checkpoint');
    await writeFile(join(dir, 'ckpt-000000010.gfck.tmp'), 'half a checkpoint');
    await writeFile(join(dir, 'ckpt-11.gfck'), 'wrong name');
    await writeFile(join(dir, 'notes.txt'), 'hello');
    await mkdir(join(dir, 'ckpt-000000012.gfck')); // a directory with a checkpoint's name

    expect((await listCheckpoints(dir)).map((e) => e.step)).toEqual([2, 1]);
    const latest = await loadLatestCheckpoint(dir);
    expect(latest.step).toBe(2);
    expect(latest.skipped).toEqual([]);

    // Pruning leaves foreign files alone too.
    await saveSteps([3, 4]);
    expect((await readdir(dir)).sort()).toEqual([
      '.ckpt-000000009.gfck.4242.deadbeef.tmp',
      'ckpt-000000002.gfck',
      'ckpt-000000003.gfck',
      'ckpt-000000004.gfck',
      'ckpt-000000010.gfck.tmp',
      'ckpt-000000012.gfck',
      'ckpt-11.gfck',
      'notes.txt',
    ]);
  });

  it('throws naming the dir and the reason when there is no checkpoint', async () => {
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'notes.txt'), 'hello');
    await expect(loadLatestCheckpoint(dir)).rejects.toThrow(
      new RegExp(`no checkpoint in ${escapeRegExp(dir)}: the directory holds no ckpt-<step>\\.gfck files`),
    );
    const missing = join(root, 'nope');
    expect(await listCheckpoints(missing)).toEqual([]);
    const error = await loadLatestCheckpoint(missing).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CheckpointError);
    expect((error as CheckpointError).code).toBe('not_found');
    expect((error as CheckpointError).message).toBe(
      `no checkpoint in ${missing}: the directory does not exist`,
    );
  });

  it('loadCheckpoint reads one explicit file and names it in errors', async () => {
    const [first, second] = await saveSteps([1, 2]);
    const loaded = await loadCheckpoint(first);
    expect(loaded).toMatchObject({ path: first, step: 1, meta: { step: 1, adam: { t: 1 } } });
    expect('skipped' in loaded).toBe(false);
    await corrupt(second);
    await expect(loadCheckpoint(second)).rejects.toThrow(
      new RegExp(`^${escapeRegExp(second)}: checksum mismatch`),
    );
    await expect(loadCheckpoint(join(dir, 'ckpt-000000099.gfck'))).rejects.toMatchObject({
      code: 'not_found',
    });

    // Any file name works for an explicit path; step is then unknown.
    const renamed = join(root, 'best.gfck');
    await writeFile(renamed, await readFile(first));
    expect((await loadCheckpoint(renamed)).step).toBeNull();
  });

  it('resolveCheckpoint accepts a run directory or a checkpoint file', async () => {
    const [first] = await saveSteps([1, 2]);
    const fromDir = await resolveCheckpoint(dir);
    expect(fromDir.step).toBe(2);
    const fromFile = await resolveCheckpoint(first);
    expect(fromFile).toMatchObject({ path: first, step: 1, skipped: [] });
    expectBitExact(fromFile.tensors.w, tensorsFor(1).w);
    await expect(resolveCheckpoint(join(root, 'missing'))).rejects.toThrow(
      /missing does not exist \(expected a checkpoint directory or a \.gfck file\)/,
    );
  });

  it('round-trips a 3,488,874-value checkpoint through the store', async () => {
    const big = randomBits(BIG, 777);
    await saveCheckpoint(dir, 100, meta, {
      weights: big,
      m: new Float32Array(4),
      v: new Float32Array([1, 2]),
    });
    const latest = await loadLatestCheckpoint(dir);
    expect(latest.meta).toEqual(meta);
    expectBitExact(latest.tensors.weights, big);
  });
});

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
