/**
 * Checkpoints signed with a key derived from the run's secret: verified on load, refused when signed with
 * another secret or altered after signing (the re-encoded checkpoint with negated weights), and
 * unsigned ones (written without a secret, or by the format before signing) still load, saying so. Error
 * messages never repeat the file's bytes or strings, and a checkpoint's paths outside its run directory are
 * not followed unless it verifies.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  CheckpointError,
  CheckpointKey,
  decodeCheckpoint,
  encodeCheckpoint,
} from '../../coordinator/checkpoint-file.js';
import { loadCheckpoint, loadLatestCheckpoint, saveCheckpoint } from '../../coordinator/checkpoint-store.js';
import { dataSpecOf, loadRunState } from '../../coordinator/run-outputs.js';
import { type RunState, stateFromCheckpoint, stateToCheckpoint } from '../../coordinator/run-state.js';
import { SharedSecret } from '../../protocol/auth.js';
import { paramLayout } from '../../training/models/spec.js';
import { getModel } from '../../training/models/zoo.js';
import { tempDir } from '../helpers/gradfleet.js';

const dir = tempDir();
const key = CheckpointKey.fromSecret(new SharedSecret('checkpoint-signing-test-secret-0123'));
const otherKey = CheckpointKey.fromSecret(new SharedSecret('a-different-secret-for-the-same-run'));

/** A small mnist-small run state at step 3, as the coordinator checkpoints it. */
function runState(testSpec = 'mnist:test'): RunState {
  const size = paramLayout(getModel('mnist-small')).size;
  const weights = Float32Array.from({ length: size }, (_, i) => Math.sin(i) / 10);
  return {
    config: {
      runId: 'run-1',
      model: 'mnist-small',
      seed: 1,
      batchSize: 64,
      microBatchSize: 16,
      epochs: 1,
      maxSteps: null,
      adam: { learningRate: 1e-3, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 },
      lrDecay: 1,
      evalChunkSize: 500,
      maxGradNorm: null,
      localSteps: null,
      wire: 'f32',
      train: { spec: 'mnist:train', fingerprint: 'ab'.repeat(32), count: 60000 },
      test: { spec: testSpec, fingerprint: 'cd'.repeat(32), count: 10000 },
    },
    step: 3,
    weights,
    adam: { step: 3, m: new Float32Array(size), v: new Float32Array(size).fill(1e-4) },
    epochAccumulator: { lossSum: 1, correct: 2, samples: 3 },
    history: [],
    stepLosses: [2.3, 2.2, 2.1],
  };
}

function encodeRun(state: RunState, k?: CheckpointKey): Uint8Array {
  const { meta, tensors } = stateToCheckpoint(state);
  return encodeCheckpoint(meta, tensors, k);
}

function decodeError(bytes: Uint8Array, k?: CheckpointKey): CheckpointError {
  try {
    decodeCheckpoint(bytes, k);
  } catch (error) {
    expect(error).toBeInstanceOf(CheckpointError);
    return error as CheckpointError;
  }
  throw new Error('decodeCheckpoint accepted the bytes');
}

/** The file's header text and where it sits. */
function headerOf(bytes: Uint8Array): { text: string; end: number } {
  const length = new DataView(bytes.buffer, bytes.byteOffset).getUint32(8, true);
  return { text: new TextDecoder().decode(bytes.subarray(12, 12 + length)), end: 12 + length };
}

/** `bytes` with its header text replaced (the payload moved to the next 8-byte boundary). */
function withHeader(bytes: Uint8Array, text: string, version = bytes[4]): Uint8Array {
  const { end } = headerOf(bytes);
  const payload = bytes.subarray(Math.ceil(end / 8) * 8);
  const header = new TextEncoder().encode(text);
  const at = Math.ceil((12 + header.length) / 8) * 8;
  const out = new Uint8Array(at + payload.length);
  out.set(bytes.subarray(0, 12));
  out[4] = version;
  new DataView(out.buffer).setUint32(8, header.length, true);
  out.set(header, 12);
  out.set(payload, at);
  return out;
}

/** A file as format 1 wrote it (before signing): no signature field, version byte 1. */
function asFormat1(unsigned: Uint8Array): Uint8Array {
  const { text } = headerOf(unsigned);
  expect(text.endsWith(',"signature":null}')).toBe(true);
  return withHeader(unsigned, `${text.slice(0, -',"signature":null}'.length)}}`, 1);
}

