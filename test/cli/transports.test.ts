/**
 * The transport table: each transport's join flags, parsed back by a worker's options, reproduce
 * the coordinator side's settings (secrets through the environment, never argv).
 */
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import {
  TRANSPORTS,
  type TransportFlags,
  addTransportOptions,
  workerTransportArgs,
} from '../../cli/transport-options.js';

function parse(args: string[], env: Record<string, string> = {}): TransportFlags & { connect?: string } {
  const saved = { ...process.env };
  Object.assign(process.env, env);
  try {
    const cmd = addTransportOptions(new Command('t').exitOverride().option('--connect <url>'));
    cmd.parse(args, { from: 'user' });
    return cmd.opts() as TransportFlags & { connect?: string };
  } finally {
    process.env = saved;
  }
}

describe('transport table', () => {
  it('every transport named by --transport has join flags a worker parses back to the same settings', () => {
    const coordinatorSide = parse([
      '--transport',
      'nats',
      '--nats-url',
      'tls://a:4222,tls://b:4222',
      '--nats-subject',
      'run7',
      '--nats-user',
      'w',
      '--nats-pass',
      'hunter2',
      '--nats-tls-ca',
      '/ca.pem',
      '--nats-require-tls',
      '--nats-dead-after',
      '9',
    ]);
    for (const name of TRANSPORTS) {
      const flags = { ...coordinatorSide, transport: name };
      const { args, env } = workerTransportArgs(flags, 'ws://127.0.0.1:7070');
      const workerSide = parse(args, env);
      expect(workerSide.transport, name).toBe(name);
      if (name === 'ws') {
        expect(workerSide.connect).toBe('ws://127.0.0.1:7070');
        continue;
      }
      for (const key of [
        'natsUrl',
        'natsSubject',
        'natsUser',
        'natsPass',
        'natsTlsCa',
        'natsRequireTls',
        'natsDeadAfter',
      ] as const) {
        expect(workerSide[key], key).toEqual(coordinatorSide[key]);
      }
      // The password reaches the worker through its environment only.
      expect(args.join(' ')).not.toContain('hunter2');
      expect(env.GRADFLEET_NATS_PASS).toBe('hunter2');
    }
  });

  it('--transport refuses a name outside the table, naming the choices', () => {
    expect(() => parse(['--transport', 'carrier-pigeon'])).toThrow(/ws, nats|ws.*nats/);
  });
});
