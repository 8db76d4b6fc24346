/**
 * The transport benchmark: one 14 MB frame (an mnist-cnn gradient) from a worker to the coordinator
 * over raw TCP (the loopback ceiling), WebSockets and NATS, as gradfleet's links carry it. Latency:
 * one frame at a time, send to fully received. Throughput: `frames` sent back to back. Then the
 * other direction: one frame (the weights) from the coordinator to several workers.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { type Socket, createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SharedSecret, newNonce } from '../protocol/auth.js';
import { connectNats, listenNats } from '../protocol/nats-transport.js';
import { type SessionKeys, sessionKeys } from '../protocol/sealing.js';
import type { Link, Listener } from '../protocol/transport.js';
import { connectWs, listenWs } from '../protocol/ws-transport.js';
import { median } from './median.js';

export interface TransportBenchmark {
  transport: string;
  bytes: number;
  latency_ms: number;
  mb_per_s: number;
  /** Throughput relative to raw TCP. */
  vs_tcp: number | null;
  note?: string;
}

/** What a transport looks like to the benchmark: send from one end, count whole frames at the other. */
interface Pipe {
  send(frame: Uint8Array): void;
  onFrame(handler: () => void): void;
  close(): Promise<void>;
}

const STALL_MS = 30_000;

/**
 * Waiting for frames. A frame that never arrives (a transport bug, a server gone) ends the benchmark
 * with a reason once nothing has arrived for STALL_MS, instead of hanging it.
 */
function arrivals() {
  let wake: (() => void) | undefined;
  return {
    /** To be called on every frame received. */
    arrived: () => wake?.(),
    until: (done: () => boolean, stalled: () => string) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`${stalled()}, then nothing for ${STALL_MS / 1000} s`)),
          STALL_MS,
        );
        wake = () => {
          if (!done()) return timer.refresh();
          clearTimeout(timer);
          resolve();
        };
        wake();
      }),
  };
}

async function measure(
  transport: string,
  pipe: Pipe,
  frame: Uint8Array,
  frames: number,
  reps: number,
): Promise<TransportBenchmark> {
  let received = 0;
  const waiting = arrivals();
  pipe.onFrame(() => {
    received++;
    waiting.arrived();
  });
  const until = (n: number) =>
    waiting.until(
      () => received >= n,
      () => `${transport}: ${received} of ${n} frames arrived`,
    );
  const latencies: number[] = [];
  for (let r = 0; r < reps + 1; r++) {
    const t0 = performance.now();
    pipe.send(frame);
    await until(received + 1);
    if (r > 0) latencies.push(performance.now() - t0); // the first one warms up
  }
  const t0 = performance.now();
  const target = received + frames;
  for (let i = 0; i < frames; i++) pipe.send(frame);
  await until(target);
  const seconds = (performance.now() - t0) / 1000;
  await pipe.close();
  return {
    transport,
    bytes: frame.byteLength,
    latency_ms: median(latencies),
    mb_per_s: (frames * frame.byteLength) / 1e6 / seconds,
    vs_tcp: null,
  };
}

