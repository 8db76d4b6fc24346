/**
 * A worker bounds what a coordinator's welcome may ask of its memory: the welcome with a
 * micro-batch of 3,000,000 samples, data sets too large for the machine, or images the model cannot take
 * are refused before anything is allocated, with one clear error, and the coordinator is told why. On real
 * sockets: a coordinator's pool that sends such a welcome, and the real `gradfleet worker`.
 */
import { totalmem } from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../common/logger.js';
import { RejectionCounts } from '../../protocol/channel.js';
import type { MessageOf } from '../../protocol/messages.js';
import { PeerPool, type WelcomeMessage } from '../../protocol/peer-pool.js';
import { listenWs } from '../../protocol/ws-transport.js';
import { paramLayout } from '../../training/models/spec.js';
import { getModel } from '../../training/models/zoo.js';
import { checkWelcomeFits, memoryBudget } from '../../worker/memory-bounds.js';
import { start } from '../helpers/gradfleet.js';

function welcomeFor(model: string, changes: Partial<WelcomeMessage> = {}): WelcomeMessage {
  const layout = paramLayout(getModel(model));
  const data = { spec: 'mnist:train', fingerprint: 'ab'.repeat(32), count: 60000, height: 28, width: 28 };
  return {
    type: 'welcome',
    runId: 'bounds',
    model,
    seed: 1,
    batchSize: 128,
    microBatchSize: 32,
    layout: layout.entries.map((e) => ({ name: e.name, shape: [...e.shape], offset: e.offset })),
    layoutSize: layout.size,
    wire: 'f32',
    train: data,
    test: { ...data, spec: 'mnist:test', count: 10000 },
    ...changes,
  };
}
const full = (w: WelcomeMessage): MessageOf<'welcome'> => ({
  ...w,
  heartbeatMs: 1000,
  heartbeatTimeoutMs: 5000,
});
const GiB = 1024 ** 3;

describe('what a welcome may ask', () => {
  it('an ordinary run fits; a huge micro-batch, too much data or images the model cannot take do not', () => {
    const budget = { bytes: GiB, source: 'a test budget of 1 GiB' };
    expect(checkWelcomeFits(full(welcomeFor('mnist-small', { microBatchSize: 16 })), budget)).toEqual({
      ok: true,
    });
    expect(checkWelcomeFits(full(welcomeFor('mnist-cnn')), budget)).toEqual({ ok: true });

    const huge = checkWelcomeFits(full(welcomeFor('mnist-small', { microBatchSize: 3_000_000 })), budget);
    expect(huge).toMatchObject({
      ok: false,
      why: expect.stringMatching(
        /asks more memory than this worker has: micro-batches of 3000000 samples [\d.]+ GiB, .* over its budget of 1\.0 GiB \(a test budget of 1 GiB\): refusing the run/,
      ),
    });
    const data = { spec: 'x', fingerprint: 'cd'.repeat(32), count: 1_000_000, height: 28, width: 28 };
    const lots = checkWelcomeFits(full(welcomeFor('mnist-small', { train: data })), {
      bytes: 256 * 1024 ** 2,
      source: 'small',
    });
    expect(lots).toMatchObject({
      ok: false,
      why: expect.stringMatching(/data sets of 1000000 \+ 10000 images 0\.7\d GiB/),
    });
    const big = checkWelcomeFits(
      full(welcomeFor('mnist-small', { test: { ...data, count: 10, height: 4096, width: 4096 } })),
      budget,
    );
    expect(big).toMatchObject({
      ok: false,
      why: expect.stringMatching(/test images of 4096 × 4096 pixels, and mnist-small takes 28 × 28/),
    });
  });

  it('the budget is --max-memory-mb, else 3/4 of the machine (or of its container)', () => {
    expect(memoryBudget(512)).toEqual({ bytes: 512 * 1024 ** 2, source: '--max-memory-mb 512' });
    const machine = memoryBudget();
    expect(machine.bytes).toBeLessThanOrEqual(totalmem() * 0.75);
    expect(machine.bytes).toBeGreaterThan(0);
    expect(machine.source).toMatch(/^3\/4 of this (machine|container)'s [\d.]+ GiB$/);
  });
});

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const undo of cleanup.splice(0).reverse()) await undo();
});

/** A coordinator's pool that welcomes any worker with `welcome`; records what workers say and report. */
async function coordinatorSending(welcome: WelcomeMessage) {
  const listener = await listenWs('127.0.0.1', 0);
  const heard: string[] = [];
  const log = Object.assign(Object.create(silentLogger), {
    warn: (_fields: unknown, message: string) => heard.push(message),
  });
  const pool = new PeerPool({
    listener,
    log,
    rejections: new RejectionCounts(),
    heartbeat: { intervalMs: 1000, timeoutMs: 5000 },
  });
  pool.serve('worker', {
    admit: (_hello, channel) => {
      channel.send(pool.welcome(welcome));
      return { message: ({ message }) => heard.push(message.type), lost: () => {} };
    },
  });
  cleanup.push(
    () => listener.close(),
    () => pool.shutdown('test over'),
  );
  return { url: listener.url, heard };
}

const worker = (url: string, ...extra: string[]) =>
  start(['worker', '--connect', url, '--backend', 'wasm', '--no-reconnect', '--id', 'bounded', ...extra], {
    GRADFLEET_SECRET: '',
  });

describe('gradfleet worker', () => {
  it('refuses the issue’s welcome (a micro-batch of 3,000,000) at once, in one line, and tells the coordinator', async () => {
    const { url, heard } = await coordinatorSending(
      welcomeFor('mnist-small', { microBatchSize: 3_000_000, batchSize: 3_000_000 }),
    );
    const w = worker(url);
    const started = performance.now();
    const done = await w.done;
    expect(performance.now() - started).toBeLessThan(30_000);
    expect(done.status).not.toBe(0);
    expect(done.stderr).toMatch(/asks more memory than this worker has: micro-batches of 3000000 samples/);
    expect(done.stderr).toMatch(/3\/4 of this (machine|container)'s/);
    expect(done.stderr).not.toMatch(/\n\s+at /);
    expect(heard.join('\n')).toMatch(/worker bounded reports: the coordinator's welcome asks more memory/);
    expect(heard).not.toContain('ready');
  }, 60_000);

  it('takes an ordinary welcome (it says ready), and refuses the same one past a --max-memory-mb it was given', async () => {
    const ordinary = await coordinatorSending(welcomeFor('mnist-small', { microBatchSize: 16 }));
    const w = worker(ordinary.url);
    for (let i = 0; i < 300 && !ordinary.heard.includes('ready'); i++)
      await new Promise((r) => setTimeout(r, 100));
    expect(ordinary.heard).toContain('ready');
    w.child.kill('SIGKILL');
    await w.done;

    const tight = await coordinatorSending(welcomeFor('mnist-small', { microBatchSize: 16 }));
    const small = await worker(tight.url, '--max-memory-mb', '8').done;
    expect(small.status).not.toBe(0);
    expect(small.stderr).toMatch(/over its budget of 0\.01 GiB \(--max-memory-mb 8\): refusing the run/);
    expect(tight.heard).not.toContain('ready');
  }, 90_000);
});
