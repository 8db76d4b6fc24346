/**
 * The PeerPool admits a peer only under a role served for its kind of hello: an unserved kind is refused
 * (and counted), a shard reducer's pool admits workers but refuses shard reducers, and what an admitted
 * peer says reaches its role only when it is that role's message.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../common/logger.js';
import { RejectionCounts } from '../../protocol/channel.js';
import { decodeFrame, encodeFrame } from '../../protocol/codec.js';
import type { Message, MessageOf } from '../../protocol/messages.js';
import { PeerPool, type WelcomeMessage } from '../../protocol/peer-pool.js';
import { WorkerPool } from '../../coordinator/worker-pool.js';
import { type SliceWorker, SliceWorkers } from '../../shard/slice-workers.js';
import { MemoryListener } from '../helpers/memory-link.js';

const nonce = new Uint8Array(32).fill(1);
const workerHello: MessageOf<'hello'> = { type: 'hello', workerId: 'w-1', backend: 'wasm', nonce };
const shardHello: MessageOf<'hello'> = {
  type: 'hello',
  workerId: 'shard-1',
  backend: 'shard',
  serves: 'ws://10.0.0.2:7171',
  nonce,
};
const dataset = { spec: 'mnist:train', fingerprint: 'ab'.repeat(32), count: 60000, height: 28, width: 28 };
const welcome: WelcomeMessage = {
  type: 'welcome',
  runId: 'run',
  model: 'mnist-small',
  seed: 1,
  batchSize: 64,
  microBatchSize: 16,
  layout: [{ name: 'conv1/kernel', shape: [3, 3, 1, 16], offset: 0 }],
  layoutSize: 144,
  wire: 'f32',
  train: dataset,
  test: { ...dataset, count: 10000 },
};

const pools: PeerPool[] = [];
afterEach(() => {
  for (const p of pools.splice(0)) p.shutdown('test over');
});

function pool() {
  const listener = new MemoryListener('memory://pool');
  const rejections = new RejectionCounts();
  const peers = new PeerPool({
    listener,
    log: silentLogger,
    rejections,
    heartbeat: { intervalMs: 60_000, timeoutMs: 120_000 },
  });
  pools.push(peers);
  return { listener, rejections, peers };
}

/** A few turns of the event loop: memory links deliver on a later turn, as a socket would. */
const turns = () => new Promise((resolve) => setTimeout(resolve, 20));

/** Connects, sends `messages` in order, and returns what came back and whether the pool closed the link. */
async function join(listener: MemoryListener, ...messages: Message[]) {
  const link = listener.connect();
  const answers: Message[] = [];
  const seen = { closed: undefined as string | undefined };
  link.attach({
    frame: (bytes) => answers.push(decodeFrame(bytes).message),
    close: (reason) => {
      seen.closed = reason;
    },
  });
  for (const m of messages) {
    link.send(encodeFrame(m));
    await turns();
  }
  return { link, answers, seen };
}

/** The shard reducer's pool: the PeerPool with the shard's worker role alone. */
function shardPool() {
  const p = pool();
  const heard = { ready: [] as string[], slices: [] as string[] };
  const workers = new SliceWorkers(p.peers, {
    welcome,
    log: silentLogger,
    events: {
      ready: (w: SliceWorker) => heard.ready.push(w.id),
      slice: (w: SliceWorker) => heard.slices.push(w.id),
      lost: () => {},
    },
  });
  p.peers.serve('worker', workers);
  return { ...p, workers, heard };
}