describe('signing', () => {
  it('a signed checkpoint verifies with its key, is "unverified" without one, and is refused under another', () => {
    const bytes = encodeRun(runState(), key);
    const header = JSON.parse(headerOf(bytes).text);
    expect(bytes[4]).toBe(2);
    expect(header.signature).toEqual({ key: key.id, hmac: expect.stringMatching(/^[0-9a-f]{64}$/) });
    expect(key.id).not.toBe(otherKey.id);
    expect(decodeCheckpoint(bytes, key).signature).toEqual({ state: 'verified', key: key.id });
    expect(decodeCheckpoint(bytes).signature).toEqual({ state: 'unverified', key: key.id });
    const foreign = decodeError(bytes, otherKey);
    expect(foreign.code).toBe('wrong_key');
    expect(foreign.message).toMatch(/signed with another secret than the one given/);
    // The key never shows in logs.
    expect(String(key)).toBe('[checkpoint key]');
    expect(JSON.stringify({ key })).toBe('{"key":"[checkpoint key]"}');
  });

  it('a checkpoint re-encoded with negated weights (a fresh SHA-256, the old signature kept) is refused as altered', () => {
    const original = encodeRun(runState(), key);
    const { meta, tensors } = decodeCheckpoint(original, key);
    const negated = { ...tensors, weights: tensors.weights.map((w) => -w) };
    // The attacker re-encodes (with a key of its own, for a header of the same shape) and puts the
    // original signature back: the SHA-256 is right for the new content, the HMAC is not.
    const forged = encodeCheckpoint(meta, negated, otherKey);
    const signatureOf = (b: Uint8Array) => /"signature":\{[^}]*\}/.exec(headerOf(b).text)![0];
    const text = headerOf(forged).text.replace(signatureOf(forged), signatureOf(original));
    const tampered = withHeader(forged, text);
    expect(decodeCheckpoint(tampered).signature.state).toBe('unverified'); // the SHA-256 holds
    const error = decodeError(tampered, key);
    expect(error.code).toBe('bad_signature');
    expect(error.message).toMatch(/altered after it was signed/);
    // Stripped of its signature instead, it is unsigned: loaded, and said to be (see loadRunState).
    const stripped = encodeCheckpoint(meta, negated);
    expect(decodeCheckpoint(stripped, key).signature).toEqual({ state: 'unsigned', keyGiven: true });
  });

  it('format 1 files (before signing) still load, as unsigned, bit for bit', () => {
    const state = runState();
    const old = asFormat1(encodeRun(state));
    expect(old[4]).toBe(1);
    const decoded = decodeCheckpoint(old, key);
    expect(decoded.signature).toEqual({ state: 'unsigned', keyGiven: true });
    const back = stateFromCheckpoint(decoded.meta, decoded.tensors, 'old');
    expect(Buffer.from(back.weights.buffer).equals(Buffer.from(state.weights.buffer))).toBe(true);
    // A format-1 header with a signature field is not format 1: refused.
    const mixed = withHeader(encodeRun(state), headerOf(encodeRun(state)).text, 1);
    expect(decodeError(mixed).message).toMatch(/header fields wrong: 1 unexpected field/);
  });

  it('a signature of the wrong shape is a bad header', () => {
    const bytes = encodeRun(runState(), key);
    const { text } = headerOf(bytes);
    for (const signature of ['{"key":"x","hmac":"y"}', '"yes"', '{"key":"0123456789abcdef"}']) {
      const odd = withHeader(bytes, text.replace(/"signature":\{[^}]*\}/, `"signature":${signature}`));
      expect(decodeError(odd).code).toBe('bad_header');
    }
  });
});

describe('the checkpoint store', () => {
  it('signs what it saves with the key, verifies on load, and stops at a forgery instead of falling back', async () => {
    const ckpts = join(dir, 'bound', 'checkpoints');
    const { meta, tensors } = stateToCheckpoint(runState());
    const first = await saveCheckpoint(ckpts, 1, meta, tensors, { key });
    const second = await saveCheckpoint(ckpts, 2, meta, tensors, { key });
    expect((await loadLatestCheckpoint(ckpts, undefined, { key })).signature).toEqual({
      state: 'verified',
      key: key.id,
    });
    // The newest replaced by one signed with another secret: refused, not skipped for the older one.
    writeFileSync(second, encodeCheckpoint(meta, tensors, otherKey));
    await expect(loadLatestCheckpoint(ckpts, undefined, { key })).rejects.toMatchObject({
      code: 'wrong_key',
    });
    // A damaged one (a flipped byte) is still skipped as before.
    const damaged = encodeCheckpoint(meta, tensors, key);
    damaged[damaged.length - 3] ^= 1;
    writeFileSync(second, damaged);
    const latest = await loadLatestCheckpoint(ckpts, undefined, { key });
    expect(latest.path).toBe(first);
    expect(latest.skipped[0].error.code).toBe('checksum_mismatch');
    // Without the key a signature is read, not verified.
    expect((await loadCheckpoint(first)).signature).toEqual({ state: 'unverified', key: key.id });
    expect((await loadCheckpoint(first, { key })).signature.state).toBe('verified');
    await expect(loadCheckpoint(first, { key: otherKey })).rejects.toThrow(
      new RegExp(`${first}: signed with another secret`),
    );
  });
});

