/**
 * `gradfleet bench floor`: the sharded step's traffic over plain TCP on the simulated cluster
 * (bench/floor.ts).
 */
import Table from 'cli-table3';
import { Command, Option } from 'commander';
import { FLOOR_SCHEDULES, type FloorReport, type FloorSchedule, benchmarkFloor } from '../../bench/floor.js';
import { tableStyle } from '../../common/colour.js';
import { bytesPerValue, type WireDtype } from '../../protocol/wire-dtype.js';
import { DEFAULT_SYNTHETIC_MS } from '../../training/backends/synthetic.js';
import { paramLayout } from '../../training/models/spec.js';
import { getModel, modelNames } from '../../training/models/zoo.js';
import { oneOf, positiveInt, positiveNumber, printJson, wireDtype } from '../options.js';

interface FloorFlags {
  workers: number;
  model: string;
  wire: WireDtype;
  linkMbit: number;
  rounds: number;
  syntheticMs: number;
  schedule: FloorSchedule;
  json?: boolean;
}

function formatFloorReport(r: FloorReport, model: string, wire: WireDtype): string {
  const pct = (x: number) => `${(100 * x).toFixed(0)}%`;
  const table = new Table({
    style: tableStyle(),
    head: [
      'workers = shards',
      'wire',
      'Mbit/s',
      'slice MB',
      'floor: the links alone, ms',
      `plain TCP (${r.schedule}), ms`,
      `at most, compute ${r.synthetic_ms} ms: after compute`,
      'overlapped with it',
      'plain TCP, after compute',
    ],
  });
  table.push([
    String(r.workers),
    wire,
    String(r.link_mbit),
    (r.slice_bytes / 1e6).toFixed(2),
    r.link_only_ms.toFixed(0),
    r.round_ms.toFixed(0),
    pct(r.max_efficiency),
    pct(r.max_efficiency_overlapped),
    pct(r.tcp_efficiency),
  ]);
  return (
    `${model}: every machine sends its 1/N slice to each other machine twice a step (nodes to shards, weights back); plain TCP timed over ${r.rounds} rounds (slowest machine, median):\n` +
    `${table.toString()}\nThe floor is what the links need for those bytes: no design that moves a step's bytes after its compute spends less, and none that overlaps them with compute beats max(compute, floor).\n`
  );
}

export function floorCommand(): Command {
  return new Command('floor')
    .description(
      "the least a sharded step (S = N) spends moving its bytes on the simulated cluster (root): the links' time for them, and plain TCP between N machines with shaped links, nothing of gradfleet on the path",
    )
    .option('--workers <n>', 'machines (each a worker and a shard)', positiveInt, 8)
    .option('--model <name>', `model (${modelNames().join(', ')})`, 'mnist-cnn')
    .option('--wire <dtype>', 'bytes per value as on the wire: fp32, fp16 or bf16', wireDtype, 'f32')
    .option('--link-mbit <n>', "every machine's link rate, each direction, Mbit/s", positiveNumber, 1000)
    .option('--rounds <n>', 'timed rounds (after one untimed)', positiveInt, 10)
    .option(
      '--synthetic-ms <ms>',
      'the compute time the efficiency is stated against',
      positiveNumber,
      DEFAULT_SYNTHETIC_MS,
    )
    .addOption(
      new Option(
        '--schedule <how>',
        'how plain TCP sends: parallel (to every peer at once) or turns (one peer at a time, each slice acknowledged)',
      )
        .argParser(oneOf(FLOOR_SCHEDULES))
        .default('parallel'),
    )
    .option('--json', 'print the report as one JSON object')
    .action(async (flags: FloorFlags) => {
      const model = getModel(flags.model);
      const report = await benchmarkFloor({
        workers: flags.workers,
        modelBytes: paramLayout(model).size * bytesPerValue(flags.wire),
        link: { mbit: flags.linkMbit },
        rounds: flags.rounds,
        syntheticMs: flags.syntheticMs,
        schedule: flags.schedule,
      });
      if (flags.json) printJson(report);
      else process.stdout.write(formatFloorReport(report, model.name, flags.wire));
    });
}