describe('PeerPool roles', () => {
  it('refuses a hello of a kind nobody serves, with its reason, and closes the link', async () => {
    const { listener, rejections } = pool();
    const worker = await join(listener, workerHello);
    expect(worker.answers).toEqual([
      { type: 'error', code: 'unexpected_message', message: 'w-1 is a worker, and none join here' },
    ]);
    expect(worker.seen.closed).toBeDefined();
    const shard = await join(listener, shardHello);
    expect(shard.answers).toEqual([
      {
        type: 'error',
        code: 'unexpected_message',
        message: 'shard-1 is a shard reducer, and this run has none (start the coordinator with --shards)',
      },
    ]);
    expect(shard.seen.closed).toBeDefined();
    expect(rejections.byReason).toEqual({ unexpected_message: 2 });
  });

  it('serves each kind once', () => {
    const { peers } = shardPool();
    expect(() => peers.serve('worker', { admit: () => ({ refuse: 'cluster_full', why: 'never' }) })).toThrow(
      /workers are already served/,
    );
  });

  it("a shard reducer's pool admits workers, with the heartbeat terms in their welcome, and refuses shard reducers", async () => {
    const { listener, rejections, workers, heard } = shardPool();
    const worker = await join(listener, workerHello, { type: 'ready', missing: [] });
    expect(worker.answers).toEqual([{ ...welcome, heartbeatMs: 60_000, heartbeatTimeoutMs: 120_000 }]);
    expect(worker.seen.closed).toBeUndefined();
    expect(heard.ready).toEqual(['w-1']);
    expect(workers.ready().map((w) => w.id)).toEqual(['w-1']);

    const shard = await join(listener, shardHello);
    expect(shard.answers).toEqual([
      expect.objectContaining({
        type: 'error',
        code: 'unexpected_message',
        message: expect.stringMatching(/shard-1 is a shard reducer/),
      }),
    ]);
    expect(shard.seen.closed).toBeDefined();
    expect(rejections.byReason).toEqual({ unexpected_message: 1 });
  });

  it("answers a worker's shard-reducer message itself, and a duplicate name is refused by the role", async () => {
    const { listener, rejections, heard } = shardPool();
    const worker = await join(listener, workerHello, { type: 'shardLoaded', version: 3 });
    expect(worker.answers.slice(1)).toEqual([
      {
        type: 'error',
        code: 'unexpected_message',
        message: "shardLoaded from worker w-1: that is a shard reducer's message",
      },
    ]);
    expect(heard.slices).toEqual([]);
    const twin = await join(listener, workerHello);
    expect(twin.answers).toEqual([
      { type: 'error', code: 'duplicate_worker', message: 'a worker named w-1 is already connected' },
    ]);
    expect(rejections.byReason).toEqual({ unexpected_message: 1, duplicate_worker: 1 });
  });

  it("the coordinator's pool refuses shard reducers until whoever runs them serves them, then routes their messages", async () => {
    const listener = new MemoryListener('memory://coordinator');
    const rejections = new RejectionCounts();
    const coordinator = new WorkerPool({
      listener,
      welcome,
      log: silentLogger,
      rejections,
      heartbeat: { intervalMs: 60_000, timeoutMs: 120_000 },
      nodeValues: () => 0,
    });
    try {
      const early = await join(listener, shardHello);
      expect(early.answers).toEqual([
        expect.objectContaining({ type: 'error', message: expect.stringMatching(/this run has none/) }),
      ]);
      const heard: string[] = [];
      coordinator.setShardEvents({
        joined: (s) => heard.push(`joined ${s.id} serving ${s.serves}`),
        message: (s, m) => heard.push(`${m.type} from ${s.id}`),
        lost: (s, reason) => heard.push(`lost ${s.id}: ${reason}`),
      });
      const shard = await join(
        listener,
        shardHello,
        { type: 'shardLoaded', version: 3 },
        {
          type: 'ready',
          missing: [],
        },
      );
      expect(shard.answers).toEqual([
        { ...welcome, heartbeatMs: 60_000, heartbeatTimeoutMs: 120_000 },
        { type: 'error', code: 'unexpected_message', message: 'ready from shard reducer shard-1' },
      ]);
      shard.link.close('bye');
      await turns();
      expect(heard).toEqual([
        'joined shard-1 serving ws://10.0.0.2:7171',
        'shardLoaded from shard-1',
        expect.stringMatching(/^lost shard-1: /),
      ]);
      expect(coordinator.ready()).toEqual([]);
    } finally {
      coordinator.shutdown('test over');
    }
  });
});