describe('error messages', () => {
  const secretText = 'root:x:0:0:TOP-SECRET-LINE:/root:/bin/bash';

  it('never repeat a file’s bytes or strings: not-a-checkpoint, bad headers, tensor tables, run meta', async () => {
    const notCheckpoint = new TextEncoder().encode(`${secretText}\n`);
    const messages = [decodeError(notCheckpoint).message];
    const good = encodeRun(runState());
    const { text } = headerOf(good);
    messages.push(decodeError(withHeader(good, `{"meta": "${secretText}`)).message);
    messages.push(
      decodeError(withHeader(good, text.replace('{"meta"', `{"${secretText}":1,"meta"`))).message,
    );
    messages.push(
      decodeError(withHeader(good, text.replace('"payloadBytes":', `"payloadBytes":"${secretText}","x":`)))
        .message,
    );
    const twin = JSON.stringify({
      meta: null,
      tensors: [
        { name: secretText, offset: 0, length: 0 },
        { name: secretText, offset: 0, length: 0 },
      ],
      payloadBytes: 0,
      sha256: '0'.repeat(64),
      signature: null,
    });
    messages.push(decodeError(withHeader(good, twin)).message);
    const checksum = JSON.parse(text);
    checksum.sha256 = createHash('sha256').update(secretText).digest('hex');
    messages.push(decodeError(withHeader(good, JSON.stringify(checksum))).message);
    // A well-formed checkpoint whose meta names a model, or a value, this build does not know.
    for (const change of [
      (s: RunState) => Object.assign(s.config, { model: secretText }),
      (s: RunState) => Object.assign(s.config, { wire: secretText }),
    ]) {
      const state = runState();
      change(state);
      const { meta, tensors } = stateToCheckpoint({
        ...state,
        config: { ...state.config, model: 'mnist-small' },
      });
      const altered = JSON.parse(JSON.stringify(meta));
      altered.config = state.config;
      const path = join(dir, `meta-${messages.length}.gfck`);
      writeFileSync(path, encodeCheckpoint(altered, tensors));
      messages.push(
        await loadRunState(path).then(
          () => 'loaded',
          (e: Error) => e.message,
        ),
      );
    }
    expect(messages).toHaveLength(8);
    for (const message of messages) {
      expect(message).not.toMatch(/loaded|root|TOP-SECRET/);
      expect(message.length).toBeGreaterThan(0);
    }
    expect(messages[0]).toMatch(/^bad magic: not a gradfleet checkpoint/);
    // JSON.parse's own message quotes the text it failed on (in newer Node versions, whole snippets).
    expect(messages[1]).toBe('header is not JSON');
    expect(messages[6]).toMatch(/the checkpoint's model is none this build knows \(mnist-cnn, mnist-small/);
  });
});

describe('paths a checkpoint names', () => {
  it('are followed inside its run directory (links resolved), or when it verifies; built-in sets always', () => {
    const runDir = join(dir, 'paths-run');
    mkdirSync(join(runDir, 'data'), { recursive: true });
    const inside = join(runDir, 'data', 'test.csv');
    writeFileSync(inside, 'label\n');
    const outside = join(dir, 'outside.csv');
    writeFileSync(outside, 'label\n');
    const sneaky = join(runDir, 'data', 'link.csv');
    symlinkSync('/etc/passwd', sneaky);
    const unsigned = { runDir, signature: { state: 'unsigned', keyGiven: true } } as const;
    const unverified = { runDir, signature: { state: 'unverified', key: key.id } } as const;
    const verified = { runDir, signature: { state: 'verified', key: key.id } } as const;
    expect(dataSpecOf(unsigned, 'mnist:test')).toEqual({ ok: true });
    expect(dataSpecOf(unsigned, inside)).toEqual({ ok: true });
    expect(dataSpecOf(unsigned, outside)).toMatchObject({
      ok: false,
      why: expect.stringMatching(
        /outside its run directory .* and it is unsigned: its paths are not followed/,
      ),
    });
    expect(dataSpecOf(unsigned, sneaky).ok).toBe(false);
    expect(dataSpecOf(unsigned, '/etc/passwd').ok).toBe(false);
    expect(dataSpecOf(unsigned, join(runDir, '..', 'outside.csv')).ok).toBe(false);
    expect(dataSpecOf(unverified, outside)).toMatchObject({
      ok: false,
      why: expect.stringMatching(/its signature was not checked/),
    });
    expect(dataSpecOf(verified, outside)).toEqual({ ok: true });
  });
});
