/**
 * One machine of `bench floor` (floor.ts): the traffic of a sharded step (S = N) over plain TCP,
 * with nothing of gradfleet on the path. Each round, every peer sends its slice-sized buffer to
 * every other peer and waits for theirs (the tree nodes' slices reaching their shards), then does
 * it again (the shards' weights slices reaching the workers). It prints one JSON line per round
 * with its wall time, and exits.
 *
 * argv: index, rate-independent settings as JSON: { peers: address[], port, sliceBytes, rounds }.
 */
import { type Socket, connect, createServer } from 'node:net';

interface PeerConfig {
  peers: string[];
  port: number;
  sliceBytes: number;
  rounds: number;
}

const index = Number(process.argv[2]);
const config = JSON.parse(process.argv[3]) as PeerConfig;
const others = config.peers.map((_, i) => i).filter((i) => i !== index);
const payload = Buffer.alloc(config.sliceBytes, index);

/** Bytes received so far from each other peer, and who waits for a total. */
const received = new Map<number, number>(others.map((i) => [i, 0]));
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
    received.set(from, received.get(from)! + chunk.length);
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
  const out = await Promise.all(others.map(dial));
  for (const s of out) {
    s.setNoDelay(true);
    s.write(Buffer.from([index]));
  }
  let phases = 0;
  const phase = async () => {
    phases++;
    for (const s of out) s.write(payload);
    await allReceived(phases * config.sliceBytes);
  };
  // One untimed round: connections warm, every peer listening and dialled.
  for (let r = -1; r < config.rounds; r++) {
    const started = performance.now();
    await phase();
    await phase();
    if (r >= 0) process.stdout.write(`${JSON.stringify({ round: r, ms: performance.now() - started })}\n`);
  }
  for (const s of out) s.end();
  server.close();
  setTimeout(() => process.exit(0), 200).unref();
}

main().catch((err) => {
  process.stderr.write(`floor peer ${index}: ${(err as Error).message}\n`);
  process.exit(1);
});
