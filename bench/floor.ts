/**
 * `gradfleet bench floor`: the least a sharded step (S = N) can spend moving its bytes on the
 * simulated cluster of `bench scale`. Each machine sends each other one its slice of the model twice a
 * step (tree-node slices to the shards, then the shards' weights back): 2 (N − 1) slices out of every
 * machine, one phase after the other, so no design that waits for a step's bytes before the next step
 * needs less than the links' time for them (`link_only_ms`, the floor), and none that overlaps them with
 * compute less than max(compute, link time).
 *
 * It also moves those bytes over plain TCP, nothing of gradfleet on the path (no framing, decoding, reduce
 * or Adam), as a check of the simulated links and of what plain sockets reach on them: each machine sends
 * to every other at once (`parallel`), or to one at a time in turns (`turns`, round-robin as an all-to-all
 * exchange is scheduled). Neither reaches the links' time (docs/benchmarks/floor.md): each phase waits
 * for the slowest machine, and turns measured slower still.
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
  /** How plain TCP sends (floor-peer.ts): to every peer at once (default), or to one at a time in turns. */
  schedule?: FloorSchedule;
}

export const FLOOR_SCHEDULES = ['parallel', 'turns'] as const;
export type FloorSchedule = (typeof FLOOR_SCHEDULES)[number];

export interface FloorReport {
  workers: number;
  link_mbit: number;
  schedule: FloorSchedule;
  slice_bytes: number;
  rounds: number;
  /** Plain TCP: median over rounds of the slowest machine's round, ms. */
  round_ms: number;
  /** The floor: what the link alone needs, each machine sending (and receiving) (N − 1) slices twice. */
  link_only_ms: number;
  synthetic_ms: number;
  /** The most any design reaches that moves a step's bytes after its compute: c / (c + floor). */
  max_efficiency: number;
  /** The most with the bytes moved during compute: c / max(c, floor). */
  max_efficiency_overlapped: number;
  /** What plain TCP reached, with no overlap: c / (c + round). */
  tcp_efficiency: number;
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
    const schedule = settings.schedule ?? 'parallel';
    const config = JSON.stringify({ peers, port: PEER_PORT, sliceBytes, rounds: settings.rounds, schedule });
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
    const compute = settings.syntheticMs;
    return {
      workers: settings.workers,
      link_mbit: settings.link.mbit,
      schedule,
      slice_bytes: sliceBytes,
      rounds: settings.rounds,
      round_ms: roundMs,
      link_only_ms: linkOnlyMs,
      synthetic_ms: compute,
      max_efficiency: compute / (compute + linkOnlyMs),
      max_efficiency_overlapped: compute / Math.max(compute, linkOnlyMs),
      tcp_efficiency: compute / (compute + roundMs),
    };
  } finally {
    await net.destroy();
  }
}
