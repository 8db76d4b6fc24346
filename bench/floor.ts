/**
 * `gradfleet bench floor`: the least a sharded step (S = N) can spend moving its bytes on the
 * simulated cluster of `bench scale`, measured with plain TCP and nothing of gradfleet on the
 * path (no framing, decoding, reduce or Adam). Every worker machine sends each other one its
 * slice of the model twice a round (tree-node slices to the shards, then the shards' weights back);
 * the slowest machine's round is the floor, and synthetic compute ÷ (compute + floor) the highest
 * efficiency any design could reach on these links with this machine's cores.
 */
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { median } from './median.js';
import { SimNet, type LinkShape } from './simnet/simnet.js';
import { requireRoot } from './simnet/system.js';

export interface FloorOptions {
  workers: number;
  /** Bytes of the whole model on the wire (parameters × bytes per value). */
  modelBytes: number;
  link: LinkShape;
  rounds: number;
  syntheticMs: number;
}

export interface FloorReport {
  workers: number;
  link_mbit: number;
  slice_bytes: number;
  rounds: number;
  /** Median over rounds of the slowest machine's round, ms. */
  round_ms: number;
  /** What the link alone needs: each machine sends (and receives) (N − 1) slices twice. */
  link_only_ms: number;
  synthetic_ms: number;
  max_efficiency: number;
}

const PEER_PORT = 7300;
const peerScript = fileURLToPath(new URL('./floor-peer.js', import.meta.url));

export async function benchmarkFloor(settings: FloorOptions): Promise<FloorReport> {
  if (!(Number.isInteger(settings.workers) && settings.workers >= 2))
    throw new Error('--workers must be at least 2: one machine sends to no one');
  if (!(settings.rounds >= 1)) throw new Error('--rounds must be at least 1');
  requireRoot('bench floor');
  const names = Array.from({ length: settings.workers }, (_, i) => `worker-${i + 1}`);
  const sliceBytes = Math.ceil(settings.modelBytes / settings.workers);
  const net = await SimNet.create(names, settings.link);
  try {
    const peers = names.map((n) => net.machine(n).address);
    const config = JSON.stringify({ peers, port: PEER_PORT, sliceBytes, rounds: settings.rounds });
    const perPeer = await Promise.all(
      names.map(
        (name, i) =>
          new Promise<number[]>((resolve, reject) => {
            const child = net.spawn(name, process.execPath, [peerScript, String(i), config]);
            const times: number[] = [];
            let stderr = '';
            child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
            createInterface({ input: child.stdout! }).on('line', (line) =>
              times.push((JSON.parse(line) as { ms: number }).ms),
            );
            child.once('exit', (code) =>
              code === 0 && times.length === settings.rounds
                ? resolve(times)
                : reject(new Error(`floor peer on ${name} exited ${code}: ${stderr.trim()}`)),
            );
          }),
      ),
    );
    const roundMs = median(
      Array.from({ length: settings.rounds }, (_, r) => Math.max(...perPeer.map((t) => t[r]))),
    );
    const linkOnlyMs = (2 * (settings.workers - 1) * sliceBytes * 8) / (settings.link.mbit * 1e3);
    return {
      workers: settings.workers,
      link_mbit: settings.link.mbit,
      slice_bytes: sliceBytes,
      rounds: settings.rounds,
      round_ms: roundMs,
      link_only_ms: linkOnlyMs,
      synthetic_ms: settings.syntheticMs,
      max_efficiency: settings.syntheticMs / (settings.syntheticMs + roundMs),
    };
  } finally {
    await net.destroy();
  }
}