/** Length-prefixed frames over a plain socket: the ceiling. */
async function tcpPipe(): Promise<Pipe> {
  let handler = () => {};
  const server = createServer((socket) => {
    // A receiver as a real protocol would write one: read the length, then fill one buffer.
    const head = Buffer.alloc(4);
    let headFilled = 0;
    let body: Buffer | undefined;
    let filled = 0;
    socket.on('data', (chunk: Buffer) => {
      let at = 0;
      while (at < chunk.length) {
        if (!body) {
          const n = Math.min(4 - headFilled, chunk.length - at);
          chunk.copy(head, headFilled, at, at + n);
          headFilled += n;
          at += n;
          if (headFilled === 4) body = Buffer.allocUnsafe(head.readUInt32LE(0));
          continue;
        }
        const n = Math.min(body.length - filled, chunk.length - at);
        chunk.copy(body, filled, at, at + n);
        filled += n;
        at += n;
        if (filled === body.length) {
          body = undefined;
          filled = 0;
          headFilled = 0;
          handler();
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  const client: Socket = await new Promise((resolve) => {
    const s = createConnection(port, '127.0.0.1', () => resolve(s));
  });
  return {
    send: (frame) => {
      const head = Buffer.alloc(4);
      head.writeUInt32LE(frame.byteLength);
      client.write(head);
      client.write(frame);
    },
    onFrame: (h) => (handler = h),
    close: async () => {
      client.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/**
 * One end's keys of a benchmark session, as a handshake would leave them (NATS links seal themselves and
 * allow gaps).
 */
function benchKeys(): (role: 'worker' | 'coordinator', link: Link) => SessionKeys {
  const secret = new SharedSecret(newNonce());
  const handshake = { workerNonce: newNonce(), coordinatorNonce: newNonce(), workerId: 'bench' };
  return (role, link) => sessionKeys(secret, handshake, role, link.secure ? 'growing' : 'strict');
}

/**
 * `sealed`: as a session with a secret carries frames, sealed by the link itself where it can
 * (NATS), else around each frame as the channel does (ws), and opened at the other end.
 */
async function linkPipe(listener: Listener, connect: () => Promise<Link>, sealed = false): Promise<Pipe> {
  let handler = () => {};
  const keysFor = sealed ? benchKeys() : undefined;
  listener.onLink((link) => {
    const keys = keysFor?.('coordinator', link);
    if (keys && link.secure) link.secure(keys);
    const opener = keys && !link.secure ? keys.receive : undefined;
    link.attach({
      frame: (bytes) => {
        if (opener && !opener.open(bytes).ok) throw new Error('a sealed frame did not open');
        handler();
      },
      close: () => {},
    });
  });
  const worker = await connect();
  const keys = keysFor?.('worker', worker);
  if (keys && worker.secure) worker.secure(keys);
  const sealer = keys && !worker.secure ? keys.send : undefined;
  worker.attach({ frame: () => {}, close: () => {} });
  return {
    send: (frame) => worker.send(sealer ? sealer.seal(frame) : frame),
    onFrame: (h) => (handler = h),
    close: async () => {
      worker.close('done');
      await listener.close();
    },
  };
}

/**
 * AES-256-GCM alone: one frame sealed then opened, as the two ends of a sealed session do, on one
 * core. Latency is the pair's median; MB/s is frame bytes through both.
 */
function sealCost(frame: Uint8Array, reps: number): TransportBenchmark {
  const keysFor = benchKeys();
  const ws = { secure: undefined } as unknown as Link;
  const [sealer, opener] = [keysFor('worker', ws).send, keysFor('coordinator', ws).receive];
  const times: number[] = [];
  for (let i = 0; i < reps + 1; i++) {
    const t0 = performance.now();
    if (!opener.open(sealer.seal(frame)).ok) throw new Error('a sealed frame did not open');
    if (i > 0) times.push(performance.now() - t0);
  }
  const ms = median(times);
  return {
    transport: 'seal+open (AES-256-GCM)',
    bytes: frame.byteLength,
    latency_ms: ms,
    mb_per_s: frame.byteLength / 1e6 / (ms / 1000),
    vs_tcp: null,
    note: 'crypto only, no transport',
  };
}

/** A nats-server of this machine's (Debian's package), with the deploy/nats max_payload. */
async function startNatsServer(): Promise<{ url: string; stop: () => void } | string> {
  try {
    execFileSync('sh', ['-c', 'command -v nats-server'], { stdio: 'ignore' });
  } catch {
    return 'nats-server is not installed (scripts/install-test-deps.sh)';
  }
  const dir = mkdtempSync(join(tmpdir(), 'gradfleet-bench-'));
  const conf = join(dir, 'nats.conf');
  const port = 20000 + Math.floor(Math.random() * 20000);
  writeFileSync(conf, `listen: 127.0.0.1:${port}\nmax_payload: 8MB\nmax_pending: 64MB\n`);
  const child: ChildProcess = spawn('nats-server', ['-c', conf], { stdio: 'ignore' });
  const stop = () => {
    child.kill();
    rmSync(dir, { recursive: true, force: true });
  };
  for (let i = 0; i < 50; i++) {
    const up = await new Promise<boolean>((resolve) => {
      const s = createConnection(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      }).on('error', () => resolve(false));
    });
    if (up) return { url: `nats://127.0.0.1:${port}`, stop };
    await new Promise((r) => setTimeout(r, 100));
  }
  stop();
  return 'nats-server did not start';
}

export async function benchmarkTransports(
  bytes = 3_488_874 * 4,
  frames = 20,
  reps = 5,
): Promise<TransportBenchmark[]> {
  const frame = new Uint8Array(bytes).map((_, i) => i & 255);
  const rows: TransportBenchmark[] = [];
  rows.push(await measure('tcp (raw)', await tcpPipe(), frame, frames, reps));
  const ws = await listenWs('127.0.0.1', 0, { maxFrameBytes: bytes + 1024 });
  rows.push(await measure('ws', await linkPipe(ws, () => connectWs(ws.url)), frame, frames, reps));
  rows.push(sealCost(frame, reps * 2));
  const sealedWs = await listenWs('127.0.0.1', 0, { maxFrameBytes: bytes + 1024 });
  rows.push(
    await measure(
      'ws (sealed)',
      await linkPipe(sealedWs, () => connectWs(sealedWs.url), true),
      frame,
      frames,
      reps,
    ),
  );
  const nats = await startNatsServer();
  if (typeof nats === 'string')
    rows.push({
      transport: 'nats',
      bytes,
      latency_ms: Number.NaN,
      mb_per_s: Number.NaN,
      vs_tcp: null,
      note: nats,
    });
  else {
    try {
      const endpoint = { servers: [nats.url], subject: 'bench' };
      const listener = await listenNats(endpoint, { maxFrameBytes: bytes + 1024 });
      rows.push(
        await measure(
          'nats',
          await linkPipe(listener, () => connectNats(endpoint, 'bench')),
          frame,
          frames,
          reps,
        ),
      );
      const sealedEndpoint = { ...endpoint, subject: 'bench-sealed' };
      const sealedListener = await listenNats(sealedEndpoint, { maxFrameBytes: bytes + 1024 });
      rows.push(
        await measure(
          'nats (sealed)',
          await linkPipe(sealedListener, () => connectNats(sealedEndpoint, 'bench'), true),
          frame,
          frames,
          reps,
        ),
      );
    } finally {
      nats.stop();
    }
  }
  const tcp = rows[0].mb_per_s;
  return rows.map((r) => ({ ...r, vs_tcp: Number.isFinite(r.mb_per_s) ? r.mb_per_s / tcp : null }));
}

export interface FanOutBenchmark {
  transport: string;
  workers: number;
  bytes: number;
  /** From the coordinator handing the frame over to the last worker holding it whole (median). */
  latency_ms: number;
  /** Bytes delivered to all workers per second. */
  mb_per_s: number;
  /** Bytes the coordinator itself put on the wire per frame: once per worker, or once for all. */
  coordinator_mb: number;
  note?: string;
}

/**
 * The weights, once per step, from the coordinator to every worker: ws sends one copy per worker;
 * NATS publishes one copy on the broadcast subject (nats-broadcast.ts). Each rep is a distinct frame,
 * as each step's weights are.
 */
async function fanOut(
  transport: string,
  listener: Listener,
  connect: (i: number) => Promise<Link>,
  workers: number,
  frame: Uint8Array,
  reps: number,
): Promise<FanOutBenchmark> {
  const coordinatorSide: Link[] = [];
  listener.onLink((link) => {
    link.attach({ frame: () => {}, close: () => {} });
    coordinatorSide.push(link);
  });
  const received = new Array<number>(workers).fill(0);
  const waiting = arrivals();
  const workerLinks: Link[] = [];
  for (let i = 0; i < workers; i++) {
    const link = await connect(i);
    link.attach({
      frame: () => {
        received[i]++;
        waiting.arrived();
      },
      close: () => {},
    });
    workerLinks.push(link);
  }
  while (coordinatorSide.length < workers) await new Promise((r) => setTimeout(r, 10));
  const latencies: number[] = [];
  let sent = 0;
  const frames = Array.from({ length: reps + 1 }, () => frame.slice());
  for (const f of frames) {
    const t0 = performance.now();
    for (const link of coordinatorSide) (link.sendShared ?? link.send).call(link, f);
    sent++;
    await waiting.until(
      () => received.every((n) => n >= sent),
      () =>
        `${transport} fan-out: frame ${sent} reached ${received.filter((n) => n >= sent).length} of ${workers} workers`,
    );
    if (sent > 1) latencies.push(performance.now() - t0); // the first one warms up
  }
  for (const link of workerLinks) link.close('done');
  await listener.close();
  const latency = median(latencies);
  const shared = coordinatorSide.some((l) => l.sendShared);
  return {
    transport,
    workers,
    bytes: frame.byteLength,
    latency_ms: latency,
    mb_per_s: (workers * frame.byteLength) / 1e6 / (latency / 1000),
    coordinator_mb: ((shared ? 1 : workers) * frame.byteLength) / 1e6,
  };
}

export async function benchmarkFanOut(
  bytes = 3_488_874 * 4,
  workers = 4,
  reps = 5,
): Promise<FanOutBenchmark[]> {
  const frame = new Uint8Array(bytes).map((_, i) => (i * 7) & 255);
  const ws = await listenWs('127.0.0.1', 0, { maxFrameBytes: bytes + 1024 });
  const rows = [await fanOut('ws', ws, () => connectWs(ws.url), workers, frame, reps)];
  const nats = await startNatsServer();
  if (typeof nats === 'string')
    return [
      ...rows,
      {
        transport: 'nats',
        workers,
        bytes,
        latency_ms: Number.NaN,
        mb_per_s: Number.NaN,
        coordinator_mb: Number.NaN,
        note: nats,
      },
    ];
  try {
    const endpoint = { servers: [nats.url], subject: 'bench' };
    const listener = await listenNats(endpoint, { maxFrameBytes: bytes + 1024 });
    rows.push(
      await fanOut(
        'nats (broadcast)',
        listener,
        (i) => connectNats(endpoint, `bench-${i}`),
        workers,
        frame,
        reps,
      ),
    );
  } finally {
    nats.stop();
  }
  return rows;
}
