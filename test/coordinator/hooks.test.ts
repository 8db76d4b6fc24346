/** combineHooks: one set of hooks that has every hook and calls each given set's in turn. */
import { describe, expect, it } from 'vitest';
import { type CoordinatorHooks, combineHooks } from '../../coordinator/hooks.js';

/** Every hook of CoordinatorHooks (the compiler holds hooks.ts's own list to the interface). */
const HOOK_NAMES: Array<keyof CoordinatorHooks> = [
  'gathered',
  'step',
  'epoch',
  'checkpoint',
  'workerReady',
  'workerLost',
  'evaluated',
  'paused',
  'deadlineMissed',
  'straggler',
  'outlier',
  'verified',
  'spotCheck',
  'liarEvicted',
  'shardsConnected',
  'shardsReduced',
  'shardLost',
  'rolledBack',
];

/** A set that has whatever hook is asked of it, each writing `name.hook(args)` to `calls`. */
function recorder(name: string, calls: string[]): CoordinatorHooks {
  return new Proxy(
    {},
    {
      get:
        (_target, hook) =>
        (...args: unknown[]) =>
          calls.push(`${name}.${String(hook)}(${args.join(',')})`),
    },
  );
}

describe('combineHooks', () => {
  it('has every hook, each a function, even with nothing to combine', () => {
    const combined = combineHooks();
    expect(Object.keys(combined).sort()).toEqual([...HOOK_NAMES].sort());
    for (const name of HOOK_NAMES) expect(typeof combined[name]).toBe('function');
    expect(() => (combined.rolledBack as (steps: number) => void)(3)).not.toThrow();
  });

  it('calls every hook of every combined set, in the order given, with the arguments', () => {
    const calls: string[] = [];
    const combined = combineHooks(recorder('a', calls), undefined, {}, recorder('b', calls));
    for (const name of Object.keys(combined) as Array<keyof CoordinatorHooks>)
      (combined[name] as (...args: unknown[]) => void)(name, 7);
    expect(calls).toEqual(HOOK_NAMES.flatMap((name) => [`a.${name}(${name},7)`, `b.${name}(${name},7)`]));
  });

  it('skips the hooks a set leaves out', () => {
    const seen: number[] = [];
    const combined = combineHooks({ paused: () => seen.push(1) }, { step: () => seen.push(2) });
    combined.paused(true);
    combined.checkpoint({ step: 1, path: 'x', seconds: 0 });
    expect(seen).toEqual([1]);
  });
});
