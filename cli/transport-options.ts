/**
 * How processes reach each other: one table of transports (cli/transports/), each with its flags,
 * its listener and its connector. Shared by `train`, `coordinator` and `worker`; adding a transport
 * is a file in cli/transports/ and a row here.
 */
import { type Command, Option } from 'commander';
import type { Logger } from '../common/logger.js';
import type { SharedSecret } from '../protocol/auth.js';
import { mintJoinPass } from '../protocol/join-pass.js';
import type { Link, Listener } from '../protocol/transport.js';
import { oneOf } from './options.js';
import {
  TRANSPORTS,
  type TlsListenFlags,
  type TransportFlags,
  type TransportName,
} from './transports/flags.js';
import { natsTransport } from './transports/nats.js';
import type { CliTransport, Connector } from './transports/transport.js';
import { wsTransport } from './transports/ws.js';

export { TRANSPORTS, type TlsListenFlags, type TransportFlags };

const TABLE: Record<TransportName, CliTransport> = { ws: wsTransport, nats: natsTransport };

export function addTransportOptions(cmd: Command): Command {
  cmd.addOption(
    new Option('--transport <name>', TRANSPORTS.map((t) => TABLE[t].summary).join('; '))
      .argParser(oneOf(TRANSPORTS))
      .default('ws'),
  );
  for (const name of TRANSPORTS) TABLE[name].addOptions(cmd);
  return cmd;
}

export function addTlsListenOptions(cmd: Command): Command {
  return cmd
    .option('--tls-cert <file>', 'serve wss:// with this certificate (PEM; chain included); needs --tls-key')
    .option('--tls-key <file>', 'private key of --tls-cert (PEM)');
}

/** Workers verify a wss:// coordinator against this CA. */
export function addTlsConnectOptions(cmd: Command): Command {
  return cmd.option(
    '--tls-ca <file>',
    'trust this CA (PEM) for a wss:// coordinator, e.g. one with a self-signed certificate',
  );
}

export function listenerFor(
  f: TransportFlags & TlsListenFlags,
  host: string,
  port: number,
  log: Logger,
): (maxFrameBytes: number) => Promise<Listener> {
  return TABLE[f.transport].listener(f, host, port, log);
}

/** With a secret, each connection comes with a fresh join pass, which lets it past a join flood. */
const passesOf = (secret: SharedSecret | undefined, workerId: string) =>
  secret && (() => mintJoinPass(secret, workerId));

export function connectorFor(
  f: TransportFlags & { connect?: string; tlsCa?: string },
  workerId: string,
  log: Logger,
  secret?: SharedSecret,
): Connector {
  return TABLE[f.transport].connector(f, workerId, log, passesOf(secret, workerId));
}

export function shardServerFor(
  f: TransportFlags & TlsListenFlags,
  shard: { host: string; port: number; shardId: string; advertise?: string },
  log: Logger,
) {
  return TABLE[f.transport].serveShard(f, shard, log);
}

/** How a worker opens a link to the shard reducer at `serves`. */
export function shardReacherFor(
  f: TransportFlags & { tlsCa?: string },
  workerId: string,
  log: Logger,
  secret?: SharedSecret,
): (serves: string) => Promise<Link> {
  return (serves) =>
    TABLE[f.transport].reachShard(f, serves, workerId, log, passesOf(secret, workerId)).connect();
}

/**
 * The flags that make a local worker join the coordinator listening at `listenerUrl` the same way (secrets
 * travel in its environment).
 */
export function workerTransportArgs(
  f: TransportFlags,
  listenerUrl: string,
): { args: string[]; env: Record<string, string> } {
  return TABLE[f.transport].joinArgs(f, listenerUrl);
}
