/**
 * One machine of `bench floor` (floor.ts): the traffic of a sharded step (S = N) over plain TCP,
 * with nothing of gradfleet on the path. Each round, every peer sends its slice-sized buffer to
 * every other peer and waits for theirs (the tree nodes' slices reaching their shards), then does
 * it again (the shards' weights slices reaching the workers). It prints one JSON line per round
 * with its wall time, and exits.
 *
 * `turns`: peer i sends to i + 1, i + 2, … (mod N), one at a time, the next once the last has it all (a
 * one-byte ack), so each link carries one flow at a time. `parallel`: to every peer at once.
 *
 * argv: index, rate-independent settings as JSON: { peers: address[], port, sliceBytes, rounds, schedule }.
 */
import { type Socket, connect, createServer } from 'node:net';

interface PeerConfig {
  peers: string[];
  port: number;
  sliceBytes: number;
  rounds: number;
  schedule: 'turns' | 'parallel';
}

const index = Number(process.argv[2]);
const config = JSON.parse(process.argv[3]) as PeerConfig;
const others = config.peers.map((_, i) => i).filter((i) => i !== index);
const payload = Buffer.alloc(config.sliceBytes, index);

/** Bytes received so far from each other peer, and who waits for a total. */
const received = new Map<number, number>(others.map((i) => [i, 0]));
/** Whole slices each peer sent to has acknowledged, and who waits for a count. */
const acked = new Map<number, number>(others.map((i) => [i, 0]));
const ackWaiters = new Map<number, { count: number; resolve: () => void }>();
let phases = 0;
let waiter: { total: number; resolve: () => void } | undefined;
const check = () => {
  if (waiter && [...received.values()].every((n) => n >= waiter!.total)) {
    const { resolve } = waiter;
    waiter = undefined;
    resolve();
  }
};
const allReceived = (total: number) =>
  new Promise<void>((resolve) => {
    waiter = { total, resolve };
    check();
  });

const server = createServer((socket) => {
  let from: number | undefined;
  socket.on('data', (chunk: Buffer) => {
    // The first byte names the sender; the rest is payload.
    if (from === undefined) {
      from = chunk[0];
      chunk = chunk.subarray(1);
    }
    const before = received.get(from)!;
    received.set(from, before + chunk.length);
    // Each whole slice from `from`: one byte back, for its turns.
    const slices =
      Math.floor((before + chunk.length) / config.sliceBytes) - Math.floor(before / config.sliceBytes);
    if (slices > 0) socket.write(Buffer.alloc(slices, 1));
    check();
  });
});

async function dial(i: number): Promise<Socket> {
  for (;;) {
    try {
      return await new Promise<Socket>((resolve, reject) => {
        const s = connect(config.port, config.peers[i], () => resolve(s));
        s.once('error', reject);
      });
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

async function main(): Promise<void> {
  await new Promise<void>((resolve) => server.listen(config.port, config.peers[index], resolve));
  const out = new Map<number, Socket>();
  for (const i of others) {
    const s = await dial(i);
    s.setNoDelay(true);
    s.write(Buffer.from([index]));
    s.on('data', (bytes: Buffer) => {
      acked.set(i, acked.get(i)! + bytes.length);
      const waiter = ackWaiters.get(i);
      if (waiter && acked.get(i)! >= waiter.count) waiter.resolve();
    });
    out.set(i, s);
  }
  const whole = (i: number, count: number) =>
    new Promise<void>((resolve) =>
      acked.get(i)! >= count ? resolve() : ackWaiters.set(i, { count, resolve }),
    );
  const n = config.peers.length;
  const phase = async () => {
    phases++;
    if (config.schedule === 'parallel') for (const s of out.values()) s.write(payload);
    else
      for (let j = 1; j < n; j++) {
        const to = (index + j) % n;
        const done = whole(to, phases);
        out.get(to)!.write(payload);
        await done;
      }
    await allReceived(phases * config.sliceBytes);
  };
  // One untimed round: connections warm, every peer listening and dialled.
  for (let r = -1; r < config.rounds; r++) {
    const started = performance.now();
    await phase();
    await phase();
    if (r >= 0) process.stdout.write(`${JSON.stringify({ round: r, ms: performance.now() - started })}\n`);
  }
  for (const s of out.values()) s.end();
  server.close();
  setTimeout(() => process.exit(0), 200).unref();
}

main().catch((err) => {
  process.stderr.write(`floor peer ${index}: ${(err as Error).message}\n`);
  process.exit(1);
});
