/** Flag rules that are more than a type: --shards 0 means "no shard reducers", as if the flag were absent. */
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { addClusterOptions } from '../../cli/cluster-options.js';

/** What the command's action sees as --shards after parsing `args`. */
function shardsSeen(args: string[]): unknown {
  let seen: unknown = 'action not run';
  const cmd = addClusterOptions(new Command('coordinator'))
    .exitOverride()
    .configureOutput({ writeErr: () => {} });
  cmd.action((flags: { shards?: number }) => (seen = flags.shards));
  cmd.parse(args, { from: 'user' });
  return seen;
}

describe('--shards', () => {
  it("takes S shard reducers, or 0 for none (what a deployment's default passes), and refuses the rest", () => {
    expect(shardsSeen(['--shards', '2'])).toBe(2);
    // 0 is the same as leaving the flag out: the coordinator reduces in-process.
    expect(shardsSeen(['--shards', '0'])).toBeUndefined();
    expect(shardsSeen([])).toBeUndefined();
    expect(() => shardsSeen(['--shards', '-1'])).toThrow(/non-negative integer/);
    expect(() => shardsSeen(['--shards', '1.5'])).toThrow(/non-negative integer/);
  });
});
